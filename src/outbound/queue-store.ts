// The outbound queue on disk: <dataDir>/queue/<id>.eml (the message as received, with our
// Received header) and <id>.json (envelope and per-recipient state). An entry exists once its
// .json is in place; every update writes a new .json and renames it over the old one.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DirSyncer, writeFileDurably } from '../store/durable.js';
import type { QueueEntry } from '../store/queue-entry.js';
import { wellFormed } from './queue-entries.js';

export type { QueueEntry, QueueRecipient, RecipientState } from '../store/queue-entry.js';

const HEADER_CHUNK = 16 * 1024;
/** Headers beyond this are not read (loop detection and bounces need the first ones only). */
const HEADER_LIMIT = 256 * 1024;

export class QueueStore {
  readonly tmpDir: string;

  constructor(
    readonly dir: string,
    private readonly syncer: DirSyncer,
  ) {
    this.tmpDir = join(dir, 'tmp');
  }

  /** The folders the queue needs (what a crash left half-written is cleared by the loader). */
  async init(): Promise<void> {
    await fs.mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
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

  /**
   * The header block of a queued message (up to the empty line, at most HEADER_LIMIT bytes),
   * read from the file without reading the body.
   */
  async readHeader(id: string, offset: number): Promise<string> {
    const fh = await fs.open(this.messagePath(id), 'r');
    try {
      let buf = Buffer.allocUnsafe(HEADER_CHUNK);
      let total = 0;
      for (;;) {
        if (total === buf.length) {
          if (total >= HEADER_LIMIT) break;
          const bigger = Buffer.allocUnsafe(Math.min(HEADER_LIMIT, buf.length * 2));
          buf.copy(bigger, 0, 0, total);
          buf = bigger;
        }
        const { bytesRead } = await fh.read(buf, total, buf.length - total, offset + total);
        if (!bytesRead) break;
        total += bytesRead;
        const end = headerEnd(buf, total);
        if (end >= 0) return crlf(buf.toString('latin1', 0, end));
      }
      return crlf(buf.toString('latin1', 0, total));
    } finally {
      await fh.close();
    }
  }

  async count(): Promise<number> {
    return (await fs.readdir(this.dir)).filter((f) => f.endsWith('.json')).length;
  }
}

/** Where the header block ends (the empty line), or -1 when it is not in the first n bytes yet. */
function headerEnd(buf: Buffer, n: number): number {
  const view = buf.subarray(0, n);
  const a = view.indexOf('\r\n\r\n');
  const b = view.indexOf('\n\n');
  return a < 0 ? b : b < 0 ? a : Math.min(a, b);
}

const crlf = (text: string) => text.replace(/\r?\n/g, '\r\n');

function ignoreMissing(e: NodeJS.ErrnoException): void {
  if (e.code !== 'ENOENT') throw e;
}
