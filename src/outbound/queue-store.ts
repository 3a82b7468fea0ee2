// The outbound queue on disk: <dataDir>/queue/<id>.eml (the message as received, with our
// Received header) and <id>.json (envelope and per-recipient state). An entry exists once its
// .json is in place; every update writes a new .json and renames it over the old one.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DirSyncer, writeFileDurably } from '../store/durable.js';
import type { QueueEntry } from '../store/queue-entry.js';

export type { QueueEntry, QueueRecipient, RecipientState } from '../store/queue-entry.js';

export class QueueStore {
  readonly tmpDir: string;

  constructor(
    readonly dir: string,
    private readonly syncer: DirSyncer,
  ) {
    this.tmpDir = join(dir, 'tmp');
  }

  async init(): Promise<void> {
    await fs.mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    // Leftovers of a crash before commit: never acknowledged, safe to remove.
    for (const f of await fs.readdir(this.tmpDir)) await fs.unlink(join(this.tmpDir, f)).catch(() => {});
    const names = new Set(await fs.readdir(this.dir));
    for (const f of names) {
      if (f.endsWith('.eml') && !names.has(f.replace(/\.eml$/, '.json'))) await fs.unlink(join(this.dir, f)).catch(() => {});
      if (f.includes('.json.')) await fs.unlink(join(this.dir, f)).catch(() => {});
    }
  }

  /** Replaces an entry's state durably (write new, rename over). */
  async update(entry: QueueEntry): Promise<void> {
    const tmp = join(this.dir, `${entry.id}.json.${randomBytes(4).toString('hex')}`);
    await writeFileDurably(tmp, [Buffer.from(JSON.stringify(entry))]);
    await fs.rename(tmp, join(this.dir, `${entry.id}.json`));
    await this.syncer.sync(this.dir);
  }

  async remove(id: string): Promise<void> {
    await fs.unlink(join(this.dir, `${id}.json`)).catch(ignoreMissing);
    await fs.unlink(join(this.dir, `${id}.eml`)).catch(ignoreMissing);
    await this.syncer.sync(this.dir);
  }

  async list(): Promise<QueueEntry[]> {
    const out: QueueEntry[] = [];
    for (const f of await fs.readdir(this.dir)) {
      if (!f.endsWith('.json')) continue;
      const e = await this.read(f.slice(0, -5));
      if (e) out.push(e);
    }
    return out.sort((a, b) => a.arrivedAt - b.arrivedAt || a.id.localeCompare(b.id));
  }

  /** An entry, or null when there is none; a damaged entry is moved to corrupt/ (never delivered blindly). */
  async read(id: string): Promise<QueueEntry | null> {
    let text: string;
    try {
      text = await fs.readFile(join(this.dir, `${id}.json`), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      const e = JSON.parse(text) as QueueEntry;
      if (wellFormed(e, id)) return e;
    } catch {}
    await this.quarantine(id);
    return null;
  }

  private async quarantine(id: string): Promise<void> {
    const dir = join(this.dir, 'corrupt');
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const ext of ['.json', '.eml']) await fs.rename(join(this.dir, `${id}${ext}`), join(dir, `${id}${ext}`)).catch(() => {});
  }

  messagePath(id: string): string {
    return join(this.dir, `${id}.eml`);
  }

  async count(): Promise<number> {
    return (await fs.readdir(this.dir)).filter((f) => f.endsWith('.json')).length;
  }
}

function wellFormed(e: QueueEntry, id: string): boolean {
  return (
    e !== null &&
    typeof e === 'object' &&
    e.id === id &&
    typeof e.sender === 'string' &&
    typeof e.arrivedAt === 'number' &&
    typeof e.nextAttemptAt === 'number' &&
    typeof e.attempts === 'number' &&
    Array.isArray(e.recipients) &&
    e.recipients.every((r) => r && typeof r.address === 'string' && ['pending', 'delivered', 'failed'].includes(r.state))
  );
}

function ignoreMissing(e: NodeJS.ErrnoException): void {
  if (e.code !== 'ENOENT') throw e;
}
