// syncfs(2) for the journal's checkpoints, through one long-lived helper shell started with the
// journal worker. Spawning `sync -f` from the server at each checkpoint would fork the whole
// server process once a second: for a process of a few hundred MB that stalls its event loop
// for tens of milliseconds (page tables copied, then copy-on-write faults). The helper is small,
// so its own fork per checkpoint is cheap; it exits when its stdin closes, which is also what
// happens when the server dies.
import { spawn, type ChildProcess } from 'node:child_process';

// an empty line syncs the data dir's file system; a path, that path's (the probe uses /proc)
const SCRIPT = 'while read -r target; do sync -f "${target:-$1}"; echo $?; done';

export class SyncfsHelper {
  private child: ChildProcess | null = null;
  private waiting: ((err: Error | null) => void)[] = [];
  private buffered = '';

  constructor(private readonly dir: string) {
    this.child = this.start();
  }

  /** Makes every file written so far on the data dir's file system durable; calls back once done. */
  sync(done: (err: Error | null) => void): void {
    this.child ??= this.start();
    this.waiting.push(done);
    this.child.stdin!.write('\n');
  }

  /**
   * Whether `sync -f` works here, without flushing anything: syncfs of /proc has nothing to write
   * (a probe on the data dir would wait for every dirty page of its file system, other
   * processes' included).
   */
  probe(done: (err: Error | null) => void): void {
    this.child ??= this.start();
    this.waiting.push(done);
    this.child.stdin!.write('/proc\n');
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = null;
  }

  private start(): ChildProcess {
    const child = spawn('sh', ['-c', SCRIPT, 'mailplane-syncfs', this.dir], { stdio: ['pipe', 'pipe', 'ignore'] });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      this.buffered += d;
      for (let i = this.buffered.indexOf('\n'); i >= 0; i = this.buffered.indexOf('\n')) {
        const status = this.buffered.slice(0, i);
        this.buffered = this.buffered.slice(i + 1);
        this.waiting.shift()?.(status === '0' ? null : new Error(`sync -f ${this.dir} exited with status ${status}`));
      }
    });
    const gone = (why: string) => {
      if (this.child !== child) return;
      this.child = null; // the next checkpoint starts a new helper
      this.buffered = '';
      for (const done of this.waiting.splice(0)) done(new Error(`the syncfs helper ${why}`));
    };
    child.on('error', (e) => gone(`failed: ${e.message}`));
    child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    child.stdin.on('error', () => {}); // reported through 'exit'
    return child;
  }
}
