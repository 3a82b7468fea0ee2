// Triggers for the control loop from the file system: the config and every file it references
// are polled by path (a stat every 100 ms, following symlinks). Unlike event-based watches this
// sees every Kubernetes ConfigMap/Secret update (an atomic swap of the `..data` symlink the file
// points through), editors' rename-over-temp-file, `git checkout` and in-place writes alike, and
// costs nothing when a busy log or data dir shares the config's folder. Events only mark the
// loop dirty; the controller reads everything anew and compares hashes.
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../ops/logger.js';

const POLL_MS = 100;

export interface WatchOptions {
  /** delay between the first event of a burst and the reconcile it asks for */
  readonly debounceMs: number;
  /** safety net: ask for a reconcile this often even without events (0 = never) */
  readonly recheckMs: number;
  /** watch the files (false: only the periodic check) */
  readonly events: boolean;
}

export class ConfigWatcher {
  private watcher: FSWatcher | null = null;
  private key = '';
  private timer: NodeJS.Timeout | null = null;
  private recheck: NodeJS.Timeout | null = null;

  constructor(
    private readonly trigger: (reason: string) => void,
    private readonly log: Logger,
    private readonly opts: WatchOptions,
  ) {}

  /** Watches these files (the set changes when the config references new files). */
  async update(files: readonly string[]): Promise<void> {
    if (!this.recheck && this.opts.recheckMs > 0) {
      this.recheck = setInterval(() => this.trigger('periodic check'), this.opts.recheckMs);
      this.recheck.unref();
    }
    if (!this.opts.events) return;
    const key = [...files].sort().join('\n');
    if (this.watcher && key === this.key) return;
    const old = this.watcher;
    this.key = key;
    const w = watch([...files], { usePolling: true, interval: POLL_MS, binaryInterval: POLL_MS, followSymlinks: true, ignoreInitial: true, atomic: false, persistent: true });
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
