// A real Redis for the cluster tests: Debian's redis-server on a loopback port, with its own
// config and folder (no persistence), started by the test and stopped by its PID. It can be
// paused (SIGSTOP: answers nothing, connections stay open), killed and started again on the
// same port.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export class TestRedis {
  private child: ChildProcess | null = null;
  logs = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly password: string | null,
  ) {}

  /** Starts a redis-server on a free loopback port (requirepass when `password` is given). */
  static async start(o: { password?: string } = {}): Promise<TestRedis> {
    if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is missing: apt-get install redis-server (.ci/run does)`);
    const r = new TestRedis(await freePort(), tempDir('redis'), o.password ?? null);
    await r.spawn();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private async spawn(): Promise<void> {
    const conf = join(this.dir, 'redis.conf');
    writeFileSync(
      conf,
      [`port ${this.port}`, 'bind 127.0.0.1', `dir ${this.dir}`, 'save ""', 'appendonly no', 'daemonize no', 'logfile ""', ...(this.password ? [`requirepass ${this.password}`] : []), ''].join('\n'),
    );
    const child = spawn(REDIS_SERVER, [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.stdout?.on('data', (d) => (this.logs += d));
    child.stderr?.on('data', (d) => (this.logs += d));
    child.on('exit', () => children.delete(child));
    this.child = child;
    const deadline = Date.now() + 10_000;
    while (!(await this.pong())) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start:\n${this.logs}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Whether it answers PING (any answer: with requirepass it answers NOAUTH, which is an answer). */
  pong(): Promise<boolean> {
    return new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port: this.port });
      const done = (v: boolean) => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(500, () => done(false));
      s.once('error', () => done(false));
      s.once('connect', () => s.write('PING\r\n'));
      s.once('data', (d) => done(/^(\+PONG|-NOAUTH)/.test(d.toString())));
    });
  }

  /** SIGSTOP: Redis stops answering; its connections stay open. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Stops it by its PID (SIGKILL: as a crash; its data goes, there is no persistence). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGCONT');
    c.kill(signal);
    await exited;
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.kill();
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
  }
}
