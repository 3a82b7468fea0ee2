// Durable file primitives: a file is written, fdatasync'ed and closed before it is renamed
// into place, and the directory that received it is fsync'ed. Directory syncs are group
// committed: callers that arrive while one is running share the next one. Callback fs calls
// (promisified by hand) cost far less CPU per message than fs/promises file handles.
import fs, { constants } from 'node:fs';

/** A callback-style fs function as a promise (cheaper than fs/promises file handles). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- fs functions of every shape, called with their own arguments
export function call<T>(f: (...args: any[]) => void, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => f(...args, (e: Error | null, v: T) => (e ? reject(e) : resolve(v))));
}

const unlink = (path: string): Promise<void> => call(fs.unlink, path);

/** Creates path exclusively and writes chunks; durable on return. Unlinks it on failure. */
export async function writeFileDurably(path: string, chunks: readonly Buffer[]): Promise<void> {
  const fd = await call<number>(fs.open, path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  try {
    let pending = chunks.filter((c) => c.length > 0);
    while (pending.length) {
      const written = await call<number>(fs.writev, fd, pending);
      pending = advance(pending, written);
    }
    await call(fs.fdatasync, fd);
    await call(fs.close, fd);
  } catch (e) {
    await call(fs.close, fd).catch(() => {});
    await unlink(path).catch(() => {});
    throw e;
  }
}

/** What is left to write after a partial writev. */
export function advance(chunks: Buffer[], written: number): Buffer[] {
  let n = written;
  const out: Buffer[] = [];
  for (const c of chunks) {
    if (n >= c.length) {
      n -= c.length;
      continue;
    }
    out.push(n > 0 ? c.subarray(n) : c);
    n = 0;
  }
  return out;
}

/** Group commit of directory fsyncs, one chain per directory. */
export class DirSyncer {
  private readonly dirs = new Map<string, { running: Promise<void> | null; next: Promise<void> | null }>();

  sync(dir: string): Promise<void> {
    let slot = this.dirs.get(dir);
    if (!slot) {
      slot = { running: null, next: null };
      this.dirs.set(dir, slot);
    }
    const s = slot;
    if (!s.running) return this.start(dir, s);
    // A sync is running but may have started before our rename: wait for the one after it.
    s.next ??= s.running.then(
      () => this.start(dir, s),
      () => this.start(dir, s),
    );
    return s.next;
  }

  private start(dir: string, s: { running: Promise<void> | null; next: Promise<void> | null }): Promise<void> {
    s.next = null;
    s.running = fsyncDir(dir).finally(() => {
      s.running = null;
    });
    return s.running;
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fd = await call<number>(fs.open, dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await call(fs.fsync, fd);
  } finally {
    await call(fs.close, fd);
  }
}

/** ENOSPC and quota errors are "insufficient storage" (452); everything else is a local error (451). */
export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
