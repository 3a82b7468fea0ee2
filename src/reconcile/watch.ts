// Triggers for the control loop from the file system. Watches the *directories* of the config
// and every file it references (without following symlinks), because Kubernetes updates a
// mounted ConfigMap or Secret by swapping a `..data` symlink, which a watch on the file itself
// sees only once. Editors' rename-over-temp-file and `git checkout` show up the same way.
// Events only mark the loop dirty; the controller reads everything anew and compares hashes.
import { dirname } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../ops/logger.js';

export interface WatchOptions {
  /** delay between the first event of a burst and the reconcile it asks for */
  readonly debounceMs: number;
  /** safety net: ask for a reconcile this often even without events (0 = never) */
  readonly recheckMs: number;
  /** watch for file events (false: only the periodic check) */
  readonly events: boolean;
}

export class ConfigWatcher {
  private watcher: FSWatcher | null = null;
  private dirs = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private recheck: NodeJS.Timeout | null = null;

  constructor(
    private readonly trigger: (reason: string) => void,
    private readonly log: Logger,
    private readonly opts: WatchOptions,
  ) {}

  /** Watches the folders of these files (the set changes when the config references new files). */
  async update(files: readonly string[]): Promise<void> {
    if (!this.recheck && this.opts.recheckMs > 0) {
      this.recheck = setInterval(() => this.trigger('periodic check'), this.opts.recheckMs);
      this.recheck.unref();
    }
    if (!this.opts.events) return;
    const wanted = new Set(files.map((f) => dirname(f)));
    if (this.watcher && sameSet(wanted, this.dirs)) return;
    const old = this.watcher;
    this.dirs = wanted;
    const w = watch([...wanted], { depth: 0, followSymlinks: false, ignoreInitial: true, atomic: false, persistent: true });
    w.on('all', (event, path) => this.poke(`${event} ${path}`));
    w.on('error', (err) => this.log.warn('file watch error', { error: err as Error }));
    await new Promise<void>((resolve) => w.once('ready', () => resolve()));
    this.watcher = w;
    await old?.close();
  }

  // The first event arms one timer; later events ride along (no starvation under a stream of
  // events, and a burst still collapses into one reconcile that reads the final content).
  private poke(what: string): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.trigger(`file change (${what})`);
    }, this.opts.debounceMs);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.recheck) clearInterval(this.recheck);
    await this.watcher?.close();
    this.watcher = null;
  }
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}
