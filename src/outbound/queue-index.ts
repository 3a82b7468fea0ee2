// The queued messages as scheduling knows them: one row each in typed arrays — the id (as two
// numbers: time and salt+sequence), arrival, whether it was attempted, jobs running, its first
// job — and a heap by arrival for the oldest. About 50 bytes a message and no object for the
// garbage collector to walk: a million queued messages load and sit without stalling the loop.
// Everything else about a message stays on disk until one of its jobs runs.
import { grown, IntHeap, type Positions } from './int-heap.js';

const ATTEMPTED = 1;
const SETTLING = 2;
const LIVE = 4;

const SEQ = 36 ** 4;
const STANDARD = /^[0-9a-z]{9}[0-9a-f]{6}[0-9a-z]{4}$/;

/** A queue id (newQueueId's form) as two exact numbers, or null for an id of another form. */
export function encodeId(id: string): [number, number] | null {
  if (!STANDARD.test(id)) return null;
  const time = parseInt(id.slice(0, 9), 36);
  const tail = parseInt(id.slice(9, 15), 16) * SEQ + parseInt(id.slice(15), 36);
  return decodeId(time, tail) === id ? [time, tail] : null;
}

export function decodeId(time: number, tail: number): string {
  return `${time.toString(36).padStart(9, '0')}${Math.floor(tail / SEQ)
    .toString(16)
    .padStart(6, '0')}${(tail % SEQ).toString(36).padStart(4, '0')}`;
}

export class QueueIndex {
  private time = new Float64Array(1024);
  private tail = new Float64Array(1024);
  private runningJobs = new Uint16Array(1024);
  private flags = new Uint8Array(1024);
  private first = new Int32Array(1024);
  private readonly positions: Positions = { pos: new Int32Array(1024) };
  /** ids not of newQueueId's form (written by other tools or older versions) */
  private readonly odd = new Map<number, string>();
  private readonly arrivals = new IntHeap(this.positions);
  private freeRows: number[] = [];
  private rows = 0;
  /** messages queued */
  size = 0;
  /** of those, never attempted or with a job running */
  active = 0;

  add(id: string, arrived: number, attempted: boolean): number {
    const key = encodeId(id);
    if (key) return this.addKeyed(key[0], key[1], arrived, attempted);
    const row = this.addKeyed(NaN, 0, arrived, attempted);
    this.odd.set(row, id);
    return row;
  }

  /** add() for an id already in its two numbers (what the loader sends; NaN time: an odd id, set by the caller). */
  addKeyed(time: number, tail: number, arrived: number, attempted: boolean): number {
    const row = this.freeRows.pop() ?? this.newRow();
    this.time[row] = time;
    this.tail[row] = tail;
    this.runningJobs[row] = 0;
    this.flags[row] = LIVE | (attempted ? ATTEMPTED : 0);
    this.first[row] = -1;
    this.arrivals.push(row, arrived);
    this.size++;
    if (!attempted) this.active++;
    return row;
  }

  idOf(row: number): string {
    return Number.isNaN(this.time[row]) ? this.odd.get(row)! : decodeId(this.time[row]!, this.tail[row]!);
  }

  /** The row of a queued id, or -1 (a scan: for operator commands, not for the message path). */
  find(id: string): number {
    const key = encodeId(id);
    if (!key) {
      for (const [row, other] of this.odd) if (other === id) return row;
      return -1;
    }
    const [t, tail] = key;
    for (let row = 0; row < this.rows; row++) {
      if (this.time[row] === t && this.tail[row] === tail && this.flags[row]! & LIVE) return row;
    }
    return -1;
  }

  isLive(row: number): boolean {
    return (this.flags[row]! & LIVE) !== 0;
  }

  /** Every queued row (for operator commands). */
  *liveRows(): Generator<number> {
    for (let row = 0; row < this.rows; row++) if (this.flags[row]! & LIVE) yield row;
  }

  remove(row: number): void {
    if (!this.isLive(row)) return;
    if (this.countsActive(row)) this.active--;
    this.arrivals.remove(row);
    this.flags[row] = 0;
    this.odd.delete(row);
    this.size--;
    this.freeRows.push(row);
  }

  /** The first of a message's jobs (the scheduler chains the rest), or -1. */
  firstJob(row: number): number {
    return this.first[row]!;
  }

  setFirstJob(row: number, job: number): void {
    this.first[row] = job;
  }

  running(row: number): number {
    return this.runningJobs[row]!;
  }

  jobStarted(row: number): void {
    const before = this.countsActive(row);
    this.runningJobs[row]!++;
    if (!before) this.active++;
  }

  /** A job ended: the message counts as attempted from now on. */
  jobEnded(row: number): void {
    const before = this.countsActive(row);
    this.runningJobs[row]!--;
    this.flags[row] = this.flags[row]! | ATTEMPTED;
    if (before && !this.countsActive(row)) this.active--;
  }

  settling(row: number): boolean {
    return (this.flags[row]! & SETTLING) !== 0;
  }

  setSettling(row: number, on: boolean): void {
    this.flags[row] = on ? this.flags[row]! | SETTLING : this.flags[row]! & ~SETTLING;
  }

  /** Arrival of the oldest queued message, or null. */
  oldest(): number | null {
    return this.arrivals.size ? this.arrivals.peekKey() : null;
  }

  private countsActive(row: number): boolean {
    return !(this.flags[row]! & ATTEMPTED) || this.runningJobs[row]! > 0;
  }

  /** Makes room for n more rows at once (a count known ahead: no copying as they come). */
  reserve(n: number): void {
    this.growTo(this.rows + n);
    this.arrivals.reserve(this.rows + n);
  }

  private newRow(): number {
    const row = this.rows++;
    if (row === this.flags.length) this.growTo(this.flags.length * 2);
    return row;
  }

  private growTo(n: number): void {
    if (n <= this.flags.length) return;
    this.time = grown(this.time, new Float64Array(n));
    this.tail = grown(this.tail, new Float64Array(n));
    this.runningJobs = grown(this.runningJobs, new Uint16Array(n));
    this.flags = grown(this.flags, new Uint8Array(n));
    this.first = grown(this.first, new Int32Array(n));
    this.positions.pos = grown(this.positions.pos, new Int32Array(n));
  }
}
