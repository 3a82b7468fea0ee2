// A binary min-heap of small integers (table rows) keyed by numbers, kept in typed arrays: a
// million queued messages are a few megabytes here and no objects for the garbage collector.
// Each row's index in the heap lives in its owner's table (`positions`), so any row can be
// removed or re-keyed in O(log n).

/** Where a row's heap index is kept; `pos` may be replaced by a larger array as the table grows. */
export interface Positions {
  pos: Int32Array;
}

export class IntHeap {
  private rows = new Int32Array(16);
  private keys = new Float64Array(16);
  size = 0;

  constructor(private readonly positions: Positions) {}

  /** The row with the smallest key, or -1. */
  peek(): number {
    return this.size ? this.rows[0]! : -1;
  }

  peekKey(): number {
    return this.size ? this.keys[0]! : Infinity;
  }

  has(row: number): boolean {
    const i = this.positions.pos[row]!;
    return i >= 0 && i < this.size && this.rows[i] === row;
  }

  push(row: number, key: number): void {
    if (this.size === this.rows.length) this.grow();
    const i = this.size++;
    this.rows[i] = row;
    this.keys[i] = key;
    this.positions.pos[row] = i;
    this.up(i);
  }

  pop(): number {
    if (!this.size) return -1;
    const top = this.rows[0]!;
    this.removeAt(0);
    return top;
  }

  remove(row: number): boolean {
    if (!this.has(row)) return false;
    this.removeAt(this.positions.pos[row]!);
    return true;
  }

  /** Sets a row's key (inserting it when absent). */
  update(row: number, key: number): void {
    if (!this.has(row)) return this.push(row, key);
    const i = this.positions.pos[row]!;
    this.keys[i] = key;
    this.up(i);
    this.down(this.positions.pos[row]!);
  }

  /** Makes room for n rows at once (a known count: no copy as they come). */
  reserve(n: number): void {
    if (n > this.rows.length) this.resize(n);
  }

  private grow(): void {
    this.resize(this.rows.length * 2);
  }

  private resize(n: number): void {
    const rows = new Int32Array(n);
    rows.set(this.rows.subarray(0, this.size));
    this.rows = rows;
    const keys = new Float64Array(n);
    keys.set(this.keys.subarray(0, this.size));
    this.keys = keys;
  }

  private removeAt(i: number): void {
    const last = --this.size;
    this.positions.pos[this.rows[i]!] = -1;
    if (i === last) return;
    const moved = this.rows[last]!;
    this.rows[i] = moved;
    this.keys[i] = this.keys[last]!;
    this.positions.pos[moved] = i;
    this.up(i);
    this.down(this.positions.pos[moved]);
  }

  private up(i: number): void {
    const { rows, keys } = this;
    const pos = this.positions.pos;
    const row = rows[i]!;
    const key = keys[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!(key < keys[p]!)) break;
      rows[i] = rows[p]!;
      keys[i] = keys[p]!;
      pos[rows[i]!] = i;
      i = p;
    }
    rows[i] = row;
    keys[i] = key;
    pos[row] = i;
  }

  private down(i: number): void {
    const { rows, keys } = this;
    const pos = this.positions.pos;
    const n = this.size;
    const row = rows[i]!;
    const key = keys[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && keys[r]! < keys[l]! ? r : l;
      if (!(keys[c]! < key)) break;
      rows[i] = rows[c]!;
      keys[i] = keys[c]!;
      pos[rows[i]!] = i;
      i = c;
    }
    rows[i] = row;
    keys[i] = key;
    pos[row] = i;
  }
}

/** A copy of `old` in the larger `bigger` (typed arrays of one kind). */
export function grown<T extends Float64Array | Int32Array | Uint16Array | Uint8Array>(old: T, bigger: T): T {
  bigger.set(old);
  return bigger;
}
