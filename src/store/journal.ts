// Group commit. Accepted messages are handed to the journal worker once per turn of the event
// loop; the worker writes everything that reached it while it was busy as one batch, and one
// fdatasync covers it. The worker writes the Maildir and queue files the records stand for,
// links and renames them into place, and answers; each 250 waits for that answer: durable in
// the journal, visible in new/ or the queue. At each checkpoint (once a second) one `sync -f`
// (syncfs) makes a segment's files durable; only then is the segment deleted and are new queue
// entries handed to delivery. After a crash, the worker replays whatever segments are left
// (idempotently, size-checked) before it takes a batch and before anything is served: opening
// a journal never blocks the event loop. See journal-worker.ts for the file side.
import { promises as fs, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../ops/logger.js';
import type { BacklogState, FromWorker, ToWorker } from './journal-worker.js';
import type { JournalRecord } from './journal-format.js';
import { DEFAULT_MAILBOX_ACCESS, type MailboxAccess } from './mailbox-access.js';

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
  /** what the worker could not write yet, per destination (a mailbox, or 'queue') */
  private waiting: readonly BacklogState[] = [];

  private constructor(
    private readonly worker: Worker,
    private readonly onDurable: (released: readonly string[]) => void,
    private readonly log: Logger,
  ) {
    worker.on('message', (m: FromWorker) => this.received(m));
    worker.on('error', (e: Error) => this.fail(e));
    worker.on('exit', () => this.fail(new Error('journal worker exited')));
    worker.unref();
  }

  /** Starts the writer, which replays what a crash left before it takes anything new. */
  static async open(dataDir: string, onDurable: (released: readonly string[]) => void, log: Logger, access: MailboxAccess = DEFAULT_MAILBOX_ACCESS): Promise<Journal> {
    const journalDir = join(dataDir, 'journal');
    await fs.mkdir(journalDir, { recursive: true, mode: 0o700 });
    await fs.mkdir(join(dataDir, 'spool'), { recursive: true, mode: 0o700 });
    const worker = new Worker(WORKER_URL, { workerData: { dataDir, journalDir, access: { ...access } } });
    const listeners: { message?: (m: FromWorker) => void; error?: (e: Error) => void; exit?: () => void } = {};
    const ready = await new Promise<Extract<FromWorker, { type: 'ready' }>>((resolve, reject) => {
      listeners.message = (m) => {
        if (m.type === 'ready') resolve(m);
        else if (m.type === 'fatal') reject(Object.assign(new Error(`journal recovery failed: ${m.message}`), { code: m.code }));
      };
      listeners.error = reject;
      listeners.exit = () => reject(new Error('journal worker exited during start-up'));
      worker.on('message', listeners.message).on('error', listeners.error).on('exit', listeners.exit);
    })
      .catch(async (e: Error) => {
        await worker.terminate();
        throw e;
      })
      .finally(() => {
        // only ours: the worker keeps listeners of its own on itself
        worker.off('message', listeners.message!).off('error', listeners.error!).off('exit', listeners.exit!);
      });
    if (ready.recovered) log.warn('recovered messages from the journal after an unclean stop', { files: ready.recovered });
    if (!ready.useSyncfs) log.warn("`sync -f` is not available: every mail file is fsync'ed on its own (slower)");
    const journal = new Journal(worker, onDurable, log);
    journal.backlog(ready.waiting);
    return journal;
  }

  /**
   * Mail acknowledged but not written into its place yet (a Maildir that cannot be written),
   * per destination; it waits in the journal and is retried with backoff.
   */
  unwritten(): { readonly count: number; readonly oldest: number | null; readonly destinations: readonly BacklogState[] } {
    const count = this.waiting.reduce((n, w) => n + w.count, 0);
    return { count, oldest: count ? Math.min(...this.waiting.map((w) => w.since)) : null, destinations: this.waiting };
  }

  /** Logs each destination once when it starts failing and once when it has recovered. */
  private backlog(now: readonly BacklogState[]): void {
    const before = new Map(this.waiting.map((w) => [w.destination, w]));
    const after = new Map(now.map((w) => [w.destination, w]));
    for (const w of now) {
      if (before.has(w.destination)) continue;
      const what = w.destination === 'queue' ? 'writing queue entries' : `local delivery to mailbox ${w.destination}`;
      this.log.error(`${what} is failing: the mail waits in the journal and is retried, backing off up to a minute`, {
        destination: w.destination,
        error: w.error,
        code: w.code,
        waiting: w.count,
      });
    }
    for (const w of this.waiting) {
      if (after.has(w.destination)) continue;
      const what = w.destination === 'queue' ? 'writing queue entries' : `local delivery to mailbox ${w.destination}`;
      this.log.info(`${what} has recovered: what waited is in place`, { destination: w.destination, seconds: Math.round((Date.now() - w.since) / 1000) });
    }
    this.waiting = now;
  }

  /** The Maildir group and modes for the files and folders of every batch handed over after this. */
  setAccess(access: MailboxAccess): void {
    if (this.broken || this.closed) return;
    this.worker.postMessage({ type: 'access', access: { ...access } } satisfies ToWorker);
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
      case 'backlog':
        this.backlog(m.waiting);
        return;
      case 'closed':
        this.onClosed?.();
        return;
      default:
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
    if (b instanceof ArrayBuffer && r.data.byteLength > 0 && r.data.byteOffset === 0 && r.data.byteLength === b.byteLength) out.add(b);
  }
  return [...out];
}

/** The compiled worker beside this module (a .ts one when running from sources under tsx). */
const WORKER_URL = ((js) => (existsSync(js) ? js : new URL('./journal-worker.ts', import.meta.url)))(new URL('./journal-worker.js', import.meta.url));
