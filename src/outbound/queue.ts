// The outbound queue at work. Every queued message is known by what scheduling needs (its id,
// arrival, and per recipient domain a job with its due time: scheduler.ts); its state is read
// from disk when one of its jobs runs, and kept only while some job of it runs (the active
// window). Each attempt goes through the transport of the generation serving now; every
// recipient's fate is written durably as soon as it is known (record(), and outcome() for what
// people and metrics see of it); temporary failures retry with exponential backoff and jitter;
// what failed is bounced after the attempt that failed it (one DSN per attempt with failures,
// never to the null sender); an entry is removed only when nothing is pending. A destination
// that could not be reached at all is suspended until that attempt's retry: its other messages
// are deferred without connecting (as Postfix does with a dead destination). An operator's
// requests (requests.ts) are answered here; a retry of a message being delivered makes it due
// again as soon as that attempt ends.
//
// DKIM: before a message's first attempt its signature header fields are made (signMessage) and
// kept in its state (QueueEntry.dkim); every attempt sends them in front of the queued bytes,
// which are never rewritten (Maildir copies share the file). DSNs are signed when they are made.
import { createReadStream, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { AccountBackend } from '../accounts/backend.js';
import type { DeliveryState } from '../config/desired-state.js';
import { fromDomainOf, type DkimSigner } from '../dkim/signer.js';
import { splitAddress } from '../mail/addresses.js';
import { receivedHeader } from '../mail/received.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import type { Intake } from '../store/intake.js';
import { lmtpPath, newQueueId, QUEUE_ID_SALT, type QueueEntry, type QueueRecipient } from '../store/queue-entry.js';
import { buildBounce, ORIGINAL_LIMIT, receivedCount, type Original } from './bounce.js';
import { destinationOf, dueOf, LMTP_DESTINATION, pendingGroups } from './queue-entries.js';
import { QueueIndex } from './queue-index.js';
import type { FromLoader, ToLoader } from './queue-loader-worker.js';
import type { QueueStore } from './queue-store.js';
import { takeRequests, type DeliveryInProgress, type QueueRequest, type RequestResult, type Taken } from './requests.js';
import type { MailLog } from '../ops/mail-log.js';
import { Scheduler } from './scheduler.js';
import type { MessageSource, RecipientResult, Transport } from './transports.js';

export interface DeliveryContext {
  readonly transport: Transport;
  /** local recipients queued for LMTP (mailboxes.store: lmtp) go here; null or absent: no LMTP server configured */
  readonly lmtp?: Transport | null;
  readonly settings: DeliveryState;
  readonly hostname: string;
  readonly domains: ReadonlySet<string>;
  readonly accounts: AccountBackend;
  /** DKIM signing of what leaves (the serving generation's keys) */
  readonly signer: DkimSigner;
  /** where recipient outcomes are logged */
  readonly mailLog: MailLog;
  /** operator requests that are not about the queue (`mailplane unlock`) */
  readonly unlock: (address: string | null) => RequestResult | Promise<RequestResult>;
  /** `mailplane queue handoff`: this replica leaves and hands its queue to a peer (started; the answer says to whom) */
  readonly handoff?: () => RequestResult;
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

/** A message with a job running: its state, read from disk once for all of them. */
interface Open {
  readonly entry: Promise<QueueEntry | null>;
  refs: number;
  /** removed by an operator while a job of it ran: results are dropped */
  deleted: boolean;
  /** its DKIM header fields being made (once, whichever of its jobs asks first) */
  signing?: Promise<string>;
}

/** How a recipient ended, or paused (Postfix's status=sent|deferred|bounced, plus ours). */
export type Fate = 'delivered' | 'deferred' | 'bounced' | 'expired' | 'deleted';

/** A failed recipient whose sender has not been told yet (entries written before per-recipient reports: `bounced`). */
const unreported = (e: QueueEntry, r: QueueRecipient) => r.state === 'failed' && !r.notified && !e.bounced;

const REQUEST_POLL_MS = 300;
/** While handing off, a peer that does not take a message is tried again after this, doubling up to HANDOFF_MAX_RETRY_MS. */
const HANDOFF_RETRY_MS = 1000;
const HANDOFF_MAX_RETRY_MS = 10_000;
const PROGRESS_LOG_MS = 5000;
/** How long one batch of the loader may hold the event loop. */
const BATCH_MS = 2;
/** A queue still loading after this long no longer holds back readiness (mail intake needs none of it). */
const READY_WHILE_LOADING_AFTER_MS = 2000;
const LOADER_URL = new URL(`./queue-loader-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

/** The status code a recipient line carries when the reply gave none (RFC 3463). */
const DEFAULT_DSN: Record<Fate, string> = { delivered: '2.0.0', deferred: '4.0.0', bounced: '5.0.0', expired: '4.4.7', deleted: '5.0.0' };

export class OutboundQueue {
  private readonly index = new QueueIndex();
  private readonly scheduler = new Scheduler((job) => void this.attempt(job));
  /** the messages with a job running (the active window), by id */
  private readonly window = new Map<string, Open>();
  private readonly writes = new Map<string, Promise<void>>();
  /** destinations (a domain, or '*': the relay) that could not be reached, until when */
  private readonly holds = new Map<string, { until: number; reason: string }>();
  private holdsFor: Transport | null = null;
  private lmtpHoldsFor: Transport | null = null;
  private readonly transportUse = new Map<Transport, number>();
  private requestTimer: NodeJS.Timeout | null = null;
  /** why the requests folder could not be read (logged once, until it can be again) */
  private requestsProblem: string | null = null;
  /** requests done but not removable (a folder the server may not write): never applied twice */
  private readonly stuck = new Set<string>();
  /** the attempts running now, by job: what `queue list` and /status show */
  private readonly delivering = new Map<number, DeliveryInProgress & { host: string | null }>();
  /** running jobs an operator asked to retry: due again at once when the attempt ends */
  private readonly retryAsked = new Set<number>();
  /** DSNs being made, per message: one at a time, so no failure is reported twice */
  private readonly reporting = new Map<string, Promise<boolean>>();
  private ctx: (() => DeliveryContext) | null = null;
  /** the peer everything goes to while this replica leaves (null: delivering as usual) */
  private handingOff: Transport | null = null;
  private stopping = false;
  private idle: (() => void) | null = null;
  private loader: Worker | null = null;
  progress: LoadProgress | null = null;

  /** @param openedAt when the data dir was opened: the loader leaves what this process queued since to the journal */
  constructor(
    private readonly store: QueueStore,
    private readonly intake: Intake,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly openedAt: number = Date.now(),
  ) {}

  /** Starts delivering with the context of the serving generation; loads what is on disk meanwhile. */
  async start(ctx: () => DeliveryContext): Promise<void> {
    this.ctx = ctx;
    this.reconfigure();
    // what was queued before this start (the loader's jobs) goes out gradually: never every due message at once
    this.scheduler.rampUp(ctx().settings.startupRampMs);
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
    // one message at a time to the peer: a crash duplicates at most the one in flight
    if (this.handingOff) return this.scheduler.setLimits({ total: 1, perDestination: Infinity });
    const { transport, settings } = this.ctx();
    this.scheduler.setLimits({
      total: settings.concurrency,
      perDestination: transport.kind === 'relay' ? Infinity : settings.destinationConcurrency,
      bytes: settings.maxBytesInFlight,
    });
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

  /** A message just accepted for other domains (the journal made it durable). */
  enqueued(entry: QueueEntry): void {
    this.scheduler.addMany(this.add(entry.id, entry.arrivedAt, entry.attempts > 0, entry.size, pendingGroups(entry)));
  }

  stats(): QueueStats {
    return { active: this.index.active, deferred: this.index.size - this.index.active, oldestArrival: this.index.oldest() };
  }

  /** What scheduling holds: for /status. */
  schedule(): { jobs: number; running: number; destinations: number; suspended: number } {
    const now = Date.now();
    return { jobs: this.scheduler.size, running: this.scheduler.running, destinations: this.scheduler.destinations, suspended: [...this.holds.values()].filter((h) => h.until > now).length };
  }

  /** The delivery attempts running now, oldest first. */
  deliveries(): DeliveryInProgress[] {
    return [...this.delivering.values()].map((d) => ({ ...d })).sort((a, b) => a.since - b.since);
  }

  /** Sends in flight on a transport (a retired transport is closed when this reaches 0). */
  usersOf(t: Transport): number {
    return this.transportUse.get(t) ?? 0;
  }

  /**
   * Makes one message, or all, due now; lifts every suspension. A job running now is due again
   * as soon as its attempt ends (if that attempt leaves anything pending).
   */
  retry(id: string | null): number {
    this.holds.clear();
    const expedite = (jobs: number[]) => {
      for (const job of jobs) if (this.scheduler.isRunning(job)) this.retryAsked.add(job);
      this.scheduler.expedite(jobs);
    };
    if (id !== null) {
      const row = this.index.find(id);
      if (row < 0) return 0;
      expedite(this.jobsOf(row));
      return 1;
    }
    // in slices, so that a huge queue never holds the event loop
    const rows = this.index.liveRows();
    const slice = () => {
      const jobs: number[] = [];
      for (let r = rows.next(); !r.done; r = rows.next()) {
        jobs.push(...this.jobsOf(r.value));
        if (jobs.length >= 5000) {
          expedite(jobs);
          setImmediate(slice);
          return;
        }
      }
      expedite(jobs);
    };
    const n = this.index.size;
    slice();
    return n;
  }

  async remove(id: string): Promise<boolean> {
    const row = this.index.find(id);
    if (row < 0) return false;
    const open = this.window.get(id);
    this.drop(row, open);
    const entry = await (open ? open.entry : this.store.read(id)).catch(() => null);
    await this.writes.get(id)?.catch(() => {});
    await this.store.remove(id);
    const kind = this.ctx?.().transport.kind ?? 'queue';
    for (const r of entry?.recipients ?? []) if (r.state === 'pending') this.outcome(entry!, r, 'deleted', r.lmtp ? 'lmtp' : kind);
    return true;
  }

  /**
   * Leaving for good: from now on every message goes to `peer` (another replica's peer listener),
   * one at a time, all due now; a recipient is done when the peer answered 250 for it, a message
   * is removed once none is pending (as after any delivery). Those the peer cannot take now are
   * tried again after a second, doubling up to ten. Messages being delivered as usual finish
   * first, then follow.
   */
  handoff(peer: Transport): void {
    this.handingOff = peer;
    this.holds.clear();
    this.reconfigure();
    this.retry(null);
  }

  /** Nothing queued and nothing being attempted: what a hand-off waits for. */
  get empty(): boolean {
    return this.index.size === 0 && this.scheduler.running === 0;
  }

  /** The serving context, with the peer in place of every transport while handing off. */
  private context(): DeliveryContext {
    const ctx = this.ctx!();
    const peer = this.handingOff;
    if (!peer) return ctx;
    return { ...ctx, transport: peer, lmtp: peer, settings: { ...ctx.settings, minRetryDelayMs: HANDOFF_RETRY_MS, maxRetryDelayMs: HANDOFF_MAX_RETRY_MS } };
  }

  /** Stops starting attempts; resolves when those in flight have finished. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.scheduler.stop();
    if (this.requestTimer) clearInterval(this.requestTimer);
    await this.loader?.terminate();
    if (this.scheduler.running) await new Promise<void>((r) => (this.idle = r));
  }

  /**
   * Forgets a message: its waiting jobs end, a job running now finds it gone (open.deleted) and
   * drops its result. The row is free from here on (a new message may take it at once).
   */
  private drop(row: number, open: Open | undefined): void {
    if (open) open.deleted = true;
    for (const job of this.jobsOf(row)) this.scheduler.remove(job);
    this.index.remove(row);
  }

  /** Knows a queued message by its scheduling facts; returns its jobs (not yet in line). */
  private add(id: string, arrivedAt: number, attempted: boolean, size: number, groups: Iterable<readonly [string, number]>): number[] {
    const row = this.index.add(id, arrivedAt, attempted);
    const jobs: number[] = [];
    for (const [domain, due] of groups) jobs.push(this.scheduler.create(row, domain, due, size));
    return this.chain(row, jobs);
  }

  /** Links a message's jobs; nothing pending (a crash after its last result) gets one job that settles it. */
  private chain(row: number, jobs: number[]): number[] {
    if (!jobs.length) jobs.push(this.scheduler.create(row, '', 0));
    for (let i = 0; i < jobs.length - 1; i++) this.scheduler.link(jobs[i]!, jobs[i + 1]!);
    this.index.setFirstJob(row, jobs[0]!);
    return jobs;
  }

  private jobsOf(row: number): number[] {
    const out: number[] = [];
    for (let j = this.index.firstJob(row); j >= 0; j = this.scheduler.nextOf(j)) out.push(j);
    return out;
  }

  /** Takes an ended job out of its message's chain. */
  private unlink(row: number, job: number): void {
    const first = this.index.firstJob(row);
    if (first === job) return this.index.setFirstJob(row, this.scheduler.nextOf(job));
    for (let j = first; j >= 0; j = this.scheduler.nextOf(j)) {
      if (this.scheduler.nextOf(j) === job) return this.scheduler.link(j, this.scheduler.nextOf(job));
    }
  }

  /** Streams the queue directory through the loader worker; scheduling starts with the first batch. */
  private load(): void {
    const startedAt = Date.now();
    this.progress = { state: 'loading', startedAt, seen: 0, loaded: 0 };
    let lastLog = startedAt;
    let loaded = 0;
    let batchSize = 16;
    const worker = new Worker(LOADER_URL, { workerData: { dir: this.store.dir, openedAt: this.openedAt, salt: QUEUE_ID_SALT } });
    this.loader = worker;
    const finish = (p: LoadProgress | null) => {
      if (p) this.progress = p;
      this.loader = null;
      void worker.terminate();
    };
    worker.on('message', (m: FromLoader) => {
      if (m.type === 'count') {
        this.index.reserve(m.entries);
        this.scheduler.reserve(m.entries);
      } else if (m.type === 'batch') {
        // no string or object per entry: ids stay numbers (see QueueIndex)
        const t0 = performance.now();
        const jobs: number[] = [];
        const v = m.entries;
        let at = 0;
        for (let n = 0; n < m.count; n++) {
          const time = v[at]!;
          const tail = v[at + 1]!;
          const row = Number.isNaN(time) ? this.index.add(m.odd[tail]!, v[at + 2]!, v[at + 3] === 1) : this.index.addKeyed(time, tail, v[at + 2]!, v[at + 3] === 1);
          const size = v[at + 4]!;
          const groups = v[at + 5]!;
          at += 6;
          const mine: number[] = [];
          for (let g = 0; g < groups; g++, at += 2) mine.push(this.scheduler.create(row, m.domains[v[at]!]!, v[at + 1]!, size, true));
          for (const job of this.chain(row, mine)) jobs.push(job);
          loaded++;
        }
        this.scheduler.addMany(jobs);
        this.progress = { state: 'loading', startedAt, seen: m.seen, loaded };
        // batches sized to take about BATCH_MS of the loop each, whatever the machine
        const took = Math.max(0.05, performance.now() - t0);
        batchSize = Math.max(16, Math.min(2048, Math.round((m.count * BATCH_MS) / took)));
        worker.postMessage({ type: 'more', size: batchSize } satisfies ToLoader);
        if (Date.now() - lastLog > PROGRESS_LOG_MS) {
          lastLog = Date.now();
          this.log.info('loading the queue', { loaded, seconds: Math.round((lastLog - startedAt) / 1000) });
        }
      } else if (m.type === 'done') {
        const ms = Date.now() - startedAt;
        finish({ state: 'loaded', startedAt, seen: m.seen, loaded, ms });
        if (loaded || m.quarantined || m.removed) this.log.info('queue loaded', { entries: loaded, ms, quarantined: m.quarantined || undefined, removed: m.removed || undefined });
        if (m.quarantined) this.log.warn('unreadable queue entries moved to queue/corrupt/', { count: m.quarantined });
      } else {
        finish(null);
        this.failed(startedAt, m);
      }
    });
    worker.on('error', (e: Error) => {
      if (this.progress?.state !== 'loading') return;
      finish(null);
      this.failed(startedAt, e);
    });
  }

  private async attempt(job: number): Promise<void> {
    const row = this.scheduler.ownerOf(job);
    const id = this.index.idOf(row);
    const ctx = this.context();
    // the job's destination decides the transport: the LMTP server's recipients, or a domain's (relay or MX)
    const lmtp = this.scheduler.destinationOf(job) === LMTP_DESTINATION;
    const t = lmtp ? (ctx.lmtp ?? null) : ctx.transport;
    if (t) this.transportUse.set(t, (this.transportUse.get(t) ?? 0) + 1);
    this.index.jobStarted(row);
    let next: number | null = null;
    let entry: QueueEntry | null = null;
    const open = this.acquire(id);
    try {
      entry = await open.entry;
      if (entry) next = await this.deliver(job, open, entry, ctx, t);
      else if (!open.deleted) this.drop(row, open); // gone from disk (deleted, or moved to corrupt/)
    } catch (err) {
      this.log.error('delivery attempt failed', { id, error: err as Error });
      next = Date.now() + ctx.settings.minRetryDelayMs;
    }
    if (t) this.transportUse.set(t, (this.transportUse.get(t) ?? 1) - 1);
    // failed recipients are reported after the attempt that failed them, not when the message is done
    if (entry && !open.deleted && entry.recipients.some((r) => unreported(entry, r))) {
      await this.report(open, entry, ctx).catch((err: Error) => this.log.error('could not store a bounce, will retry', { id, error: err }));
    }
    let live = !open.deleted && this.index.isLive(row);
    if (live) this.index.jobEnded(row);
    // The last job of a message to finish settles it: bounce what failed, then remove it.
    if (live && entry && this.index.running(row) === 0 && !this.index.settling(row) && !entry.recipients.some((r) => r.state === 'pending')) {
      this.index.setSettling(row, true);
      try {
        next = await this.settle(row, open, entry, ctx);
      } catch (err) {
        this.log.error('finishing a delivered message failed', { id, error: err as Error });
        next = Date.now() + ctx.settings.minRetryDelayMs;
      } finally {
        if (!open.deleted) this.index.setSettling(row, false);
      }
      live = !open.deleted && this.index.isLive(row);
    }
    this.release(id);
    if (!live) next = null;
    if (this.retryAsked.delete(job) && next !== null) next = Math.min(next, Date.now()); // asked while it ran
    if (next === null && live) this.unlink(row, job);
    this.scheduler.done(job, next);
    if (this.stopping && this.scheduler.running === 0) this.idle?.();
  }

  /** One job: its recipients at its destination. Returns when it is due again, or null when it is done. */
  private async deliver(job: number, open: Open, entry: QueueEntry, ctx: DeliveryContext, transport: Transport | null): Promise<number | null> {
    const s = ctx.settings;
    const domain = this.scheduler.destinationOf(job);
    const lmtp = domain === LMTP_DESTINATION;
    const handoff = ctx.transport.kind === 'handoff';
    const kind = lmtp && !handoff ? 'lmtp' : ctx.transport.kind;
    const mine = entry.recipients.filter((r) => r.state === 'pending' && destinationOf(r) === domain);
    if (!mine.length) return null;
    const fail = (response: string) => mine.map((r): RecipientResult => ({ address: r.address, outcome: 'failed', response, remote: null }));
    if (ctx.transport !== this.holdsFor) {
      this.holds.clear(); // a new transport: new routes
      this.holdsFor = ctx.transport;
    }
    if ((ctx.lmtp ?? null) !== this.lmtpHoldsFor) {
      this.holds.delete(LMTP_DESTINATION); // a new LMTP server (or client)
      this.lmtpHoldsFor = ctx.lmtp ?? null;
    }
    // the hand-off peer is one destination for all; else the LMTP server is one for local
    // mail, and the relay one for all other mail (an LMTP server down never holds the relay)
    const key = handoff ? '*' : lmtp ? LMTP_DESTINATION : ctx.transport.kind === 'relay' ? '*' : domain;
    const shown = handoff ? 'handoff' : lmtp ? 'lmtp' : key === '*' ? 'relay' : key;
    const hold = this.holds.get(key);
    // the header block, read once: for loop detection, and for the From: domain when signing
    let header: Promise<string> | null = null;
    const headerOf = () => (header ??= this.store.readHeader(entry.id, entry.bodyOffset ?? 0));
    if (Date.now() - entry.arrivedAt > s.maxLifetimeMs) {
      await this.record(open, entry, fail(`4.4.7 delivery time expired; last error: ${mine[0]!.lastResponse ?? 'none'}`), ctx, kind, 'expired');
    } else if (receivedCount(await headerOf()) > s.maxReceivedHeaders) {
      await this.record(open, entry, fail(`5.4.6 mail loop: more than ${s.maxReceivedHeaders} Received headers`), ctx, kind);
    } else if (hold && hold.until > Date.now()) {
      await this.record(
        open,
        entry,
        mine.map((r) => ({ address: r.address, outcome: 'deferred', response: `delivery temporarily suspended: ${hold.reason}`, remote: null })),
        ctx,
        kind,
      );
    } else if (!transport) {
      // queued for LMTP, and mailboxes.lmtp is gone from the config: it waits for one (or expires)
      const response = '4.3.5 no LMTP server is configured (mailboxes.lmtp.address): local mail queued for one waits';
      await this.record(
        open,
        entry,
        mine.map((r): RecipientResult => ({ address: r.address, outcome: 'deferred', response, remote: null })),
        ctx,
        kind,
      );
    } else {
      const started = performance.now();
      const now = Date.now();
      const delivery = { id: entry.id, destination: shown, since: now, attempt: entry.attempts + 1, host: null as string | null };
      this.delivering.set(job, delivery);
      let reached: boolean;
      try {
        // local copies over LMTP are not signed (Maildir copies are not either), and skip only our Return-Path and Delivered-To
        const dkim = lmtp ? '' : await this.dkimOf(open, entry, ctx, headerOf);
        ({ reached } = await transport.send(
          {
            from: entry.sender,
            to: mine.map((r) => r.address),
            eightBitMime: entry.body === '8BITMIME',
            smtputf8: entry.smtputf8 === true,
            arrivedAt: entry.arrivedAt,
            ...(lmtp && !handoff ? { paths: mine.map((r) => lmtpPath(r.lmtp!)) } : {}),
          },
          this.source(entry, dkim, lmtp ? (entry.lmtpOffset ?? 0) : (entry.bodyOffset ?? 0)),
          (results) => this.record(open, entry, results, ctx, kind),
          (host) => (delivery.host = host),
        ));
      } finally {
        this.delivering.delete(job);
      }
      this.metrics.deliveryDuration.observe({ transport: kind }, (performance.now() - started) / 1000);
      if (reached || this.retryAsked.has(job))
        this.holds.delete(key); // an operator's retry lifts the suspension this attempt would set
      else {
        const reason = mine[0]!.lastResponse ?? 'unreachable';
        this.holds.set(key, { until: Date.now() + s.minRetryDelayMs, reason });
        this.log.warn('destination unreachable: its messages wait for the retry', { destination: shown, reason });
      }
    }
    if (open.deleted) return null; // deleted by an operator meanwhile
    entry.attempts++;
    const still = mine.filter((r) => r.state === 'pending');
    let next: number | null = null;
    if (still.length) {
      const attempts = still.reduce((n, r) => Math.max(n, r.attempts), 1);
      const backoff = Math.min(s.maxRetryDelayMs, s.minRetryDelayMs * 2 ** Math.max(0, attempts - 1));
      next = this.retryAsked.has(job) ? Date.now() : Date.now() + Math.round(backoff * (0.8 + Math.random() * 0.4));
      for (const r of still) r.retryAt = next;
      const h = this.holds.get(key);
      if (h && h.until > next) h.until = next;
    }
    const pending = entry.recipients.filter((r) => r.state === 'pending');
    if (pending.length) {
      entry.nextAttemptAt = pending.reduce((t, r) => Math.min(t, dueOf(r, entry)), Infinity);
      await this.persist(open, entry);
    }
    // else nothing is left to try: record() made every result durable, and settle() removes the
    // entry (or writes it again while a bounce cannot be stored): one state write fewer a message
    return next;
  }

  /**
   * Nothing is pending any more: bounce what failed, then remove the entry. Returns when to try
   * again when the bounce could not be made durable yet (the entry stays), else null.
   */
  private async settle(row: number, open: Open, entry: QueueEntry, ctx: DeliveryContext): Promise<number | null> {
    if (!(await this.report(open, entry, ctx))) {
      entry.nextAttemptAt = Date.now() + ctx.settings.minRetryDelayMs;
      await this.persist(open, entry);
      return entry.nextAttemptAt;
    }
    await this.writes.get(entry.id)?.catch(() => {});
    this.drop(row, open);
    await this.store.remove(entry.id);
    return null;
  }

  /**
   * The queued file, past the lines only Maildir copies carry, with the DKIM header fields in
   * front (streamed, never read whole); opened anew for every host tried.
   */
  private source(entry: QueueEntry, dkim = '', start = entry.bodyOffset ?? 0): MessageSource {
    const path = this.store.messagePath(entry.id);
    const file = () => createReadStream(path, { start, highWaterMark: 64 * 1024 });
    if (!dkim) return { open: file };
    const head = Buffer.from(dkim, 'latin1');
    return { open: () => prepend(head, file()) };
  }

  /**
   * The DKIM header fields this message is sent with: made before its first attempt (once, for
   * all its jobs), then the same on every retry. A message whose state has none yet (queued
   * before signing existed, or a crash before they were written) gets them now.
   */
  private dkimOf(open: Open, entry: QueueEntry, ctx: DeliveryContext, header: () => Promise<string>): Promise<string> {
    if (entry.dkim !== undefined) return Promise.resolve(entry.dkim);
    open.signing ??= this.signMessage(open, entry, ctx.signer, header).finally(() => (open.signing = undefined));
    return open.signing;
  }

  /**
   * Signs the queued bytes with every key of their From: domain (nothing for other domains) and
   * keeps the result in the entry's state, durably before anything is sent with it: a retry
   * after a crash sends the same bytes. A signature that cannot be made is counted and logged
   * once (by the signer) and the message goes without it; only reading the queued file failing
   * fails the attempt (the transport could not have sent it either).
   */
  private async signMessage(open: Open, entry: QueueEntry, signer: DkimSigner, header: () => Promise<string>): Promise<string> {
    const offset = entry.bodyOffset ?? 0;
    const domain = signer.domains.length ? fromDomainOf(await header()) : null;
    if (!signer.signsFor(domain)) {
      entry.dkim = ''; // kept with the attempt's results
      return '';
    }
    const stream = createReadStream(this.store.messagePath(entry.id), { start: offset, highWaterMark: 64 * 1024 });
    let dkim: string;
    try {
      dkim = await signer.sign(stream, domain!, { id: entry.id });
    } finally {
      stream.destroy();
    }
    entry.dkim = dkim;
    if (dkim) {
      try {
        await this.persist(open, entry);
      } catch (e) {
        delete entry.dkim; // not durable: nothing is sent with it, the next attempt signs again
        throw e;
      }
    }
    return dkim;
  }

  /** The entry's state from disk, shared by every job of it running now. */
  private acquire(id: string): Open {
    let w = this.window.get(id);
    if (!w) {
      w = { entry: this.store.read(id), refs: 0, deleted: false };
      this.window.set(id, w);
    }
    w.refs++;
    return w;
  }

  private release(id: string): void {
    const w = this.window.get(id);
    if (w && --w.refs <= 0) this.window.delete(id);
  }

  /**
   * Applies results and makes them durable before anything else happens: the one place an
   * attempt's outcome for a recipient (delivered, deferred, bounced, expired) is recorded.
   */
  private async record(open: Open, entry: QueueEntry, results: readonly RecipientResult[], ctx: DeliveryContext, kind: string, failure: 'bounced' | 'expired' = 'bounced'): Promise<void> {
    if (open.deleted) return;
    const now = Date.now();
    for (const res of results) {
      const r = entry.recipients.find((x) => x.address === res.address && x.state === 'pending');
      if (!r) continue;
      r.attempts++;
      r.lastResponse = res.response;
      r.updatedAt = now;
      if (res.outcome === 'delivered') r.state = 'delivered';
      if (res.outcome === 'failed') {
        r.state = 'failed';
        r.notified = false; // reported to the sender after this attempt (report())
      }
      r.remote = res.remote;
      this.outcome(entry, r, res.outcome === 'failed' ? failure : res.outcome, kind);
    }
    entry.lastError = results.find((x) => x.outcome !== 'delivered')?.response ?? entry.lastError;
    await this.persist(open, entry);
  }

  /**
   * What people and metrics see of a recipient's outcome: from record() for each attempt's
   * result, from remove() for a recipient still pending when an operator deletes its message.
   */
  private outcome(entry: QueueEntry, r: QueueRecipient, fate: Fate, transport: string): void {
    if (fate !== 'deleted') this.metrics.delivery.inc({ transport, result: fate === 'expired' ? 'bounced' : fate });
    const reply = r.lastResponse ?? undefined;
    this.ctx!().mailLog.recipient({
      id: entry.id,
      from: entry.sender,
      to: r.address,
      transport,
      relay: r.remote ?? undefined,
      delay: (Date.now() - entry.arrivedAt) / 1000,
      dsn: /\b[245]\.\d{1,3}\.\d{1,3}\b/.exec(reply ?? '')?.[0] ?? DEFAULT_DSN[fate],
      status: fate,
      reply: fate === 'deleted' ? 'deleted by an operator' : reply,
    });
  }

  /** Updates of one entry are written in order (its jobs and transports report concurrently). */
  private persist(open: Open, entry: QueueEntry): Promise<void> {
    const prev = this.writes.get(entry.id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => (open.deleted ? undefined : this.store.update(entry)));
    this.writes.set(entry.id, next);
    void next
      .finally(() => {
        if (this.writes.get(entry.id) === next) this.writes.delete(entry.id);
      })
      .catch(() => {});
    return next;
  }

  /**
   * Tells the sender about the failed recipients not reported yet (one DSN for them), one call
   * per message at a time. True when none is left unreported, false when the DSN could not be
   * stored yet (tried again after the next attempt, or when the message is done).
   */
  private report(open: Open, entry: QueueEntry, ctx: DeliveryContext): Promise<boolean> {
    const prev = this.reporting.get(entry.id) ?? Promise.resolve(true);
    const next = prev
      .catch(() => false)
      .then(async () => {
        const failed = entry.recipients.filter((r) => unreported(entry, r));
        if (!failed.length || open.deleted) return true;
        let sent: boolean;
        try {
          sent = await this.bounce(entry, failed, ctx);
        } catch (err) {
          this.log.error('could not store a bounce, will retry', { id: entry.id, error: err as Error });
          sent = false;
        }
        if (!sent) return false;
        for (const r of failed) r.notified = true;
        await this.persist(open, entry);
        return true;
      });
    this.reporting.set(entry.id, next);
    void next
      .finally(() => {
        if (this.reporting.get(entry.id) === next) this.reporting.delete(entry.id);
      })
      .catch(() => {});
    return next;
  }

  /** What of the message goes back in a DSN: all of it up to ORIGINAL_LIMIT, else its headers. */
  private async original(entry: QueueEntry): Promise<Original> {
    const offset = entry.bodyOffset ?? 0;
    const size = (await fs.stat(this.store.messagePath(entry.id))).size - offset;
    if (size > ORIGINAL_LIMIT) return { kind: 'headers', headers: await this.store.readHeader(entry.id, offset), size };
    const fh = await fs.open(this.store.messagePath(entry.id), 'r');
    try {
      const data = Buffer.allocUnsafe(size);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(data, got, size - got, offset + got);
        if (!bytesRead) break;
        got += bytesRead;
      }
      return { kind: 'message', data: data.subarray(0, got) };
    } finally {
      await fh.close();
    }
  }

  /** One DSN for these failed recipients. True when it is stored (or needs none), false to try again later. */
  private async bounce(entry: QueueEntry, failed: readonly QueueRecipient[], ctx: DeliveryContext): Promise<boolean> {
    if (entry.sender === '') {
      this.log.warn('undeliverable message from the null sender dropped', { id: entry.id, failed: failed.length });
      return true;
    }
    let original: Original;
    try {
      original = await this.original(entry);
    } catch {
      return true; // the message file is gone: nothing to return
    }
    const dsn = buildBounce({
      hostname: ctx.hostname,
      queueId: entry.id,
      sender: entry.sender,
      arrivedAt: entry.arrivedAt,
      failed: failed.map((r) => ({ address: r.address, diagnostic: r.lastResponse ?? 'failed', remote: r.remote ?? null })),
      original,
      stillPending: entry.recipients.filter((r) => r.state === 'pending').length,
    });
    const id = newQueueId();
    // signed for the keyed domain our host name lies under (DMARC's relaxed alignment with
    // MAILER-DAEMON@hostname), or not at all; a local sender's copy carries the signature in its
    // bytes, a remote sender's in its queue state like any message that leaves
    const aligned = ctx.signer.alignedDomain(ctx.hostname);
    const sign = (): Promise<string> => (aligned ? ctx.signer.sign(dsn, aligned, { id, bounceOf: entry.id }) : Promise.resolve(''));
    const received = receivedHeader({
      helo: ctx.hostname,
      clientAddress: '127.0.0.1',
      hostname: ctx.hostname,
      esmtp: true,
      tls: null,
      authenticated: false,
      id,
      recipients: [entry.sender],
      date: new Date(),
    });
    const { local, domain } = splitAddress(entry.sender);
    try {
      if (ctx.domains.has(domain)) {
        const owner = await ctx.accounts.findRecipient(local);
        if (owner.found) {
          const dkim = await sign();
          const message = dkim ? Buffer.concat([Buffer.from(dkim, 'latin1'), dsn]) : dsn;
          const stored = await this.intake.acceptBuffer({ id, sender: '', local: [{ user: owner.user, address: entry.sender }], remote: [], received, message });
          // written into the Maildir now; over LMTP it is queued, and counted when delivered
          if (stored.mailboxes.length) this.metrics.delivery.inc({ transport: 'local', result: 'delivered' });
        } else if (owner.unavailable) {
          return false;
        } else {
          this.log.warn('bounce dropped: the local sender does not exist', { id: entry.id });
        }
      } else {
        await this.intake.acceptBuffer({ id, sender: '', local: [], remote: [entry.sender], received, message: dsn, dkim: await sign() });
      }
    } catch (e) {
      this.log.error('could not store a bounce, will retry', { id: entry.id, error: e as Error });
      return false;
    }
    this.log.info('bounce sent', { id: entry.id, bounce: id, failed: failed.length, original: original.kind });
    return true;
  }

  /**
   * Answers the operators' requests. A folder that cannot be read is logged once (and once more
   * when it can be again); a request that cannot be read is logged and answered with why.
   */
  private async handleRequests(): Promise<void> {
    let taken: Taken[];
    try {
      taken = await takeRequests(this.store.dir);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const problem = `${err.code ?? 'error'}`;
      if (this.requestsProblem !== problem) {
        this.requestsProblem = problem;
        const dir = join(this.store.dir, 'requests');
        this.log.error(`cannot read operator requests in ${dir}: mailplane queue and unlock commands go unanswered until it is readable by uid ${process.getuid?.()}`, {
          error: err.message,
          code: err.code,
        });
      }
      return;
    }
    if (this.requestsProblem !== null) {
      this.requestsProblem = null;
      this.log.info('operator requests can be read again');
    }
    for (const p of this.stuck) if (!taken.some((t) => t.path === p)) this.stuck.delete(p);
    for (const t of taken) {
      if (this.stuck.has(t.path)) continue;
      let result: RequestResult;
      if ('problem' in t) {
        this.log.warn('operator request refused', { request: t.path, reason: t.problem });
        result = { ok: false, message: t.problem };
      } else {
        if (!this.loaded && t.req.op !== 'unlock' && t.req.op !== 'deliveries') continue; // queue requests (hand-off too) wait until every entry is known
        result = await this.apply(t.req).catch((e: Error) => ({ ok: false, message: e.message }));
      }
      await this.answer(t.path, result);
    }
  }

  /** Writes a request's result next to it (atomically), then removes the request. */
  private async answer(path: string, result: RequestResult): Promise<void> {
    const tmp = join(dirname(path), `.${basename(path)}.result`);
    try {
      await fs.writeFile(tmp, JSON.stringify(result));
      await fs.rename(tmp, `${path}.result`);
    } catch (e) {
      this.log.error('cannot answer an operator request', { request: path, error: (e as Error).message });
    }
    await fs.unlink(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return;
      this.stuck.add(path);
      this.log.error('cannot remove an operator request: it is not applied again', { request: path, error: e.message });
    });
  }

  private async apply(req: QueueRequest): Promise<RequestResult> {
    if (req.op === 'unlock') return this.ctx!().unlock(req.address);
    if (req.op === 'handoff') return this.ctx!().handoff?.() ?? { ok: false, message: 'this server cannot hand its queue off' };
    if (req.op === 'deliveries') {
      const deliveries = this.deliveries();
      return { ok: true, message: `${deliveries.length} deliver${deliveries.length === 1 ? 'y' : 'ies'} in progress`, deliveries };
    }
    if (req.op === 'retry') {
      const n = this.retry(req.id);
      if (req.id !== null && n === 0) return { ok: false, message: `no queued message ${req.id}` };
      const running = req.id !== null && this.deliveries().some((d) => d.id === req.id);
      return { ok: true, message: running ? `${req.id} is being delivered now: it will be attempted again as soon as that attempt ends` : `retrying ${n} message${n === 1 ? '' : 's'} now` };
    }
    return (await this.remove(req.id)) ? { ok: true, message: `deleted ${req.id}` } : { ok: false, message: `no queued message ${req.id}` };
  }
}

/** `body` with `head` in front, as one stream; destroying it destroys `body` too. */
function prepend(head: Buffer, body: Readable): Readable {
  const out = new PassThrough({ highWaterMark: 64 * 1024 });
  out.write(head);
  pipeline(body, out, () => {}); // an error of either ends both (the reader sees it)
  return out;
}
