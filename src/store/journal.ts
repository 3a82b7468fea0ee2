// Group commit. Accepted messages are handed to the journal worker once per turn of the event
// loop; the worker writes everything that reached it while it was busy as one batch, and one
// fdatasync covers it. The worker writes the Maildir and queue files the records stand for,
// renames them into place, and answers; each 250 waits for that answer: durable in the journal, visible in
// new/ or the queue. At each checkpoint (once a second) one `sync -f` (syncfs) makes a segment's
// files durable; only then is the segment deleted and are new queue entries handed to delivery.
// After a crash, recovery replays whatever segments are left (idempotently, size-checked)
// before anything is served. See journal-worker.ts for the file side.
import fs, { existsSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../ops/logger.js';
import type { FromWorker, ToWorker } from './journal-worker.js';
import { decode, type JournalRecord } from './journal-format.js';
import { fsyncPathSync, layout, materialize, syncfs } from './materialize.js';

interface Pending {
  readonly records: JournalRecord[];
  readonly release: readonly string[];
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

export class Journal {
  private pending: Pending[] = [];
  /** batches handed to the worker, by id */
  private readonly inFlight = new Map<number, Pending[]>();
  private scheduled = false;
  private nextBatch = 1;
  private closed = false;
  private broken: Error | null = null;
  private onClosed: (() => void) | null = null;
  private onIdle: (() => void) | null = null;

  private constructor(
    private readonly worker: Worker,
    private readonly onDurable: (released: readonly string[]) => void,
    private readonly log: Logger,
  ) {
    worker.on('message', (m: FromWorker) => this.received(m));
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', () => this.fail(new Error('journal worker exited')));
    worker.unref();
  }

  /** Replays what a crash left, then starts the writer on a fresh segment. */
  static async open(dataDir: string, onDurable: (released: readonly string[]) => void, log: Logger): Promise<Journal> {
    const journalDir = join(dataDir, 'journal');
    await fs.promises.mkdir(journalDir, { recursive: true, mode: 0o700 });
    const { files, lastSegment } = recover(dataDir, journalDir);
    if (files) log.warn('recovered messages from the journal after an unclean stop', { files });
    const useSyncfs = syncfs(dataDir);
    if (!useSyncfs) log.warn('`sync -f` is not available: every mail file is fsync\'ed on its own (slower)');
    // new segments are numbered after the replayed ones: a name never comes back
    const worker = new Worker(workerUrl(), { workerData: { dataDir, journalDir, useSyncfs, firstSegment: lastSegment + 1 } });
    return new Journal(worker, onDurable, log);
  }

  /**
   * Resolves once the records are durable in the journal and their files are in place.
   * `release` names what to hand to delivery once the files are durable too (queue entry ids).
   */
  append(records: JournalRecord[], release: readonly string[] = []): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new Error('journal closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ records, release, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.send()); // what else completes in this turn of the loop joins the batch
    });
  }

  /**
   * Writes a large message's files on their own (each fdatasync'ed, renamed into place, folders
   * fsync'ed): a journal would write it twice. Resolves once all of that is done; durable at once.
   */
  direct(records: JournalRecord[]): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new Error('journal closed'));
    return new Promise((resolve, reject) => {
      const id = this.nextBatch++;
      this.inFlight.set(id, [{ records, release: [], resolve, reject }]);
      this.worker.ref();
      const msg: ToWorker = { type: 'direct', id, records };
      this.worker.postMessage(msg, transferable(records));
    });
  }

  /**
   * Hands the pending messages to the worker at once: it writes whatever reached it while it was
   * busy as one batch (one fdatasync), so no batch waits for the previous one's answer.
   */
  private send(): void {
    this.scheduled = false;
    if (!this.pending.length || this.broken) return;
    const batch = this.pending;
    this.pending = [];
    const records = batch.flatMap((p) => p.records);
    const id = this.nextBatch++;
    this.inFlight.set(id, batch);
    this.worker.ref();
    const msg: ToWorker = { type: 'batch', id, records, release: batch.flatMap((p) => p.release) };
    this.worker.postMessage(msg, transferable(records));
  }

  private received(m: FromWorker): void {
    switch (m.type) {
      case 'done':
      case 'failed': {
        const batch = m.ids.flatMap((id) => this.inFlight.get(id) ?? []);
        for (const id of m.ids) this.inFlight.delete(id);
        if (m.type === 'done') for (const p of batch) p.resolve();
        else {
          const err = Object.assign(new Error(m.message), { code: m.code });
          for (const p of batch) p.reject(err);
        }
        if (!this.inFlight.size && !this.pending.length) {
          this.worker.unref();
          this.onIdle?.();
        }
        return;
      }
      case 'durable':
        this.onDurable(m.release);
        return;
      case 'error':
        this.log.error('writing mail files failed, will retry (the messages are safe in the journal)', { error: m.message, code: m.code });
        return;
      case 'closed':
        this.onClosed?.();
    }
  }

  /** The writer is gone: what it was writing, and everything after, fails (a temporary error). */
  private fail(e: Error): void {
    if (this.broken || (this.closed && !this.inFlight.size && !this.onClosed)) return;
    this.broken = e;
    if (!this.closed) this.log.error('journal worker failed', { error: e });
    for (const p of [...[...this.inFlight.values()].flat(), ...this.pending]) p.reject(e);
    this.inFlight.clear();
    this.pending = [];
    this.onIdle?.();
    this.onClosed?.();
  }

  /** Finishes pending batches and checkpoints, then stops the worker. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.broken) return;
    if (this.inFlight.size || this.pending.length) await new Promise<void>((r) => (this.onIdle = r));
    this.worker.ref();
    const closed = new Promise<void>((r) => (this.onClosed = r));
    this.worker.postMessage({ type: 'close' } satisfies ToWorker);
    await closed;
    this.onClosed = null;
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

/**
 * Start-up: materialize every intact record of every leftover segment, make it durable, drop the
 * segments. Returns how many files were written and the highest segment number seen.
 */
function recover(dataDir: string, dir: string): { files: number; lastSegment: number } {
  const segments = readdirSync(dir).filter((f) => /^\d+\.wal$/.test(f)).sort();
  const lastSegment = segments.reduce((n, f) => Math.max(n, Number(f.slice(0, -4))), 0);
  if (!segments.length) return { files: 0, lastSegment };
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
  return { files: written.length, lastSegment };
}

/** The compiled worker beside this module (a .ts one when running from sources under tsx). */
function workerUrl(): URL {
  const js = new URL('./journal-worker.js', import.meta.url);
  return existsSync(js) ? js : new URL('./journal-worker.js', import.meta.url);
}
