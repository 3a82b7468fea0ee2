// Pieces of the benchmark: servers under test, the load generator (Postfix's smtp-source, a
// separate process), a latency probe, idle connections, and CPU/RSS readings from /proc.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { accepts, freePort } from '../test/helpers/ports.js';

export { freePort };

export const ROOT = new URL('../', import.meta.url).pathname;

/** Installs Postfix's smtp-source from Debian when it is missing (without starting Postfix). */
export function ensureSmtpSource(): string {
  const bin = '/usr/sbin/smtp-source';
  if (existsSync(bin)) return bin;
  console.log('installing smtp-source (Debian package postfix; its service is not started)…');
  const policy = '/usr/sbin/policy-rc.d';
  const madePolicy = !existsSync(policy);
  if (madePolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    execFileSync('sh', ['-c', 'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections'], { stdio: 'inherit' });
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'postfix'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } finally {
    if (madePolicy) execFileSync('rm', ['-f', policy]);
  }
  if (!existsSync(bin)) throw new Error('smtp-source is still missing after installing postfix');
  return bin;
}

/** One line of the bench's table (bench/run.ts): a server under one load. */
export interface Row {
  server: string;
  sessions: number;
  size: number;
  reuse: boolean;
  messages: number;
  rate: number;
  cpuMsPerMsg: number;
  p50: number;
  p99: number;
  ok: boolean;
}

export interface ServerUnderTest {
  readonly name: string;
  readonly port: number;
  readonly dir: string;
  /** CPU time used so far by the server and every process it started (helpers included), in ms */
  cpuMs(): number;
  rssMiB(): number;
  /** resolves once the server has finished the work for the messages it accepted */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export async function waitPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited: ${log()}`);
    if (await accepts(port)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`server did not listen on ${port}: ${log()}`);
}

export function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null) return;
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await done;
    clearTimeout(t);
  };
}

export const BENCH_USER_HASH = '$argon2id$v=19$m=19456,t=2,p=1$TZ12nhwvbIjuYS/oJJhdig$bRbcBW9Vr9ojnIkUQYYHehIc+UFMJdT7z0h4/dWs6qE';

export interface ConfigOptions {
  readonly maxMessageSize?: string;
  /** local users besides bench (who has the alias postmaster), all with bench's password */
  readonly moreUsers?: readonly string[];
  /** smtp.auth, as a YAML flow mapping */
  readonly auth?: string;
}

export function mailplaneConfig(dir: string, port: number, ops: number, extra = '', o: ConfigOptions = {}): string {
  return `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  maxMessageSize: ${o.maxMessageSize ?? '10MB'}
  ${existsSync(join(dir, 'tls.crt')) ? `tls: { certFile: tls.crt, keyFile: tls.key }` : ''}
  listeners:
    - { name: mx, address: 127.0.0.1, port: ${port}, role: mx, tls: none }
  limits: { maxConnections: 20000, maxConnectionsPerClient: 20000, maxRecipients: 100 }
${o.auth ? `  auth: ${o.auth}\n` : ''}${extra}accounts:
  local:
    users:
      - { name: bench, passwordHash: "${BENCH_USER_HASH}", aliases: [postmaster] }
${(o.moreUsers ?? []).map((u) => `      - { name: ${u}, passwordHash: "${BENCH_USER_HASH}" }\n`).join('')}storage:
  dataDir: ${join(dir, 'data')}
observability:
  listen: 127.0.0.1:${ops}
`;
}

/** `onSpawn` is told the process id at once, before the server is ready (to watch it start). */
export async function startMailplane(dir: string, config: string, ops: number, port: number, onSpawn?: (pid: number) => void): Promise<ServerUnderTest & { startupMs: number; pid: number }> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(file, config);
  let log = '';
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(ROOT, 'bin/mailplane.js'), 'run', '--config', file, '--log-format', 'json'], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (d) => {
    if (log.length < 100_000) log += d;
  });
  onSpawn?.(child.pid!);
  // ready = /readyz answers 200 (config applied, every listener bound, queue loaded)
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mailplane exited: ${log}`);
    const ok = await fetch(`http://127.0.0.1:${ops}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`mailplane not ready: ${log}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const startupMs = performance.now() - t0;
  return { name: 'mailplane', port, dir, ...readings(child), stop: stopper(child), startupMs, pid: child.pid! };
}

export function startBaseline(dir: string, port: number): Promise<ServerUnderTest> {
  return startScript('baseline', 'bench/baseline-server.mjs', dir, port, [join(dir, 'spool')]);
}

/** The bare smtp-server storing nothing: what the library costs before any storage. */
export function startSink(dir: string, port: number): Promise<ServerUnderTest> {
  return startScript('sink', 'bench/sink-server.mjs', dir, port, []);
}

/**
 * The sink as a relay's far end: delivered() is how many messages it has received so far, and
 * reached(n) resolves with the performance.now() at which the n-th arrived.
 */
export async function startCountingSink(
  dir: string,
  port: number,
  script = 'bench/sink-server.mjs',
  args: readonly string[] = ['--count'],
): Promise<ServerUnderTest & { delivered(): number; reached(n: number): Promise<number> }> {
  let delivered = 0;
  let partial = '';
  const waiting: { n: number; resolve: (at: number) => void }[] = [];
  // it prints its running count after every message, one line each
  const s = await startScript('sink', script, dir, port, [...args], (d) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    const last = lines.at(-1);
    if (last === undefined || !/^\d+$/.test(last)) return;
    delivered = Number(last);
    const at = performance.now();
    for (const w of waiting.filter((x) => x.n <= delivered)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve(at);
    }
  });
  const reached = (n: number) => (n <= delivered ? Promise.resolve(performance.now()) : new Promise<number>((resolve) => waiting.push({ n, resolve })));
  return { ...s, delivered: () => delivered, reached };
}

async function startScript(name: string, script: string, dir: string, port: number, args: string[], onStdout?: (d: string) => void): Promise<ServerUnderTest> {
  mkdirSync(dir, { recursive: true });
  let log = '';
  const child = spawn(process.execPath, [join(ROOT, script), String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (onStdout ? onStdout(d) : (log += d)));
  child.stderr.on('data', (d) => (log += d));
  await waitPort(port, child, () => log);
  return { name, port, dir, ...readings(child), stop: stopper(child) };
}

// mailplane, the baseline and the sink have done everything for a message by its 250.
function readings(child: ChildProcess): Pick<ServerUnderTest, 'cpuMs' | 'rssMiB' | 'settle'> {
  return { cpuMs: () => treeCpuMs(child.pid!), rssMiB: () => rssMiB(child.pid!), settle: () => Promise.resolve() };
}

const TICK_MS = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

/** [ppid, utime+stime+cutime+cstime in ticks] of a process, or null once it is gone. */
function stat(pid: number): [number, number] | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return [Number(x[1]), Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14])];
  } catch {
    return null;
  }
}

/**
 * CPU time of a process and all its descendants, in ms: each live process counts its own time
 * (all threads) and that of the children it has reaped, so processes that come and go (Postfix's
 * smtpd, mailplane's syncfs helper runs) are counted once, while alive or once reaped.
 */
export function treeCpuMs(root: number): number {
  const procs = new Map<number, [number, number]>();
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    const s = stat(pid);
    if (s) procs.set(pid, s);
  }
  const inTree = (pid: number): boolean => {
    for (let p = pid, depth = 0; p > 1 && depth < 64; depth++) {
      if (p === root) return true;
      p = procs.get(p)?.[0] ?? 0;
    }
    return false;
  };
  let ticks = 0;
  for (const [pid, [, t]] of procs) if (inTree(pid)) ticks += t;
  return ticks * TICK_MS;
}

export function rssMiB(pid: number): number {
  return statusMiB(pid, 'VmRSS');
}

function statusMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * The peak RSS of a process from now until stop(): VmRSS sampled every `everyMs`, and the
 * kernel's own high-water mark (VmHWM, reset first through clear_refs) that no sampling can miss
 * (null when it cannot be reset). peakMiB is the larger of the two.
 */
export function watchPeakRss(pid: number, everyMs = 50): { stop(): { sampledMiB: number; hwmMiB: number | null; peakMiB: number } } {
  let hwmReset = false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    hwmReset = true;
  } catch {}
  let sampled = rssMiB(pid);
  const timer = setInterval(() => {
    try {
      sampled = Math.max(sampled, rssMiB(pid));
    } catch {} // gone: stop() tells
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      sampled = Math.max(sampled, rssMiB(pid));
      const hwmMiB = hwmReset ? statusMiB(pid, 'VmHWM') : null;
      return { sampledMiB: sampled, hwmMiB, peakMiB: Math.max(sampled, hwmMiB ?? 0) };
    },
  };
}

export interface LoadResult {
  readonly messages: number;
  readonly seconds: number;
  readonly rate: number;
  readonly ok: boolean;
}

/**
 * smtp-source: `sessions` in parallel, `size` bytes of payload, new connection per message unless
 * reuse. With `file`, each message is that file (header and body, LF line ends) instead.
 */
// With `recipients` > 1 they are bench@, 2bench@, 3bench@… (smtp-source prepends a number).
export function smtpSource(bin: string, port: number, o: { sessions: number; size: number; messages: number; reuse: boolean; recipients?: number; file?: string }): Promise<LoadResult> {
  const args = [
    '-s',
    String(o.sessions),
    ...(o.file ? ['-F', o.file] : ['-l', String(o.size)]),
    '-m',
    String(o.messages),
    '-f',
    'load@example.net',
    '-t',
    'bench@example.com',
    '-M',
    'loadgen.example.net',
  ];
  if (o.reuse) args.unshift('-d');
  if (o.recipients) args.unshift('-r', String(o.recipients));
  args.push(`127.0.0.1:${port}`);
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0) process.stderr.write(`smtp-source failed (${code}): ${err}\n`);
      resolve({ messages: o.messages, seconds, rate: o.messages / seconds, ok: code === 0 });
    });
  });
}

/**
 * Measures "end of DATA → 250" as a client sees it, on one reused connection, while the load runs.
 * Sends `message` (CRLF, dot-stuffed, ending in CRLF) when given, else a message of about `size`
 * bytes. Returns the latencies in ms.
 */
export async function probeLatency(port: number, size: number, until: () => boolean, everyMs = 20, message?: string): Promise<number[]> {
  const sock = connect({ port, host: '127.0.0.1' });
  sock.setNoDelay(true);
  await new Promise<void>((r, j) => {
    sock.once('connect', () => r());
    sock.once('error', j);
  });
  const lines = lineReader(sock);
  await lines(); // greeting
  sock.write('HELO probe.example.net\r\n');
  await lines();
  const body = message ?? `Subject: probe\r\n\r\n${'x'.repeat(Math.max(0, size - 60)).replace(/(.{76})/g, '$1\r\n')}\r\n`;
  const out: number[] = [];
  while (until()) {
    sock.write('MAIL FROM:<probe@example.net>\r\n');
    await lines();
    sock.write('RCPT TO:<bench@example.com>\r\n');
    await lines();
    sock.write('DATA\r\n');
    await lines();
    sock.write(body);
    const t0 = performance.now();
    sock.write('.\r\n');
    const reply = await lines();
    if (reply.startsWith('250')) out.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  sock.end('QUIT\r\n');
  return out;
}

function lineReader(sock: Socket): () => Promise<string> {
  let buf = '';
  const waiting: ((l: string) => void)[] = [];
  const ready: string[] = [];
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (line[3] === '-') continue;
      const w = waiting.shift();
      if (w) w(line);
      else ready.push(line);
    }
  });
  return () => {
    const l = ready.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => waiting.push(r));
  };
}

/** Opens n idle connections (each waits after the greeting) from a separate process. */
export async function idleConnections(port: number, n: number): Promise<{ close: () => Promise<void> }> {
  const script = `
const net = require('net'); const n = ${n}; let open = 0; const socks = [];
function one() { const s = net.connect({ port: ${port}, host: '127.0.0.1' }); socks.push(s);
  s.once('data', () => { open++; if (open === n) process.stdout.write('ready\\n'); else if (socks.length < n) one(); });
  s.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(1); }); }
for (let i = 0; i < Math.min(n, 200); i++) one();
if (n === 0) process.stdout.write('ready\\n');
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => String(d).includes('ready') && resolve());
    child.on('exit', (c) => reject(new Error(`idle client exited ${c}`)));
  });
  return {
    close: async () => {
      const done = new Promise((r) => child.once('exit', r));
      child.stdin.end();
      await done;
    },
  };
}

export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
