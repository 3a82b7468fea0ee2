// When each queued delivery runs. A job is one message's recipients at one destination (a
// recipient domain); jobs are rows of a table in typed arrays (no object per job, so a million
// queued messages cost the garbage collector nothing). Jobs wait in their destination's heap,
// ordered by due time; destinations with a free slot wait in one heap ordered by their earliest
// job. Starting, finishing, adding or removing a job costs O(log n); nothing ever walks all
// jobs. At most `total` jobs run at once, and at most `perDestination` for one destination, so
// that a slow or dead domain cannot take the slots of the others; and the jobs running hold at
// most `bytes` of message between them (one job alone may hold more: a message larger than the
// budget goes by itself). The job first in line waits for the budget rather than letting smaller
// ones pass, so a big message is never starved. After rampUp() the jobs created `ramped` (what
// was queued before a start) may run one at a time at first, one more every total-th of the
// ramp's time: a restart on a full queue starts gradually, never with every due message at once,
// while mail that arrives meanwhile is not held back.
import { Heap } from './heap.js';
import { grown, IntHeap, type Positions } from './int-heap.js';

export interface Limits {
  readonly total: number;
  /** Infinity: no limit per destination (everything goes to one relay) */
  readonly perDestination: number;
  /** bytes of message held by the jobs running, at most (absent: no limit) */
  readonly bytes?: number;
}

/** How many ramped jobs may run at a moment, and when one more may (Infinity: the ramp is over). */
interface Allowance {
  readonly ramped: number;
  readonly next: number;
}

interface Destination {
  readonly name: string;
  readonly index: number;
  readonly waiting: IntHeap;
  running: number;
  /** jobs created for it and not yet in line: they hold its index, so it is kept */
  fresh: number;
  /** index in the heap of destinations with a free slot; -1 when not in it */
  rpos: number;
}

const RUNNING = 1;
const LIVE = 2;
const FRESH = 4;
/** created before a start: held to the ramp's allowance */
const RAMPED = 8;
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Scheduler {
  // the job table: one row per job
  private dest = new Int32Array(1024);
  private owner = new Int32Array(1024);
  private sibling = new Int32Array(1024);
  private due = new Float64Array(1024);
  private bytes = new Float64Array(1024);
  private flags = new Uint8Array(1024);
  private readonly positions: Positions = { pos: new Int32Array(1024) };
  private freeRows: number[] = [];
  private rows = 0;

  private readonly dests = new Map<string, Destination>();
  private readonly destByIndex: (Destination | null)[] = [];
  private readonly freeDests: number[] = [];
  private readonly ready = new Heap<Destination>((a, b) => a.waiting.peekKey() < b.waiting.peekKey(), {
    get: (d) => d.rpos,
    set: (d, i) => (d.rpos = i),
  });
  /** destinations at their limit (re-examined when the limit grows) */
  private readonly full = new Set<Destination>();
  private limits: Limits = { total: 20, perDestination: 5 };
  private rampFrom = 0;
  private rampMs = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private pumping = false;
  private stopped = false;
  /** jobs waiting or running */
  size = 0;
  running = 0;
  /** bytes of message held by the jobs running */
  bytesRunning = 0;
  /** ramped jobs running */
  private rampedRunning = 0;

  constructor(
    private readonly run: (job: number) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get destinations(): number {
    return this.dests.size;
  }

  /**
   * A new job for `owner` (a row of the caller's own table) at `destination`, holding `bytes`
   * while it runs; `ramped`: held to the ramp after a start (queued before it). Not yet in line.
   */
  create(owner: number, destination: string, due: number, bytes = 0, ramped = false): number {
    const job = this.freeRows.pop() ?? this.newRow();
    const d = this.destination(destination);
    d.fresh++;
    this.dest[job] = d.index;
    this.owner[job] = owner;
    this.sibling[job] = -1;
    this.due[job] = due;
    this.bytes[job] = bytes;
    this.flags[job] = LIVE | FRESH | (ramped ? RAMPED : 0);
    this.positions.pos[job] = -1;
    this.size++;
    return job;
  }

  ownerOf(job: number): number {
    return this.owner[job]!;
  }

  destinationOf(job: number): string {
    return this.destByIndex[this.dest[job]!]!.name;
  }

  dueOf(job: number): number {
    return this.due[job]!;
  }

  bytesOf(job: number): number {
    return this.bytes[job]!;
  }

  isRunning(job: number): boolean {
    return (this.flags[job]! & RUNNING) !== 0;
  }

  /** The caller's chain of an owner's jobs: the next one after `job` (-1 at the end). */
  nextOf(job: number): number {
    return this.sibling[job]!;
  }

  link(job: number, next: number): void {
    this.sibling[job] = next;
  }

  /** From now on ramped jobs may run one at a time, one more every total-th of `ms` (0: no ramp). */
  rampUp(ms: number): void {
    this.rampFrom = this.now();
    this.rampMs = Math.max(0, ms);
    this.pump();
  }

  setLimits(limits: Limits): void {
    const grew = limits.perDestination > this.limits.perDestination;
    const shrank = limits.perDestination < this.limits.perDestination;
    this.limits = limits;
    if (grew) for (const d of [...this.full]) this.refresh(d);
    if (shrank) for (const d of this.dests.values()) this.refresh(d);
    this.pump();
  }

  add(job: number): void {
    this.insert(job);
    this.pump();
  }

  /** Puts jobs in line, then starts what is due (the earliest first, whatever the order given). */
  addMany(jobs: Iterable<number>): void {
    for (const job of jobs) this.insert(job);
    this.pump();
  }

  /** Ends a job that is waiting (a deleted message); a running one ends through done(). */
  remove(job: number): void {
    if (!(this.flags[job]! & LIVE) || this.flags[job]! & RUNNING) return;
    const d = this.destByIndex[this.dest[job]!]!;
    if (this.flags[job]! & FRESH) d.fresh--;
    d.waiting.remove(job);
    this.release(job);
    this.refresh(d);
  }

  /** A running job finished: back in line at nextDue, or ended (null: its row is freed). */
  done(job: number, nextDue: number | null): void {
    const d = this.destByIndex[this.dest[job]!]!;
    this.flags[job] = this.flags[job]! & ~RUNNING;
    this.running--;
    this.bytesRunning -= this.bytes[job]!;
    if (this.flags[job] & RAMPED) this.rampedRunning--;
    d.running--;
    if (nextDue === null) this.release(job);
    else {
      this.due[job] = nextDue;
      d.waiting.push(job, nextDue);
    }
    this.refresh(d);
    this.pump();
  }

  /** Makes waiting jobs due now (an operator's retry). */
  expedite(jobs: Iterable<number>): void {
    const now = this.now();
    for (const job of jobs) {
      if (!(this.flags[job]! & LIVE) || this.flags[job]! & RUNNING || this.due[job]! <= now) continue;
      this.due[job] = now;
      const d = this.destByIndex[this.dest[job]!]!;
      d.waiting.update(job, now);
      this.refresh(d);
    }
    this.pump();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Starts every job that is due and has a slot, then sleeps until the next one is due. */
  pump(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    try {
      const now = this.now();
      const allowed = this.allowance(now);
      const budget = this.limits.bytes ?? Infinity;
      // when to look again without a job finishing (null: only when one finishes)
      let wake: number | null = null;
      for (;;) {
        if (this.running >= this.limits.total) break;
        const d = this.ready.peek();
        if (!d) break;
        if (d.waiting.peekKey() > now) {
          wake = d.waiting.peekKey();
          break;
        }
        const next = d.waiting.peek();
        // the first in line waits for room in the byte budget (alone, any size goes) ...
        if (this.running > 0 && this.bytesRunning + this.bytes[next]! > budget) break;
        // ... or, queued before the start, for the ramp's next step
        if (this.flags[next]! & RAMPED && this.rampedRunning >= allowed.ramped) {
          wake = allowed.next;
          break;
        }
        const job = d.waiting.pop();
        this.flags[job] = this.flags[job]! | RUNNING;
        d.running++;
        this.running++;
        this.bytesRunning += this.bytes[job]!;
        if (this.flags[job] & RAMPED) this.rampedRunning++;
        this.refresh(d);
        this.run(job);
      }
      if (wake !== null) this.arm(now, wake);
    } finally {
      this.pumping = false;
    }
  }

  private insert(job: number): void {
    const d = this.destByIndex[this.dest[job]!]!;
    if (this.flags[job]! & FRESH) d.fresh--;
    this.flags[job] = LIVE | (this.flags[job]! & RAMPED);
    d.waiting.push(job, this.due[job]!);
    this.refresh(d);
  }

  private release(job: number): void {
    this.flags[job] = 0;
    this.size--;
    this.freeRows.push(job);
  }

  /** How many ramped jobs may run at `now`: one, and one more every total-th of the ramp's time. */
  private allowance(now: number): Allowance {
    const total = this.limits.total;
    const elapsed = now - this.rampFrom;
    if (this.rampMs <= 0 || elapsed >= this.rampMs || total <= 1) return { ramped: Infinity, next: Infinity };
    const step = this.rampMs / total;
    const k = Math.min(total, 1 + Math.floor(Math.max(0, elapsed) / step));
    return { ramped: k, next: this.rampFrom + k * step };
  }

  /** Wakes the scheduler at `next` (a job due, or the ramp's next step), or at once when that has come. */
  private arm(now: number, next: number): void {
    if (next <= now) {
      setImmediate(() => this.pump());
      return;
    }
    if (this.timer && this.timerAt <= next) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        this.pump();
      },
      Math.min(next - now, MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  /** Makes room for n more jobs at once (a count known ahead: no copying as they come). */
  reserve(n: number): void {
    this.growTo(this.rows + n);
  }

  private newRow(): number {
    const row = this.rows++;
    if (row === this.flags.length) this.growTo(this.flags.length * 2);
    return row;
  }

  private growTo(n: number): void {
    if (n > this.flags.length) {
      this.dest = grown(this.dest, new Int32Array(n));
      this.owner = grown(this.owner, new Int32Array(n));
      this.sibling = grown(this.sibling, new Int32Array(n));
      this.due = grown(this.due, new Float64Array(n));
      this.bytes = grown(this.bytes, new Float64Array(n));
      this.flags = grown(this.flags, new Uint8Array(n));
      this.positions.pos = grown(this.positions.pos, new Int32Array(n));
    }
  }

  private destination(name: string): Destination {
    let d = this.dests.get(name);
    if (!d) {
      const index = this.freeDests.pop() ?? this.destByIndex.length;
      d = { name, index, waiting: new IntHeap(this.positions), running: 0, fresh: 0, rpos: -1 };
      this.dests.set(name, d);
      this.destByIndex[index] = d;
    }
    return d;
  }

  /** Puts a destination where it belongs: in line for a slot, at its limit, or forgotten. */
  private refresh(d: Destination): void {
    const hasWork = d.waiting.size > 0;
    const atLimit = d.running >= this.limits.perDestination;
    if (hasWork && !atLimit) this.ready.update(d);
    else this.ready.remove(d);
    if (hasWork && atLimit) this.full.add(d);
    else this.full.delete(d);
    if (!hasWork && d.running === 0 && d.fresh === 0 && this.dests.get(d.name) === d) {
      this.dests.delete(d.name);
      this.destByIndex[d.index] = null;
      this.freeDests.push(d.index);
    }
  }
}
