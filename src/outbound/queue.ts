// The outbound queue at work: attempts due entries (up to `concurrency` at once) through the
// transport of the generation serving now, records every recipient's fate durably as soon as
// it is known, retries with exponential backoff and jitter, bounces what failed (one DSN per
// message, never to the null sender), and removes an entry only when nothing is pending.
import { promises as fs } from 'node:fs';
import type { AccountBackend } from '../accounts/backend.js';
import type { DeliveryState } from '../config/desired-state.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { splitAddress } from '../mail/addresses.js';
import { receivedHeader } from '../mail/received.js';
import { buildBounce, headersOf, receivedCount } from './bounce.js';
import type { Intake } from '../store/intake.js';
import { newQueueId, type QueueEntry } from '../store/queue-entry.js';
import type { QueueStore } from './queue-store.js';
import { takeRequests, type QueueRequest } from './requests.js';
import type { RecipientResult, Transport } from './transports.js';

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

const REQUEST_POLL_MS = 300;

export class OutboundQueue {
  private readonly entries = new Map<string, QueueEntry>();
  private readonly inFlight = new Set<string>();
  private readonly transportUse = new Map<Transport, number>();
  private readonly writes = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private requestTimer: NodeJS.Timeout | null = null;
  private ctx: (() => DeliveryContext) | null = null;
  private stopping = false;
  private idle: (() => void) | null = null;
  /** true once the entries on disk are loaded */
  loaded = false;

  constructor(
    private readonly store: QueueStore,
    private readonly intake: Intake,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Loads what is on disk and starts delivering with the context of the serving generation. */
  async start(ctx: () => DeliveryContext): Promise<void> {
    this.ctx = ctx;
    // Messages accepted since start-up may already be on disk; they reach delivery only when the
    // journal releases them (after their checkpoint), never twice.
    for (const e of await this.store.list()) if (!this.intake.isUnreleased(e.id)) this.entries.set(e.id, e);
    this.loaded = true;
    this.requestTimer = setInterval(() => void this.handleRequests(), REQUEST_POLL_MS);
    this.requestTimer.unref();
    this.kick();
  }

  /** A message just accepted for other domains. */
  enqueued(entry: QueueEntry): void {
    if (this.entries.has(entry.id)) return;
    this.entries.set(entry.id, entry);
    this.kick();
  }

  stats(): QueueStats {
    let active = 0;
    let deferred = 0;
    let oldest: number | null = null;
    for (const e of this.entries.values()) {
      if (e.attempts === 0 || this.inFlight.has(e.id)) active++;
      else deferred++;
      if (oldest === null || e.arrivedAt < oldest) oldest = e.arrivedAt;
    }
    return { active, deferred, oldestArrival: oldest };
  }

  /** Sends in flight on a transport (a retired transport is closed when this reaches 0). */
  usersOf(t: Transport): number {
    return this.transportUse.get(t) ?? 0;
  }

  retry(id: string | null): number {
    let n = 0;
    for (const e of this.entries.values()) {
      if (id !== null && e.id !== id) continue;
      e.nextAttemptAt = Date.now();
      n++;
    }
    this.kick();
    return n;
  }

  async remove(id: string): Promise<boolean> {
    if (!this.entries.has(id)) return false;
    this.entries.delete(id); // an attempt in flight finds it gone and drops its result
    await this.store.remove(id);
    return true;
  }

  /** Stops starting attempts; resolves when those in flight have finished. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.requestTimer) clearInterval(this.requestTimer);
    if (this.inFlight.size) await new Promise<void>((r) => (this.idle = r));
  }

  private kick(): void {
    if (this.stopping || !this.ctx) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const now = Date.now();
    const limit = this.ctx().settings.concurrency;
    const due = [...this.entries.values()].filter((e) => !this.inFlight.has(e.id) && e.nextAttemptAt <= now).sort((a, b) => a.nextAttemptAt - b.nextAttemptAt);
    for (const e of due) {
      if (this.inFlight.size >= limit) break;
      this.inFlight.add(e.id);
      void this.attempt(e).finally(() => {
        this.inFlight.delete(e.id);
        if (this.stopping && this.inFlight.size === 0) this.idle?.();
        this.kick();
      });
    }
    const next = Math.min(...[...this.entries.values()].filter((e) => !this.inFlight.has(e.id)).map((e) => e.nextAttemptAt));
    if (Number.isFinite(next) && this.inFlight.size < limit) {
      this.timer = setTimeout(() => this.kick(), Math.max(0, Math.min(next - Date.now(), 2_147_000_000)));
      this.timer.unref();
    }
  }

  private async attempt(entry: QueueEntry): Promise<void> {
    const ctx = this.ctx!();
    const t = ctx.transport;
    this.transportUse.set(t, (this.transportUse.get(t) ?? 0) + 1);
    try {
      await this.deliver(entry, ctx);
    } catch (e) {
      this.log.error('delivery attempt failed', { id: entry.id, error: e as Error });
      entry.nextAttemptAt = Date.now() + ctx.settings.minRetryDelayMs;
    } finally {
      this.transportUse.set(t, (this.transportUse.get(t) ?? 1) - 1);
    }
  }

  private async deliver(entry: QueueEntry, ctx: DeliveryContext): Promise<void> {
    const pending = entry.recipients.filter((r) => r.state === 'pending');
    const now = Date.now();
    if (pending.length) {
      const raw = await fs.readFile(this.store.messagePath(entry.id));
      if (now - entry.arrivedAt > ctx.settings.maxLifetimeMs) {
        await this.record(entry, pending.map((r) => ({ address: r.address, outcome: 'failed', response: `4.4.7 delivery time expired; last error: ${r.lastResponse ?? 'none'}`, remote: null })), ctx);
      } else if (receivedCount(headersOf(raw)) > ctx.settings.maxReceivedHeaders) {
        await this.record(entry, pending.map((r) => ({ address: r.address, outcome: 'failed', response: `5.4.6 mail loop: more than ${ctx.settings.maxReceivedHeaders} Received headers`, remote: null })), ctx);
      } else {
        const started = performance.now();
        await ctx.transport.send({ from: entry.sender, to: pending.map((r) => r.address) }, raw, (results) => this.record(entry, results, ctx));
        this.metrics.deliveryDuration.observe({ transport: ctx.transport.kind }, (performance.now() - started) / 1000);
      }
      if (!this.entries.has(entry.id)) return; // deleted by an operator meanwhile
      entry.attempts++;
      const backoff = Math.min(ctx.settings.maxRetryDelayMs, ctx.settings.minRetryDelayMs * 2 ** Math.max(0, entry.attempts - 1));
      entry.nextAttemptAt = Date.now() + Math.round(backoff * (0.8 + Math.random() * 0.4));
    }
    const stillPending = entry.recipients.some((r) => r.state === 'pending');
    if (!stillPending) {
      if (!(await this.bounceIfNeeded(entry, ctx))) {
        entry.nextAttemptAt = Date.now() + ctx.settings.minRetryDelayMs; // the bounce could not be made durable yet
        await this.persist(entry);
        return;
      }
      await this.writes.get(entry.id)?.catch(() => {});
      this.entries.delete(entry.id);
      await this.store.remove(entry.id);
      return;
    }
    await this.persist(entry);
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

  /** Updates of one entry are written in order (transports may report groups concurrently). */
  private persist(entry: QueueEntry): Promise<void> {
    const prev = this.writes.get(entry.id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => (this.entries.has(entry.id) ? this.store.update(entry) : undefined));
    this.writes.set(entry.id, next);
    void next.finally(() => {
      if (this.writes.get(entry.id) === next) this.writes.delete(entry.id);
    }).catch(() => {});
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
    let raw: Buffer;
    try {
      raw = await fs.readFile(this.store.messagePath(entry.id));
    } catch {
      return true;
    }
    const dsn = buildBounce({
      hostname: ctx.hostname,
      queueId: entry.id,
      sender: entry.sender,
      arrivedAt: entry.arrivedAt,
      failed: failed.map((r) => ({ address: r.address, diagnostic: r.lastResponse ?? 'failed', remote: r.remote ?? null })),
      originalHeaders: headersOf(raw),
    });
    const id = newQueueId();
    const received = receivedHeader({ helo: ctx.hostname, clientAddress: '127.0.0.1', hostname: ctx.hostname, esmtp: true, tls: null, authenticated: false, id, recipients: [entry.sender], date: new Date() });
    const { local, domain } = splitAddress(entry.sender);
    try {
      if (ctx.domains.has(domain)) {
        const owner = await ctx.accounts.findRecipient(local);
        if (owner.found) {
          await this.intake.accept({ id, sender: '', local: [{ user: owner.user, address: entry.sender }], remote: [], received, body: [dsn], size: dsn.length });
          this.metrics.delivery.inc({ transport: 'local', result: 'delivered' });
        } else if (owner.unavailable) {
          return false;
        } else {
          this.log.warn('bounce dropped: the local sender does not exist', { id: entry.id });
        }
      } else {
        await this.intake.accept({ id, sender: '', local: [], remote: [entry.sender], received, body: [dsn], size: dsn.length });
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
