// Free loopback ports for configs (the schema requires real port numbers, not 0), and whether
// a loopback port accepts connections. Test files run in parallel, and a test often names a
// port long before something binds it (a relay started later), so a port is taken from below
// the kernel's ephemeral range (which outgoing connections use) and claimed across processes
// with an atomic mkdir under the temp folder; the claims go when the process exits.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOW = 20_000;
const HIGH = 32_000; // Linux hands out ephemeral ports from 32768 up
const CLAIMS = join(tmpdir(), 'mailplane-test-ports');
const mine = new Set<number>();
mkdirSync(CLAIMS, { recursive: true });
process.on('exit', () => {
  for (const p of mine) rmSync(join(CLAIMS, String(p)), { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Claims a port number for this process; false when another live process holds it. */
function claim(port: number): boolean {
  const dir = join(CLAIMS, String(port));
  try {
    mkdirSync(dir);
  } catch {
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    } catch {}
    if (Number.isNaN(owner) || alive(owner)) return false; // held, or being claimed right now
    rmSync(dir, { recursive: true, force: true }); // left by a process that died
    return claim(port);
  }
  writeFileSync(join(dir, 'pid'), String(process.pid));
  mine.add(port);
  return true;
}

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (mine.has(port) || !claim(port)) continue;
    if (await bindable(port, host)) return port;
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) out.push(await freePort(host));
  return out;
}
