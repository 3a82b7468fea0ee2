// The control loop. One reconcile runs at a time; requests that arrive meanwhile collapse into
// one more run, which reads the file anew (level-triggered: the latest content wins).
// A bad file or a failed apply leaves the last good generation serving, untouched.
import { formatIssue } from '../config/issues.js';
import type { LoadResult } from '../config/load.js';
import type { DeliveryContext } from '../outbound/queue.js';
import { EventLoopMonitor } from '../ops/event-loop.js';
import { OpsServer } from '../ops/http.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import type { Plan } from '../plan/plan.js';
import { summarize } from '../plan/format.js';
import type { Listener } from '../smtp/listener.js';
import type { AuthLimiter, ClientConnections } from '../smtp/limits.js';
import type { SendRateLimiter } from '../smtp/send-rate.js';
import type { SpamFilter } from '../filter/spam-filter.js';
import { mtaStsPolicy } from '../dns/mta-sts.js';
import type { MailLog } from '../ops/mail-log.js';
import { abort, commit, planFor, prepare, type Generation, type Prepared, type Runtime, type TransactionDeps } from './transaction.js';
import { buildStatus, type LastAttempt, type ReloadOutcome } from './status.js';
import { PERIODIC } from './watch.js';

export type { ReloadOutcome };

/** how long a load that may be a write in progress is looked at again before it counts as invalid */
const SETTLE_MS = 1000;
const SETTLE_POLL_MS = 100;

export interface ReloadResult {
  readonly outcome: ReloadOutcome;
  readonly generation: number | null;
  readonly hash: string | null;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  readonly plan: Plan | null;
  readonly durationMs: number;
}

export interface ConfigProvider {
  /** what /status shows as the config path */
  readonly path: string;
  load(): LoadResult | Promise<LoadResult>;
}

export interface ControllerDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly authLimiter: AuthLimiter;
  readonly sendRate: SendRateLimiter;
  readonly clients: ClientConnections;
  readonly mailLog: MailLog;
  /** inbound.spamFilter: configured with each applied generation */
  readonly spamFilter: SpamFilter;
}

export class StartupError extends Error {
  constructor(readonly result: ReloadResult) {
    super(result.errors.join('\n') || `start-up failed: ${result.outcome}`);
  }
}

export class Controller {
  /** what serves now (transaction.commit changes it) */
  readonly rt: Runtime = { applied: null, appliedAt: null, pool: new Map(), draining: new Set(), ops: null, oldStorages: [] };
  lastAttempt: LastAttempt | null = null;
  private running: Promise<ReloadResult> | null = null;
  private queued: Promise<ReloadResult> | null = null;
  private nextNumber = 1;
  private stopping = false;
  /** what the latest load read (its files are watched, its warnings logged) */
  private lastLoaded: LoadResult | null = null;
  /** when the reloads started failing (null while they succeed) */
  private failingSince: number | null = null;
  /** certificates whose expiry warning was logged: once per certificate, not on every reload */
  private readonly expiryWarned = new Set<string>();
  /** the worst event-loop delays, for /status and metrics */
  readonly eventLoop: EventLoopMonitor;
  private readonly tx: TransactionDeps;

  constructor(
    private readonly provider: ConfigProvider,
    private readonly d: ControllerDeps,
  ) {
    this.eventLoop = new EventLoopMonitor(d.metrics);
    d.metrics.activeLockouts = () => d.authLimiter.active().length;
    this.tx = {
      log: d.log,
      metrics: d.metrics,
      sessionDeps: { metrics: d.metrics, log: d.log, authLimiter: d.authLimiter, sendRate: d.sendRate, clients: d.clients, mailLog: d.mailLog, spamFilter: d.spamFilter },
      makeOps: (host, port) =>
        new OpsServer(host, port, {
          ready: () => this.ready(),
          status: () => this.status(),
          reload: () => this.httpReload(),
          registry: d.metrics.registry,
          token: () => this.rt.applied?.state.observability.token ?? null,
          mtaSts: () => {
            const s = this.rt.applied?.state;
            return s ? { text: mtaStsPolicy(s).text, domains: new Set(s.domains) } : null;
          },
          log: d.log,
        }),
      deliveryContext: () => this.deliveryContext(),
    };
  }

  get applied(): Generation | null {
    return this.rt.applied;
  }

  get configPath(): string {
    return this.provider.path;
  }

  get opsPort(): number | null {
    return this.rt.ops?.boundPort ?? null;
  }

  /** Start-up: without a last good generation, an invalid file or a failed bind is fatal. */
  async start(): Promise<ReloadResult> {
    const r = await this.reconcile('startup');
    if (r.outcome !== 'applied') throw new StartupError(r);
    this.eventLoop.reset(); // what counts is the loop while serving, not the start-up before it
    return r;
  }

  reconcile(reason: string): Promise<ReloadResult> {
    if (this.stopping) return Promise.resolve(this.result('unchanged', [], [], null, 0));
    if (!this.running) {
      this.running = this.runOnce(reason).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.queued ??= this.running.then(() => {
      this.queued = null;
      return this.reconcile(reason);
    });
    return this.queued;
  }

  ready(): boolean {
    return !this.stopping && this.applied !== null && this.applied.storage.outbound.ready() && [...this.rt.pool.values()].every((b) => b.server.listening);
  }

  status(): unknown {
    return buildStatus({
      configPath: this.configPath,
      ready: this.ready(),
      rt: this.rt,
      lastAttempt: this.lastAttempt,
      eventLoop: this.eventLoop,
      lockouts: this.d.authLimiter.active(),
      spamFilter: this.d.spamFilter.status(),
    });
  }

  /** Stops accepting everywhere, lets sessions finish within graceMs, then closes the rest. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    const rt = this.rt;
    await Promise.all([...rt.pool.values()].map((b) => b.close()));
    rt.pool.clear();
    const all = new Set<Listener>([...(rt.applied?.listeners.values() ?? []), ...rt.draining]);
    await Promise.all([...all].map((l) => l.drain(graceMs)));
    await rt.ops?.close();
    const storages = [...rt.oldStorages, ...(rt.applied ? [rt.applied.storage] : [])];
    await Promise.all(storages.map((s) => s.close()));
    await this.applied?.transport.close();
    await this.applied?.lmtp?.close();
    await this.applied?.accounts.close();
    this.d.spamFilter.close();
    this.eventLoop.stop();
  }

  /** What queued mail is delivered with: always the serving generation's transport and settings. */
  deliveryContext(): DeliveryContext {
    const gen = this.applied!;
    return {
      transport: gen.transport,
      lmtp: gen.lmtp,
      settings: gen.state.delivery,
      hostname: gen.state.hostname,
      domains: gen.policy.domains,
      accounts: gen.accounts,
      signer: gen.signer,
      mailLog: this.d.mailLog,
      unlock: (address) => this.unlock(address),
    };
  }

  /** `mailplane unlock`: lifts one address's AUTH lockout, or all of them. */
  unlock(address: string | null): { ok: boolean; message: string } {
    const n = this.d.authLimiter.unlock(address);
    this.d.log.info('AUTH lockout lifted by an operator', { client: address ?? 'all', lifted: n });
    if (address === null) return { ok: true, message: `lifted ${n} lockout${n === 1 ? '' : 's'}` };
    return n ? { ok: true, message: `lifted the lockout of ${address}` } : { ok: false, message: `${address} is not locked out` };
  }

  private async runOnce(reason: string): Promise<ReloadResult> {
    const t0 = performance.now();
    const loaded = await this.load(reason);
    const warnings = loaded.warnings.map(formatIssue);
    if (!loaded.state) {
      const errors = loaded.errors.map(formatIssue);
      return this.finish(reason, this.result('invalid', errors, warnings, null, t0));
    }
    const desired = loaded.state;
    if (this.applied && this.applied.state.hash === desired.hash) return this.finish(reason, this.result('unchanged', [], warnings, null, t0));
    let prepared: Prepared;
    try {
      prepared = await prepare(this.tx, this.rt, desired, this.nextNumber);
    } catch (e) {
      return this.finish(
        reason,
        this.result('rolled_back', [`apply failed${this.applied ? ', previous generation kept' : ''}: ${(e as Error).message}`], warnings, planFor(this.rt, desired).plan, t0),
      );
    }
    if (this.stopping) {
      await abort(prepared.created);
      return this.result('unchanged', [], warnings, prepared.plan, t0);
    }
    this.nextNumber++;
    this.d.mailLog.configure(desired.observability.logAddresses, desired.storage.dataDir);
    this.d.spamFilter.configure(desired.inbound.spamFilter);
    commit(this.tx, this.rt, prepared);
    return this.finish(reason, this.result('applied', [], warnings, prepared.plan, t0));
  }

  /**
   * Loads the config. A load that fails only the way a write in progress does (a file gone for
   * a moment, a certificate whose new key is not written yet) is looked at again for up to
   * SETTLE_MS before it counts; a real mismatch is still invalid after that. Not at start-up.
   */
  private async load(reason: string): Promise<LoadResult> {
    let loaded = await this.provider.load();
    const until = performance.now() + SETTLE_MS;
    while (!loaded.state && loaded.settle && this.applied && !this.stopping && performance.now() < until) {
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
      loaded = await this.provider.load();
    }
    if (!loaded.state && loaded.settle && this.applied) this.d.log.debug('config still invalid after settling', { reason, settleMs: SETTLE_MS });
    this.lastLoaded = loaded;
    return loaded;
  }

  /** The files to watch: those of the serving generation and those the latest load asked for (read or not). */
  watchList(): { files: string[]; unread: string[] } {
    const files = new Set([...(this.applied?.state.watchedFiles ?? []), ...(this.lastLoaded?.files ?? [])]);
    return { files: [...files], unread: [...(this.lastLoaded?.unread ?? [])] };
  }

  private async httpReload(): Promise<{ httpStatus: number; body: unknown }> {
    const r = await this.reconcile('http');
    const httpStatus = r.outcome === 'invalid' ? 422 : r.outcome === 'rolled_back' ? 500 : 200;
    return {
      httpStatus,
      body: { outcome: r.outcome, generation: r.generation, hash: r.hash, errors: r.errors, warnings: r.warnings, plan: r.plan ? summarize(r.plan) : [], durationMs: r.durationMs },
    };
  }

  private result(outcome: ReloadOutcome, errors: string[], warnings: string[], plan: Plan | null, t0: number): ReloadResult {
    return {
      outcome,
      generation: this.applied?.number ?? null,
      hash: this.applied?.state.publicHash ?? null,
      errors,
      warnings,
      plan,
      durationMs: Math.round((performance.now() - t0) * 10) / 10,
    };
  }

  private finish(reason: string, r: ReloadResult): ReloadResult {
    const m = this.d.metrics;
    const ok = r.outcome === 'applied' || r.outcome === 'unchanged';
    m.configReloads.inc({ outcome: r.outcome });
    m.configLastReloadSuccessful.set(ok ? 1 : 0);
    if (ok) m.configLastReloadSuccessTimestamp.set(Date.now() / 1000);
    m.reconcileDuration.observe(r.durationMs / 1000);
    this.lastAttempt = { time: Date.now(), reason, outcome: r.outcome, errors: r.errors, warnings: r.warnings };
    const fields = { reason, outcome: r.outcome, generation: r.generation, durationMs: r.durationMs, plan: r.plan ? summarize(r.plan) : undefined };
    if (r.outcome === 'invalid' || r.outcome === 'rolled_back') {
      const kept = r.generation !== null;
      const msg = r.outcome === 'invalid' ? `config invalid${kept ? ', keeping the previous generation' : ''}` : `apply failed${kept ? ', previous generation kept' : ''}`;
      this.d.log.error(msg, { ...fields, errors: r.errors });
      this.failingSince ??= Date.now();
    } else {
      if (r.outcome === 'applied') this.d.log.info('config applied', fields);
      // asked for (SIGHUP, POST /-/reload) or caused by a file event: say so; the periodic check stays quiet
      else if (reason === PERIODIC) this.d.log.debug('config unchanged', fields);
      else this.d.log.info('config unchanged', fields);
      if (this.failingSince !== null) {
        this.d.log.info('config recovered: the file is good again', { reason, outcome: r.outcome, failingSince: new Date(this.failingSince).toISOString() });
        this.failingSince = null;
      }
    }
    this.logWarnings(r);
    return r;
  }

  /** Warnings of an applied config; a certificate's expiry warning once per certificate, whatever the outcome. */
  private logWarnings(r: ReloadResult): void {
    const loaded = this.lastLoaded;
    if (!loaded) return;
    const cert = loaded.state?.smtp.tls?.material.fingerprint256 ?? null;
    for (const w of loaded.warnings) {
      if (w.code === 'MP_TLS_EXPIRING') {
        if (cert === null || this.expiryWarned.has(cert)) continue;
        this.expiryWarned.add(cert);
      } else if (r.outcome !== 'applied') continue;
      this.d.log.warn('config warning', { warning: formatIssue(w) });
    }
  }
}
