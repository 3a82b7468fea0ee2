// Group commit. Accepted messages are appended to a journal segment; one fdatasync covers every
// message that arrived while the previous one ran. A worker then writes the Maildir and queue
// files the records stand for and renames them into place (no fsync per file), and each 250
// waits for both: durable in the journal, visible in new/ or the queue. At each checkpoint one
// `sync -f` (syncfs) makes the segment's files durable, off the event loop; only then is the
// segment deleted and are new queue entries handed to delivery. After a crash, recovery replays
// whatever segments are left (idempotently, size-checked) before anything is served.
import fs, { constants, existsSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../ops/logger.js';
import { advance, call, fsyncDir } from './durable.js';
import { decode, encode, type JournalRecord } from './journal-format.js';
import { fsyncPathSync, layout, materialize, syncfs } from './materialize.js';

const ROTATE_AFTER_MS = 1000; // checkpoint cadence: how soon new queue entries reach delivery
const ROTATE_AFTER_BYTES = 32 * 1024 * 1024;

interface Pending {
  readonly records: JournalRecord[];
  readonly release: readonly string[];
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

interface Segment {
  readonly n: number;
  readonly fd: number;
  size: number;
  firstAt: number;
  release: string[];
}

export class Journal {
  private segment: Segment | null = null;
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private readonly awaitingDurable = new Map<number, string[]>();
  /** batches durable in the journal, waiting for the worker to put their files in place */
  private readonly awaitingFiles = new Map<number, Pending[]>();
  private nextBatch = 1;
  private rotateTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private idle: (() => void) | null = null;

  private nextSegment = 1;

  private constructor(
    private readonly dir: string,
    private readonly dataDir: string,
    private readonly worker: Worker,
    private readonly useSyncfs: boolean,
    private readonly onDurable: (released: readonly string[]) => void,
    private readonly log: Logger,
  ) {
    worker.on('message', (m: { type: string; segment?: number; batch?: number; message?: string; code?: string }) => {
      if (m.type === 'written') this.written(m.batch!);
      else if (m.type === 'flushed') this.syncSegment(m.segment!);
      else this.log.error('writing mail files failed, will retry (the messages are safe in the journal)', { error: m.message, code: m.code });
    });
    worker.on('error', (e) => this.log.error('journal worker failed', { error: e }));
    worker.unref();
  }

  /** Replays what a crash left, then opens a fresh segment. */
  static async open(dataDir: string, onDurable: (released: readonly string[]) => void, log: Logger): Promise<Journal> {
    const dir = join(dataDir, 'journal');
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    const replayed = recover(dataDir, dir);
    if (replayed) log.warn('recovered messages from the journal after an unclean stop', { files: replayed });
    const useSyncfs = syncfs(dataDir);
    if (!useSyncfs) log.warn('`sync -f` is not available: every mail file is fsync\'ed on its own (slower)');
    const worker = new Worker(workerUrl(), { workerData: { dataDir, fsyncEach: !useSyncfs } });
    return new Journal(dir, dataDir, worker, useSyncfs, onDurable, log);
  }

  /**
   * Resolves once the records are on disk (fdatasync'ed). `release` names what to hand to
   * delivery once the files are in place and durable (queue entry ids).
   */
  append(records: JournalRecord[], release: readonly string[] = []): Promise<void> {
    if (this.closed) return Promise.reject(new Error('journal closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ records, release, resolve, reject });
      this.kick();
    });
  }

  /** One writer at a time: a flush loop, or a rotation, then whatever is pending. */
  private kick(work: () => Promise<void> = () => this.flush()): void {
    if (this.flushing) return;
    this.flushing = work().finally(() => {
      this.flushing = null;
      if (this.pending.length) this.kick();
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length) {
      const batch = this.pending;
      this.pending = [];
      const records = batch.flatMap((p) => p.records);
      const id = this.nextBatch++;
      // one contiguous journal write (a copy), so that the records' own buffers can move to the
      // worker, which writes the files while the fdatasync below runs
      const bytes = Buffer.concat(encode(records));
      this.worker.ref();
      this.worker.postMessage({ type: 'prepare', batch: id, records }, transferable(records));
      let seg: Segment | null = null;
      let start = 0;
      try {
        seg = await this.current();
        start = seg.size;
        let bufs: Buffer[] = [bytes];
        while (bufs.length) {
          const n = await call<number>(fs.writev, seg.fd, bufs);
          bufs = advance(bufs, n);
        }
        await call(fs.fdatasync, seg.fd);
        seg.size += bytes.length;
      } catch (e) {
        // never leave a torn batch in front of later ones: cut it off, or start a new segment
        if (seg) await call(fs.ftruncate, seg.fd, start).catch(() => this.abandon(seg!));
        this.worker.postMessage({ type: 'abort', batch: id });
        for (const p of batch) p.reject(e as Error);
        this.maybeUnref();
        continue;
      }
      seg.release.push(...batch.flatMap((p) => p.release));
      this.awaitingFiles.set(id, batch);
      this.worker.postMessage({ type: 'commit', batch: id });
      if (seg.size > ROTATE_AFTER_BYTES || Date.now() - seg.firstAt > ROTATE_AFTER_MS) await this.rotate();
      else this.armRotation();
    }
    if (this.closed) this.idle?.();
  }

  /** The worker put a batch's files in place (or keeps retrying them: they are safe in the journal). */
  private written(id: number): void {
    const batch = this.awaitingFiles.get(id) ?? [];
    this.awaitingFiles.delete(id);
    for (const p of batch) p.resolve();
    this.maybeUnref();
  }

  private maybeUnref(): void {
    if (this.awaitingDurable.size === 0 && this.awaitingFiles.size === 0) this.worker.unref();
  }

  private async current(): Promise<Segment> {
    if (this.segment) return this.segment;
    const n = this.nextSegment++;
    const fd = await call<number>(fs.open, join(this.dir, `${String(n).padStart(12, '0')}.wal`), constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_APPEND, 0o600);
    await fsyncDir(this.dir); // the new segment's name must be durable before it holds acknowledged mail
    this.segment = { n, fd, size: 0, firstAt: Date.now(), release: [] };
    return this.segment;
  }

  private abandon(seg: Segment): void {
    if (this.segment === seg) this.segment = null;
  }

  private armRotation(): void {
    if (this.rotateTimer) return;
    this.rotateTimer = setTimeout(() => {
      this.rotateTimer = null;
      if (this.flushing) this.armRotation(); // busy writing: try again shortly
      else this.kick(() => this.rotate());
    }, ROTATE_AFTER_MS);
    this.rotateTimer.unref();
  }

  /** Closes the current segment and asks the worker to make its files durable. */
  private async rotate(): Promise<void> {
    const seg = this.segment;
    if (!seg || seg.size === 0) return;
    this.segment = null;
    this.awaitingDurable.set(seg.n, seg.release);
    await call(fs.close, seg.fd).catch(() => {});
    this.worker.ref();
    this.worker.postMessage({ type: 'checkpoint', segment: seg.n });
  }

  /** The worker wrote every file of segment n: make them durable without blocking anyone. */
  private syncSegment(n: number): void {
    if (!this.useSyncfs) {
      void this.retire(n); // the worker fsync'ed every file and folder
      return;
    }
    execFile('sync', ['-f', this.dataDir], (err) => {
      if (!err) return void this.retire(n);
      this.log.error('syncfs failed, retrying the checkpoint', { error: err });
      setTimeout(() => this.syncSegment(n), 1000).unref();
    });
  }

  private async retire(n: number): Promise<void> {
    const release = this.awaitingDurable.get(n) ?? [];
    this.awaitingDurable.delete(n);
    await call(fs.unlink, join(this.dir, `${String(n).padStart(12, '0')}.wal`)).catch(() => {});
    await fsyncDir(this.dir).catch(() => {});
    this.maybeUnref();
    if (release.length) this.onDurable(release);
    if (this.closed && this.awaitingDurable.size === 0) this.idle?.();
  }

  /** Finishes pending writes and checkpoints, then stops the worker. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    await this.flushing;
    await this.rotate();
    if (this.awaitingDurable.size) await new Promise<void>((r) => (this.idle = r));
    await this.worker.terminate();
  }
}

function transferable(records: readonly JournalRecord[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const r of records) {
    const b = r.data.buffer;
    if (b instanceof ArrayBuffer && r.data.byteOffset === 0 && r.data.byteLength === b.byteLength) out.add(b);
  }
  return [...out];
}

/** Start-up: materialize every intact record of every leftover segment, make it durable, drop the segments. */
function recover(dataDir: string, dir: string): number {
  const segments = readdirSync(dir).filter((f) => f.endsWith('.wal')).sort();
  if (!segments.length) return 0;
  const l = layout(dataDir);
  const written: string[] = [];
  for (const s of segments) {
    for (const r of decode(readFileSync(join(dir, s)))) written.push(...materialize(r, l, { recovery: true, fsyncEach: false }));
  }
  if (!syncfs(dataDir)) {
    for (const f of written) fsyncPathSync(f);
    for (const d of new Set(written.map((f) => f.slice(0, f.lastIndexOf('/'))))) fsyncPathSync(d);
  }
  for (const s of segments) unlinkSync(join(dir, s));
  fsyncPathSync(dir);
  return written.length;
}

/** The compiled worker beside this module (a .ts one when running from sources under tsx). */
function workerUrl(): URL {
  const js = new URL('./materializer-worker.js', import.meta.url);
  return existsSync(js) ? js : new URL('./materializer-worker.ts', import.meta.url);
}
