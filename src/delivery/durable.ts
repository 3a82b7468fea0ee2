// Durable file primitives: a file is written, fdatasync'ed and closed before it is renamed
// into place, and the directory that received it is fsync'ed. Directory syncs are group
// committed: callers that arrive while one is running share the next one.
import { constants, promises as fs } from 'node:fs';

/** Creates path exclusively and writes chunks; durable on return. Unlinks it on failure. */
export async function writeFileDurably(path: string, chunks: readonly Buffer[]): Promise<void> {
  const fh = await fs.open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  try {
    let pending = chunks.filter((c) => c.length > 0);
    while (pending.length) {
      const { bytesWritten } = await fh.writev(pending);
      pending = advance(pending, bytesWritten);
    }
    await fh.datasync();
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => {});
    await fs.unlink(path).catch(() => {});
    throw e;
  }
}

function advance(chunks: Buffer[], written: number): Buffer[] {
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
    let d = this.dirs.get(dir);
    if (!d) {
      d = { running: null, next: null };
      this.dirs.set(dir, d);
    }
    const slot = d;
    if (!slot.running) {
      slot.running = fsyncDir(dir).finally(() => {
        slot.running = null;
      });
      return slot.running;
    }
    // A sync is running but may have started before our rename: wait for the one after it.
    slot.next ??= slot.running.then(
      () => this.startNext(dir, slot),
      () => this.startNext(dir, slot),
    );
    return slot.next;
  }

  private startNext(dir: string, slot: { running: Promise<void> | null; next: Promise<void> | null }): Promise<void> {
    slot.next = null;
    slot.running = fsyncDir(dir).finally(() => {
      slot.running = null;
    });
    return slot.running;
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** ENOSPC and quota errors are "insufficient storage" (452); everything else is a local error (451). */
export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
