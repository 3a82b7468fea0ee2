// One server per data dir: two would deliver the same queue twice. The lock file holds the
// PID; a lock left by a dead process (kill -9) is taken over.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'mailplane.pid';

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The PID of the live server owning dataDir, if any. */
export async function lockOwner(dataDir: string): Promise<number | null> {
  try {
    const pid = Number((await fs.readFile(join(dataDir, LOCK_FILE), 'utf8')).trim());
    return pidAlive(pid) ? pid : null;
  } catch {
    return null;
  }
}

export class DataDirLock {
  private constructor(private readonly path: string) {}

  static async acquire(dataDir: string): Promise<DataDirLock> {
    const path = join(dataDir, LOCK_FILE);
    const owner = await lockOwner(dataDir);
    if (owner !== null && owner !== process.pid) {
      throw new Error(`data directory ${dataDir} is in use by another mailplane (pid ${owner})`);
    }
    const tmp = `${path}.${process.pid}`;
    await fs.writeFile(tmp, `${process.pid}\n`);
    await fs.rename(tmp, path);
    return new DataDirLock(path);
  }

  async release(): Promise<void> {
    try {
      if (Number((await fs.readFile(this.path, 'utf8')).trim()) === process.pid) await fs.unlink(this.path);
    } catch {}
  }
}
