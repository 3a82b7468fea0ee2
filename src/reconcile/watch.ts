// Triggers for the control loop from the file system: the config and every file it references
// are polled by path (a stat every 100 ms, following symlinks). Unlike event-based watches this
// sees every Kubernetes ConfigMap/Secret update (an atomic swap of the `..data` symlink the file
// points through), editors' rename-over-temp-file, `git checkout` and in-place writes alike, and
// costs nothing when a busy log or data dir shares the config's folder. A path is polled whether
// or not it exists, so a file that disappears (renamed away, deleted, a symlink swapped to a
// dangling target) and comes back is seen at once. Events only mark the loop dirty; the
// controller reads everything anew and compares hashes.
import type { BigIntStats } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Logger } from '../ops/logger.js';

const POLL_MS = 100;

/** The reason the periodic safety-net check gives (the controller logs its "unchanged" at debug). */
export const PERIODIC = 'periodic check';

export interface WatchOptions {
  /** delay between the first event of a burst and the reconcile it asks for */
  readonly debounceMs: number;
  /** safety net: ask for a reconcile this often even without events (0 = never) */
  readonly recheckMs: number;
  /** watch the files (false: only the periodic check) */
  readonly events: boolean;
}

/** What a stat of a path shows: the file it leads to and its times, or that there is none. */
type Seen = string;
const ABSENT: Seen = 'absent';

export class ConfigWatcher {
  /** path → what the last poll saw */
  private seen = new Map<string, Seen>();
  private poller: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private recheck: NodeJS.Timeout | null = null;
  private closed = false;
  /** updates run one after the other (reconciles that end together ask at once) */
  private updating: Promise<void> = Promise.resolve();

  constructor(
    private readonly trigger: (reason: string) => void,
    private readonly log: Logger,
    private readonly opts: WatchOptions,
  ) {}

  /**
   * Polls these files from now on (the set changes with what the config references). Paths in
   * `unread` could not be read by the latest load: one that exists by the time it is first
   * polled has come back since, and counts as a change.
   */
  update(files: readonly string[], unread: readonly string[] = []): Promise<void> {
    this.updating = this.updating.then(() => this.apply(files, unread));
    return this.updating;
  }

  private async apply(files: readonly string[], unread: readonly string[]): Promise<void> {
    if (this.closed) return;
    if (!this.recheck && this.opts.recheckMs > 0) {
      this.recheck = setInterval(() => this.trigger(PERIODIC), this.opts.recheckMs);
      this.recheck.unref();
    }
    if (!this.opts.events) return;
    const all = [...new Set(files)];
    const fresh = all.filter((f) => !this.seen.has(f));
    const looks = new Map(await Promise.all(fresh.map(async (f) => [f, (await look(f)).seen] as const)));
    this.seen = new Map(all.map((f) => [f, this.seen.get(f) ?? looks.get(f)!]));
    // a path the load could not read that is there now came back in between
    for (const f of fresh) if (unread.includes(f) && looks.get(f) !== ABSENT) this.poke(`add ${f}`);
    if (!this.poller) this.schedule();
  }

  private schedule(): void {
    this.poller = setTimeout(() => void this.poll(), POLL_MS);
    this.poller.unref();
  }

  private async poll(): Promise<void> {
    const paths = [...this.seen.keys()];
    const looks = await Promise.all(paths.map((f) => look(f)));
    if (this.closed) return;
    paths.forEach((f, i) => {
      const before = this.seen.get(f);
      if (before === undefined) return; // no longer watched
      const now = looks[i]!;
      if (now.seen === before) return;
      if (now.error) this.log.warn('file watch error', { path: f, error: now.error });
      this.seen.set(f, now.seen);
      this.poke(`${before === ABSENT ? 'add' : now.seen === ABSENT ? 'unlink' : 'change'} ${f}`);
    });
    this.schedule();
  }

  // The first event arms one timer; later events ride along (no starvation under a stream of
  // events, and a burst still collapses into one reconcile that reads the final content).
  private poke(what: string): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.trigger(`file change (${what})`);
    }, this.opts.debounceMs);
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.recheck) clearInterval(this.recheck);
    if (this.poller) clearTimeout(this.poller);
    this.poller = null;
    this.seen.clear();
    return Promise.resolve();
  }
}

/** One stat, following symlinks. Missing (or a dangling symlink, or a folder on the way gone) is ABSENT. */
async function look(path: string): Promise<{ seen: Seen; error?: Error }> {
  let s: BigIntStats;
  try {
    s = await stat(path, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return { seen: ABSENT };
    return { seen: `error ${code}`, error: e as Error };
  }
  return { seen: `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.mode}` };
}
