// A binary min-heap whose items know their own index, so that any item can be removed or
// re-keyed in O(log n). The queue's schedules are built from these.
export class Heap<T> {
  private readonly items: T[] = [];

  constructor(
    private readonly before: (a: T, b: T) => boolean,
    private readonly index: { get(t: T): number; set(t: T, i: number): void },
  ) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  has(t: T): boolean {
    const i = this.index.get(t);
    return i >= 0 && this.items[i] === t;
  }

  push(t: T): void {
    this.items.push(t);
    this.index.set(t, this.items.length - 1);
    this.up(this.items.length - 1);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top !== undefined) this.removeAt(0);
    return top;
  }

  remove(t: T): boolean {
    if (!this.has(t)) return false;
    this.removeAt(this.index.get(t));
    return true;
  }

  /** Restores order after t's key changed (inserts it when absent). */
  update(t: T): void {
    if (!this.has(t)) return this.push(t);
    const i = this.index.get(t);
    this.up(i);
    this.down(this.index.get(t));
  }

  private removeAt(i: number): void {
    const items = this.items;
    const gone = items[i]!;
    const last = items.pop()!;
    this.index.set(gone, -1);
    if (i === items.length) return;
    items[i] = last;
    this.index.set(last, i);
    this.up(i);
    this.down(this.index.get(last));
  }

  private up(i: number): void {
    const items = this.items;
    const t = items[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p]!;
      if (!this.before(t, parent)) break;
      items[i] = parent;
      this.index.set(parent, i);
      i = p;
    }
    items[i] = t;
    this.index.set(t, i);
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const t = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(items[r]!, items[l]!) ? r : l;
      const child = items[c]!;
      if (!this.before(child, t)) break;
      items[i] = child;
      this.index.set(child, i);
      i = c;
    }
    items[i] = t;
    this.index.set(t, i);
  }
}
