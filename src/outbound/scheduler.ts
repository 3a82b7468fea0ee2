// When each queued delivery runs. A job is one message's recipients at one destination (a
// recipient domain). Jobs wait in their destination's heap, ordered by due time; destinations
// with a free slot wait in one heap ordered by their earliest job. Starting, finishing, adding
// or removing a job costs O(log n); nothing ever walks all jobs. At most `total` jobs run at
// once, and at most `perDestination` for one destination, so that a slow or dead domain cannot
// take the slots of the others.

import { Heap } from './heap.js';

export interface Job {
  readonly domain: string;
  /** when it may run (ms since the epoch) */
  due: number;
  /** index in its destination's heap; -1 when not in it */
  hpos: number;
  running: boolean;
}

interface Destination<J extends Job> {
  readonly key: string;
  readonly waiting: Heap<J>;
  running: number;
  /** index in the heap of destinations with a free slot; -1 when not in it */
  rpos: number;
}

export interface Limits {
  readonly total: number;
  /** Infinity: no limit per destination (everything goes to one relay) */
  readonly perDestination: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class Scheduler<J extends Job> {
  private readonly dests = new Map<string, Destination<J>>();
  private readonly ready = new Heap<Destination<J>>((a, b) => a.waiting.peek()!.due < b.waiting.peek()!.due, {
    get: (d) => d.rpos,
    set: (d, i) => (d.rpos = i),
  });
  /** destinations at their limit (re-examined when the limit grows) */
  private readonly full = new Set<Destination<J>>();
  private limits: Limits = { total: 20, perDestination: 5 };
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private pumping = false;
  private stopped = false;
  /** jobs waiting or running */
  size = 0;
  running = 0;

  constructor(
    private readonly run: (job: J) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get destinations(): number {
    return this.dests.size;
  }

  setLimits(limits: Limits): void {
    const grew = limits.perDestination > this.limits.perDestination;
    this.limits = limits;
    if (grew) for (const d of [...this.full]) this.refresh(d);
    else for (const d of this.dests.values()) this.refresh(d);
    this.pump();
  }

  add(job: J): void {
    this.insert(job);
    this.pump();
  }

  /** Adds jobs, then starts what is due (the earliest first, whatever the order given). */
  addMany(jobs: Iterable<J>): void {
    for (const job of jobs) this.insert(job);
    this.pump();
  }

  private insert(job: J): void {
    const d = this.dest(job.domain);
    job.running = false;
    d.waiting.push(job);
    this.size++;
    this.refresh(d);
  }

  /** Takes a waiting job out (a deleted message); a running one leaves through done(). */
  remove(job: J): void {
    if (job.running) return;
    const d = this.dests.get(job.domain);
    if (!d || !d.waiting.remove(job)) return;
    this.size--;
    this.refresh(d);
  }

  /** A running job finished: back in line at nextDue, or gone (null). */
  done(job: J, nextDue: number | null): void {
    const d = this.dests.get(job.domain)!;
    job.running = false;
    this.running--;
    d.running--;
    if (nextDue === null) this.size--;
    else {
      job.due = nextDue;
      d.waiting.push(job);
    }
    this.refresh(d);
    this.pump();
  }

  /** Makes waiting jobs due now (an operator's retry). */
  expedite(jobs: Iterable<J>): void {
    const now = this.now();
    for (const job of jobs) {
      if (job.running || job.due <= now) continue;
      job.due = now;
      const d = this.dests.get(job.domain);
      if (!d) continue;
      d.waiting.update(job);
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
      while (this.running < this.limits.total) {
        const d = this.ready.peek();
        if (!d || d.waiting.peek()!.due > now) break;
        const job = d.waiting.pop()!;
        job.running = true;
        d.running++;
        this.running++;
        this.refresh(d);
        this.run(job);
      }
      this.arm(now);
    } finally {
      this.pumping = false;
    }
  }

  private arm(now: number): void {
    const next = this.running < this.limits.total ? this.ready.peek()?.waiting.peek()?.due : undefined;
    if (next === undefined || next <= now) {
      if (next !== undefined) setImmediate(() => this.pump());
      return;
    }
    if (this.timer && this.timerAt <= next) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.pump();
    }, Math.min(next - now, MAX_TIMER_MS));
    this.timer.unref();
  }

  private dest(key: string): Destination<J> {
    let d = this.dests.get(key);
    if (!d) {
      d = { key, waiting: new Heap<J>((a, b) => a.due < b.due, { get: (j) => j.hpos, set: (j, i) => (j.hpos = i) }), running: 0, rpos: -1 };
      this.dests.set(key, d);
    }
    return d;
  }

  /** Puts a destination where it belongs: in line for a slot, at its limit, or forgotten. */
  private refresh(d: Destination<J>): void {
    const hasWork = d.waiting.size > 0;
    const atLimit = d.running >= this.limits.perDestination;
    if (hasWork && !atLimit) this.ready.update(d);
    else this.ready.remove(d);
    if (hasWork && atLimit) this.full.add(d);
    else this.full.delete(d);
    if (!hasWork && d.running === 0) this.dests.delete(d.key);
  }
}
