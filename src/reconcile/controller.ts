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
import { abort, commit, planFor, prepare, type Generation, type Prepared, type Runtime, type TransactionDeps } from './transaction.js';
import { buildStatus, type LastAttempt, type ReloadOutcome } from './status.js';

export type { ReloadOutcome };

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
      sessionDeps: { metrics: d.metrics, log: d.log, authLimiter: d.authLimiter, sendRate: d.sendRate, clients: d.clients },
      makeOps: (host, port) =>
        new OpsServer(host, port, {
          ready: () => this.ready(),
          status: () => this.status(),
          reload: () => this.httpReload(),
          registry: d.metrics.registry,
          token: () => this.rt.applied?.state.observability.token ?? null,
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
    await this.applied?.accounts.close();
    this.eventLoop.stop();
  }

  /** What queued mail is delivered with: always the serving generation's transport and settings. */
  deliveryContext(): DeliveryContext {
    const gen = this.applied!;
    return {
      transport: gen.transport,
      settings: gen.state.delivery,
      hostname: gen.state.hostname,
      domains: gen.policy.domains,
      accounts: gen.accounts,
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
    const loaded = await this.provider.load();
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
      return this.finish(reason, this.result('rolled_back', [`apply failed, previous generation kept: ${(e as Error).message}`], warnings, planFor(this.rt, desired).plan, t0));
    }
    if (this.stopping) {
      await abort(prepared.created);
      return this.result('unchanged', [], warnings, prepared.plan, t0);
    }
    this.nextNumber++;
    commit(this.tx, this.rt, prepared);
    return this.finish(reason, this.result('applied', [], warnings, prepared.plan, t0));
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
      this.d.log.error(r.outcome === 'invalid' ? 'config invalid, keeping the previous generation' : 'apply failed, previous generation kept', { ...fields, errors: r.errors });
    } else if (r.outcome === 'applied') {
      this.d.log.info('config applied', fields);
    } else {
      this.d.log.debug('config unchanged', fields);
    }
    for (const w of r.warnings) if (r.outcome === 'applied') this.d.log.warn('config warning', { warning: w });
    return r;
  }
}
