// The outbound queue at work. Every queued message is known by what scheduling needs (its id,
// arrival, and per recipient domain a job with its due time: scheduler.ts); its state is read
// from disk when one of its jobs runs, and kept only while some job of it runs (the active
// window). Each attempt goes through the transport of the generation serving now; every
// recipient's fate is written durably as soon as it is known; temporary failures retry with
// exponential backoff and jitter; what failed is bounced (one DSN per message, never to the
// null sender); an entry is removed only when nothing is pending. A destination that could not
// be reached at all is suspended until that attempt's retry: its other messages are deferred
// without connecting (as Postfix does with a dead destination).
import { createReadStream, promises as fs } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { AccountBackend } from '../accounts/backend.js';
import type { DeliveryState } from '../config/desired-state.js';
import { splitAddress } from '../mail/addresses.js';
import { receivedHeader } from '../mail/received.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import type { Intake } from '../store/intake.js';
import { newQueueId, type QueueEntry } from '../store/queue-entry.js';
import { buildBounce, receivedCount } from './bounce.js';
import { Heap } from './heap.js';
import { domainOf, dueOf, pendingGroups } from './queue-entries.js';
import type { FromLoader, LoadedEntry } from './queue-loader-worker.js';
import type { QueueStore } from './queue-store.js';
import { takeRequests, type QueueRequest } from './requests.js';
import { Scheduler, type Job } from './scheduler.js';
import type { MessageSource, RecipientResult, Transport } from './transports.js';

export interface DeliveryContext {
  readonly transport: Transport;
  readonly settings: DeliveryState;
  readonly hostname: string;
  readonly domains: ReadonlySet<string>;
  readonly accounts: AccountBackend;
}

export interface QueueStats {
  readonly active: number;
  readonly deferred: number;
  readonly oldestArrival: number | null;
}

export type LoadProgress =
  | { readonly state: 'loading'; readonly startedAt: number; readonly seen: number; readonly loaded: number }
  | { readonly state: 'loaded'; readonly startedAt: number; readonly seen: number; readonly loaded: number; readonly ms: number }
  | { readonly state: 'failed'; readonly startedAt: number; readonly error: string };

/** A queued message, as scheduling knows it. */
interface QueuedEntry {
  readonly id: string;
  readonly arrivedAt: number;
  /** index in the arrival heap */
  apos: number;
  attempted: boolean;
  /** jobs of it running now */
  running: number;
  /** its last job is bouncing and removing it */
  settling: boolean;
  jobs: QueueJob[];
}

interface QueueJob extends Job {
  readonly entry: QueuedEntry;
}

const REQUEST_POLL_MS = 300;
const PROGRESS_LOG_MS = 5000;
/** A queue still loading after this long no longer holds back readiness (mail intake needs none of it). */
const READY_WHILE_LOADING_AFTER_MS = 2000;
const LOADER_URL = new URL(`./queue-loader-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

export class OutboundQueue {
  private readonly entries = new Map<string, QueuedEntry>();
  private readonly arrivals = new Heap<QueuedEntry>((a, b) => a.arrivedAt < b.arrivedAt, { get: (e) => e.apos, set: (e, i) => (e.apos = i) });
  /** entries never attempted, or with a job running */
  private active = 0;
  private readonly scheduler = new Scheduler<QueueJob>((job) => void this.attempt(job));
  /** the state of entries with a job running, read once for all of them */
  private readonly window = new Map<string, { entry: Promise<QueueEntry | null>; refs: number }>();
  private readonly writes = new Map<string, Promise<void>>();
  /** destinations (a domain, or '*': the relay) that could not be reached, until when */
  private readonly holds = new Map<string, { until: number; reason: string }>();
  private holdsFor: Transport | null = null;
  private readonly domainNames = new Map<string, string>();
  private readonly transportUse = new Map<Transport, number>();
  private requestTimer: NodeJS.Timeout | null = null;
  private ctx: (() => DeliveryContext) | null = null;
  private stopping = false;
  private idle: (() => void) | null = null;
  private loader: Worker | null = null;
  /** entries removed while the loader may still report them */
  private removedWhileLoading = new Set<string>();
  progress: LoadProgress | null = null;

  constructor(
    private readonly store: QueueStore,
    private readonly intake: Intake,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Starts delivering with the context of the serving generation; loads what is on disk meanwhile. */
  async start(ctx: () => DeliveryContext): Promise<void> {
    this.ctx = ctx;
    this.reconfigure();
    const startedAt = Date.now();
    try {
      await this.store.init();
    } catch (e) {
      return this.failed(startedAt, e as NodeJS.ErrnoException);
    }
    this.requestTimer = setInterval(() => void this.handleRequests(), REQUEST_POLL_MS);
    this.requestTimer.unref();
    this.load();
  }

  /** The queue cannot be read: not ready (a probe takes the server out of service), and why. */
  private failed(startedAt: number, e: { message: string; code?: string | undefined }): void {
    this.progress = { state: 'failed', startedAt, error: `${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ''}` };
    this.log.error('cannot load the outbound queue: not ready until this is fixed and the server restarted', { error: e.message, code: e.code });
  }

  /** Applies the serving generation's limits (called on every applied generation). */
  reconfigure(): void {
    if (!this.ctx) return;
    const { transport, settings } = this.ctx();
    this.scheduler.setLimits({ total: settings.concurrency, perDestination: transport.kind === 'relay' ? Infinity : settings.destinationConcurrency });
  }

  /** Ready to serve: loaded, or loading a queue so large that intake should not wait for it. */
  ready(): boolean {
    const p = this.progress;
    if (!p || p.state === 'failed') return false;
    return p.state === 'loaded' || Date.now() - p.startedAt > READY_WHILE_LOADING_AFTER_MS;
  }

  get loaded(): boolean {
    return this.progress?.state === 'loaded';
  }

  /** A message just accepted for other domains. */
  enqueued(entry: QueueEntry): void {
    if (this.entries.has(entry.id)) return;
    this.scheduler.addMany(this.add(entry.id, entry.arrivedAt, entry.attempts > 0, pendingGroups(entry).flat()));
  }

  stats(): QueueStats {
    return { active: this.active, deferred: this.entries.size - this.active, oldestArrival: this.arrivals.peek()?.arrivedAt ?? null };
  }

  /** What scheduling holds: for /status. */
  schedule(): { jobs: number; running: number; destinations: number; suspended: number } {
    const now = Date.now();
    return { jobs: this.scheduler.size, running: this.scheduler.running, destinations: this.scheduler.destinations, suspended: [...this.holds.values()].filter((h) => h.until > now).length };
  }

  /** Sends in flight on a transport (a retired transport is closed when this reaches 0). */
  usersOf(t: Transport): number {
    return this.transportUse.get(t) ?? 0;
  }

  /** Makes one message, or all, due now; lifts every suspension. */
  retry(id: string | null): number {
    this.holds.clear();
    if (id !== null) {
      const e = this.entries.get(id);
      if (!e) return 0;
      this.scheduler.expedite(e.jobs);
      return 1;
    }
    // in slices, so that a huge queue never holds the event loop
    const all = [...this.entries.values()];
    const slice = (from: number) => {
      this.scheduler.expedite(all.slice(from, from + 5000).flatMap((e) => e.jobs));
      if (from + 5000 < all.length) setImmediate(() => slice(from + 5000));
    };
    slice(0);
    return all.length;
  }

  async remove(id: string): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e) return false;
    for (const j of e.jobs) this.scheduler.remove(j); // a job running now finds the entry gone and drops its result
    this.forget(e);
    await this.writes.get(id)?.catch(() => {});
    await this.store.remove(id);
    return true;
  }

  /** Stops starting attempts; resolves when those in flight have finished. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.scheduler.stop();
    if (this.requestTimer) clearInterval(this.requestTimer);
    await this.loader?.terminate();
    if (this.scheduler.running) await new Promise<void>((r) => (this.idle = r));
  }

  /** Knows a queued message by its scheduling facts; returns its jobs (not yet scheduled). */
  private add(id: string, arrivedAt: number, attempted: boolean, groups: readonly (string | number)[]): QueueJob[] {
    const e: QueuedEntry = { id, arrivedAt, apos: -1, attempted, running: 0, settling: false, jobs: [] };
    this.entries.set(id, e);
    this.arrivals.push(e);
    if (!attempted) this.active++;
    for (let i = 0; i < groups.length; i += 2) e.jobs.push({ entry: e, domain: this.intern(groups[i] as string), due: groups[i + 1] as number, hpos: -1, running: false });
    // nothing pending (a crash after the last result, before the bounce or the removal): one job settles it
    if (!e.jobs.length) e.jobs.push({ entry: e, domain: '', due: 0, hpos: -1, running: false });
    return e.jobs;
  }

  private forget(e: QueuedEntry): void {
    if (this.entries.get(e.id) !== e) return;
    this.entries.delete(e.id);
    this.arrivals.remove(e);
    if (!e.attempted || e.running > 0) this.active--;
    if (this.progress?.state === 'loading') this.removedWhileLoading.add(e.id);
  }

  private intern(domain: string): string {
    let d = this.domainNames.get(domain);
    if (d === undefined) {
      d = domain;
      this.domainNames.set(d, d);
    }
    return d;
  }

  /** Streams the queue directory through the loader worker; scheduling starts with the first batch. */
  private load(): void {
    const startedAt = Date.now();
    this.progress = { state: 'loading', startedAt, seen: 0, loaded: 0 };
    let lastLog = startedAt;
    let loaded = 0;
    const worker = new Worker(LOADER_URL, { workerData: { dir: this.store.dir, startedAt } });
    this.loader = worker;
    const finish = (p: LoadProgress) => {
      this.progress = p;
      this.loader = null;
      this.removedWhileLoading = new Set();
      void worker.terminate();
    };
    worker.on('message', (m: FromLoader) => {
      if (m.type === 'batch') {
        const jobs: QueueJob[] = [];
        for (const [id, arrivedAt, attempted, groups] of m.entries as LoadedEntry[]) {
          if (this.entries.has(id) || this.intake.isUnreleased(id) || this.removedWhileLoading.has(id)) continue;
          jobs.push(...this.add(id, arrivedAt, attempted, groups));
          loaded++;
        }
        this.scheduler.addMany(jobs);
        this.progress = { state: 'loading', startedAt, seen: m.seen, loaded };
        worker.postMessage({ type: 'more' });
        if (Date.now() - lastLog > PROGRESS_LOG_MS) {
          lastLog = Date.now();
          this.log.info('loading the queue', { loaded, seconds: Math.round((lastLog - startedAt) / 1000) });
        }
      } else if (m.type === 'done') {
        const ms = Date.now() - startedAt;
        finish({ state: 'loaded', startedAt, seen: m.seen, loaded, ms });
        const fields = { entries: loaded, ms, quarantined: m.quarantined || undefined, removed: m.removed || undefined };
        if (loaded || m.quarantined || m.removed) this.log.info('queue loaded', fields);
        if (m.quarantined) this.log.warn('unreadable queue entries moved to queue/corrupt/', { count: m.quarantined });
      } else {
        finish({ state: 'failed', startedAt, error: '' });
        this.failed(startedAt, m);
      }
    });
    worker.on('error', (e) => {
      if (this.progress?.state !== 'loading') return;
      finish({ state: 'failed', startedAt, error: '' });
      this.failed(startedAt, e);
    });
  }

  private async attempt(job: QueueJob): Promise<void> {
    const e = job.entry;
    const ctx = this.ctx!();
    const t = ctx.transport;
    this.transportUse.set(t, (this.transportUse.get(t) ?? 0) + 1);
    const wasActive = !e.attempted || e.running > 0;
    e.running++;
    if (!wasActive) this.active++;
    let next: number | null = null;
    let entry: QueueEntry | null = null;
    try {
      entry = await this.acquire(e.id);
      if (entry) next = await this.deliver(job, entry, ctx);
      else this.forget(e); // gone from disk (deleted, or moved to corrupt/)
    } catch (err) {
      this.log.error('delivery attempt failed', { id: e.id, error: err as Error });
      next = Date.now() + ctx.settings.minRetryDelayMs;
    }
    this.transportUse.set(t, (this.transportUse.get(t) ?? 1) - 1);
    let live = this.entries.get(e.id) === e;
    if (live) {
      e.running--;
      e.attempted = true;
      if (e.running === 0) this.active--;
    }
    // The last job of a message to finish settles it: bounce what failed, then remove it.
    if (live && entry && e.running === 0 && !e.settling && !entry.recipients.some((r) => r.state === 'pending')) {
      e.settling = true;
      try {
        next = await this.settle(e, entry, ctx);
      } catch (err) {
        this.log.error('finishing a delivered message failed', { id: e.id, error: err as Error });
        next = Date.now() + ctx.settings.minRetryDelayMs;
      } finally {
        e.settling = false;
      }
      live = this.entries.get(e.id) === e;
    }
    this.release(e.id);
    if (!live) next = null;
    if (next === null) e.jobs = e.jobs.filter((j) => j !== job);
    this.scheduler.done(job, next);
    if (this.stopping && this.scheduler.running === 0) this.idle?.();
  }

  /** One job: its recipients at its destination. Returns when it is due again, or null when it is done. */
  private async deliver(job: QueueJob, entry: QueueEntry, ctx: DeliveryContext): Promise<number | null> {
    const s = ctx.settings;
    const mine = entry.recipients.filter((r) => r.state === 'pending' && domainOf(r.address) === job.domain);
    if (!mine.length) return null;
    const fail = (response: string) => mine.map((r): RecipientResult => ({ address: r.address, outcome: 'failed', response, remote: null }));
    if (ctx.transport !== this.holdsFor) {
      this.holds.clear(); // a new transport: new routes
      this.holdsFor = ctx.transport;
    }
    const key = ctx.transport.kind === 'relay' ? '*' : job.domain;
    const hold = this.holds.get(key);
    if (Date.now() - entry.arrivedAt > s.maxLifetimeMs) {
      await this.record(entry, fail(`4.4.7 delivery time expired; last error: ${mine[0]!.lastResponse ?? 'none'}`), ctx);
    } else if (receivedCount(await this.store.readHeader(entry.id, entry.bodyOffset ?? 0)) > s.maxReceivedHeaders) {
      await this.record(entry, fail(`5.4.6 mail loop: more than ${s.maxReceivedHeaders} Received headers`), ctx);
    } else if (hold && hold.until > Date.now()) {
      await this.record(entry, mine.map((r) => ({ address: r.address, outcome: 'deferred', response: `delivery temporarily suspended: ${hold.reason}`, remote: null })), ctx);
    } else {
      const started = performance.now();
      const { reached } = await ctx.transport.send({ from: entry.sender, to: mine.map((r) => r.address) }, this.source(entry), (results) => this.record(entry, results, ctx));
      this.metrics.deliveryDuration.observe({ transport: ctx.transport.kind }, (performance.now() - started) / 1000);
      if (reached) this.holds.delete(key);
      else {
        const reason = mine[0]!.lastResponse ?? 'unreachable';
        this.holds.set(key, { until: Date.now() + s.minRetryDelayMs, reason });
        this.log.warn('destination unreachable: its messages wait for the retry', { destination: key === '*' ? 'relay' : key, reason });
      }
    }
    if (!this.entries.has(entry.id)) return null; // deleted by an operator meanwhile
    entry.attempts++;
    const still = mine.filter((r) => r.state === 'pending');
    let next: number | null = null;
    if (still.length) {
      const attempts = still.reduce((n, r) => Math.max(n, r.attempts), 1);
      const backoff = Math.min(s.maxRetryDelayMs, s.minRetryDelayMs * 2 ** Math.max(0, attempts - 1));
      next = Date.now() + Math.round(backoff * (0.8 + Math.random() * 0.4));
      for (const r of still) r.retryAt = next;
      const h = this.holds.get(key);
      if (h && h.until > next) h.until = next;
    }
    const pending = entry.recipients.filter((r) => r.state === 'pending');
    if (pending.length) entry.nextAttemptAt = pending.reduce((t, r) => Math.min(t, dueOf(r, entry)), Infinity);
    await this.persist(entry);
    return next;
  }

  /**
   * Nothing is pending any more: bounce what failed, then remove the entry. Returns when to try
   * again when the bounce could not be made durable yet (the entry stays), else null.
   */
  private async settle(e: QueuedEntry, entry: QueueEntry, ctx: DeliveryContext): Promise<number | null> {
    if (!(await this.bounceIfNeeded(entry, ctx))) {
      entry.nextAttemptAt = Date.now() + ctx.settings.minRetryDelayMs;
      await this.persist(entry);
      return entry.nextAttemptAt;
    }
    for (const j of e.jobs) this.scheduler.remove(j);
    await this.writes.get(entry.id)?.catch(() => {});
    this.forget(e);
    await this.store.remove(entry.id);
    return null;
  }

  /** The queued file, past the lines only Maildir copies carry; opened anew for every host tried. */
  private source(entry: QueueEntry): MessageSource {
    const path = this.store.messagePath(entry.id);
    const start = entry.bodyOffset ?? 0;
    return { open: () => createReadStream(path, { start, highWaterMark: 64 * 1024 }) };
  }

  /** The entry's state from disk, shared by every job of it running now. */
  private acquire(id: string): Promise<QueueEntry | null> {
    let w = this.window.get(id);
    if (!w) {
      w = { entry: this.store.read(id), refs: 0 };
      this.window.set(id, w);
    }
    w.refs++;
    return w.entry;
  }

  private release(id: string): void {
    const w = this.window.get(id);
    if (w && --w.refs <= 0) this.window.delete(id);
  }

  /** Applies results and makes them durable before anything else happens. */
  private async record(entry: QueueEntry, results: readonly RecipientResult[], ctx: DeliveryContext): Promise<void> {
    if (!this.entries.has(entry.id)) return;
    const now = Date.now();
    for (const res of results) {
      const r = entry.recipients.find((x) => x.address === res.address && x.state === 'pending');
      if (!r) continue;
      r.attempts++;
      r.lastResponse = res.response;
      r.updatedAt = now;
      if (res.outcome === 'delivered') r.state = 'delivered';
      if (res.outcome === 'failed') r.state = 'failed';
      r.remote = res.remote;
      const result = res.outcome === 'failed' ? 'bounced' : res.outcome;
      this.metrics.delivery.inc({ transport: ctx.transport.kind, result });
      this.log.info(`recipient ${res.outcome}`, { id: entry.id, transport: ctx.transport.kind, remote: res.remote ?? undefined, response: res.response });
    }
    entry.lastError = results.find((x) => x.outcome !== 'delivered')?.response ?? entry.lastError;
    await this.persist(entry);
  }

  /** Updates of one entry are written in order (its jobs and transports report concurrently). */
  private persist(entry: QueueEntry): Promise<void> {
    const prev = this.writes.get(entry.id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => (this.entries.has(entry.id) ? this.store.update(entry) : undefined));
    this.writes.set(entry.id, next);
    void next
      .finally(() => {
        if (this.writes.get(entry.id) === next) this.writes.delete(entry.id);
      })
      .catch(() => {});
    return next;
  }

  /** True when nothing (more) needs bouncing. */
  private async bounceIfNeeded(entry: QueueEntry, ctx: DeliveryContext): Promise<boolean> {
    const failed = entry.recipients.filter((r) => r.state === 'failed');
    if (!failed.length || entry.bounced) return true;
    if (entry.sender === '') {
      this.log.warn('undeliverable message from the null sender dropped', { id: entry.id, failed: failed.length });
      return true;
    }
    let originalHeaders: string;
    try {
      originalHeaders = await this.store.readHeader(entry.id, entry.bodyOffset ?? 0);
    } catch {
      return true;
    }
    const dsn = buildBounce({
      hostname: ctx.hostname,
      queueId: entry.id,
      sender: entry.sender,
      arrivedAt: entry.arrivedAt,
      failed: failed.map((r) => ({ address: r.address, diagnostic: r.lastResponse ?? 'failed', remote: r.remote ?? null })),
      originalHeaders,
    });
    const id = newQueueId();
    const received = receivedHeader({ helo: ctx.hostname, clientAddress: '127.0.0.1', hostname: ctx.hostname, esmtp: true, tls: null, authenticated: false, id, recipients: [entry.sender], date: new Date() });
    const { local, domain } = splitAddress(entry.sender);
    try {
      if (ctx.domains.has(domain)) {
        const owner = await ctx.accounts.findRecipient(local);
        if (owner.found) {
          await this.intake.acceptBuffer({ id, sender: '', local: [{ user: owner.user, address: entry.sender }], remote: [], received, message: dsn });
          this.metrics.delivery.inc({ transport: 'local', result: 'delivered' });
        } else if (owner.unavailable) {
          return false;
        } else {
          this.log.warn('bounce dropped: the local sender does not exist', { id: entry.id });
        }
      } else {
        await this.intake.acceptBuffer({ id, sender: '', local: [], remote: [entry.sender], received, message: dsn });
      }
    } catch (e) {
      this.log.error('could not store a bounce, will retry', { id: entry.id, error: e as Error });
      return false;
    }
    entry.bounced = true;
    this.log.info('bounce sent', { id: entry.id, bounce: id, failed: failed.length });
    return true;
  }

  private async handleRequests(): Promise<void> {
    if (!this.loaded) return; // requests wait until every entry is known
    for (const { path, req } of await takeRequests(this.store.dir)) {
      const result = await this.apply(req).catch((e: Error) => ({ ok: false, message: e.message }));
      await fs.writeFile(`${path}.result`, JSON.stringify(result)).catch(() => {});
      await fs.unlink(path).catch(() => {});
    }
  }

  private async apply(req: QueueRequest): Promise<{ ok: boolean; message: string }> {
    if (req.op === 'retry') {
      const n = this.retry(req.id);
      return req.id !== null && n === 0 ? { ok: false, message: `no queued message ${req.id}` } : { ok: true, message: `retrying ${n} message${n === 1 ? '' : 's'} now` };
    }
    return (await this.remove(req.id)) ? { ok: true, message: `deleted ${req.id}` } : { ok: false, message: `no queued message ${req.id}` };
  }
}
