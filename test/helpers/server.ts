// Runs the real `mailplane run` binary against a config in a temp folder, on loopback ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN } from './cli.js';
import { freePorts } from './ports.js';
import { serverCert, writeCert } from './tls.js';
import { tempDir } from './tmp.js';

export const USERS = {
  alice: { password: 'alice-pw', hash: '$argon2id$v=19$m=19456,t=2,p=1$TZ12nhwvbIjuYS/oJJhdig$bRbcBW9Vr9ojnIkUQYYHehIc+UFMJdT7z0h4/dWs6qE' },
  bob: { password: 'bob-pw', hash: '$argon2id$v=19$m=19456,t=2,p=1$5Weh/0FZtgB7agGe0Ug5EQ$Z6XALKV1Q0y3j2GP2HwCvwx0ZGM6UfWo8yUAxZWhEek' },
} as const;

/** Client addresses the default config treats specially (all on loopback). */
export const CLIENTS = { untrusted: '127.0.0.1', exempt: '127.0.0.5', lan: '127.0.0.6', other: '127.0.0.7' } as const;

export interface Env {
  dir: string;
  dataDir: string;
  configFile: string;
  certFile: string;
  keyFile: string;
  ports: { mx: number; submission: number; submissions: number; plain: number; ops: number; spare: number; dns: number };
}

export async function makeEnv(): Promise<Env> {
  const dir = tempDir('test');
  const { certFile, keyFile } = writeCert(dir, serverCert());
  const [mx, submission, submissions, plain, ops, spare, dns] = await freePorts(7);
  return {
    dir,
    dataDir: join(dir, 'data'),
    configFile: join(dir, 'mailserver.yaml'),
    certFile,
    keyFile,
    ports: { mx: mx!, submission: submission!, submissions: submissions!, plain: plain!, ops: ops!, spare: spare!, dns: dns! },
  };
}

export interface ConfigOptions {
  authRequired?: boolean;
  maxMessageSize?: string | number;
  extraSmtp?: string;
  extraAuth?: string;
  users?: string;
  relay?: string;
  plainListener?: boolean;
  /** the delivery block; by default MX lookups go to a loopback port where no DNS server runs */
  delivery?: string;
}

/** The default test config: two domains, alice (aliases postmaster, info) and bob. */
export function baseConfig(e: Env, o: ConfigOptions = {}): string {
  return `version: 1
hostname: mail.example.com
domains: [example.com, example.org]
smtp:
  maxMessageSize: ${JSON.stringify(o.maxMessageSize ?? '1MB')}
  drainGrace: 5s
  tls: { certFile: ${e.certFile}, keyFile: ${e.keyFile} }
  listeners:
    - { name: mx, address: 127.0.0.1, port: ${e.ports.mx}, role: mx, tls: starttls }
    - { name: submission, address: 127.0.0.1, port: ${e.ports.submission}, role: submission, tls: starttls }
    - { name: submissions, address: 127.0.0.1, port: ${e.ports.submissions}, role: submission, tls: implicit }
${o.plainListener ? `    - { name: plain, address: 127.0.0.1, port: ${e.ports.plain}, role: mx, tls: none }\n` : ''}  auth:
    required: ${o.authRequired ?? true}
    exemptClients: [${CLIENTS.exempt}/32]
    lanBypass: true
    lanNetworks: [${CLIENTS.lan}/32]
${o.extraAuth ?? ''}${o.extraSmtp ?? ''}accounts:
  local:
    users:
${
  o.users ??
  `      - { name: alice, passwordHash: "${USERS.alice.hash}", aliases: [postmaster, info] }
      - { name: bob, passwordHash: "${USERS.bob.hash}" }
`
}${o.relay ?? ''}${o.delivery ?? `delivery:\n  dns: { servers: [127.0.0.1:${e.ports.dns}], timeout: 1s }\n`}storage:
  dataDir: ${e.dataDir}
observability:
  listen: 127.0.0.1:${e.ports.ops}
`;
}

/** A config whose SMTP listeners bind `address` instead of 127.0.0.1 (a replica of several on one machine); the ops endpoint stays. */
export function onAddress(config: string, address: string): string {
  return config.replace(/(- \{ name: \w+, address: )127\.0\.0\.1/g, `$1${address}`);
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export class MailplaneProcess {
  logs = '';
  exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly env: Env,
  ) {
    children.add(child);
    child.stdout?.on('data', (d) => (this.logs += d));
    child.stderr?.on('data', (d) => (this.logs += d));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        children.delete(child);
        this.exitCode = code ?? (signal ? null : code);
        resolve(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  async http(path: string, init?: RequestInit): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.env.ports.ops}${path}`, init);
  }

  async status(): Promise<any> {
    return (await this.http('/status')).json();
  }

  async metrics(): Promise<string> {
    return (await this.http('/metrics')).text();
  }

  /** Value of one metric series, or undefined. `labels` like 'listener="mx",result="accepted"'. */
  async metric(name: string, labels = ''): Promise<number | undefined> {
    const text = await this.metrics();
    const re = new RegExp(`^${name}${labels ? `\\{${labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\}` : '(\\{\\})?'} (\\S+)$`, 'm');
    const m = text.match(re);
    return m ? Number(m[m.length - 1]) : undefined;
  }

  async waitReady(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`mailplane exited during start-up:\n${this.logs}`);
      try {
        if ((await this.http('/readyz')).status === 200) return;
      } catch {}
      await sleep(50);
    }
    throw new Error(`mailplane not ready after ${timeoutMs} ms:\n${this.logs}`);
  }

  /** Waits until the outbound queue holds nothing (every message delivered, bounced or deleted). */
  async waitQueueEmpty(timeoutMs = 20_000): Promise<void> {
    await this.waitFor(
      'the queue to empty',
      async () => {
        const s = await this.status();
        return s.queue.active + s.queue.deferred === 0;
      },
      timeoutMs,
    );
  }

  /** Polls until cond() is true (conditions, not sleeps). */
  async waitFor<T>(what: string, cond: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
    return waitFor(what, cond, timeoutMs, () => this.logs);
  }

  async stop(timeoutMs = 20_000): Promise<number | null> {
    if (!this.running) return this.exitCode ?? null;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export async function waitFor<T>(what: string, cond: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, context?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `\n--- logs ---\n${context()}` : ''}`);
    await sleep(25);
  }
}

export function spawnMailplane(env: Env, args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): MailplaneProcess {
  const child = spawn(process.execPath, [BIN, 'run', '--config', env.configFile, '--log-format', 'json', '--recheck', '0', ...args], {
    cwd: env.dir,
    env: { ...process.env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new MailplaneProcess(child, env);
}

/** Writes the config and starts the server; resolves when /readyz says ready. */
export async function startMailplane(env: Env, config: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<MailplaneProcess> {
  mkdirSync(env.dir, { recursive: true });
  writeFileSync(env.configFile, config);
  const p = spawnMailplane(env, [], extraEnv);
  await p.waitReady();
  return p;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
