// The control loop. One reconcile runs at a time; requests that arrive meanwhile collapse into
// one more run, which reads the file anew (level-triggered: the latest content wins).
// A bad file or a failed apply leaves the last good generation serving, untouched.
import { formatIssue } from '../config/issues.js';
import type { LoadResult } from '../config/load.js';
import type { Storage } from './storage.js';
import type { DeliveryContext } from '../outbound/queue.js';
import type { Transport } from '../outbound/transports.js';
import { EventLoopMonitor } from '../ops/event-loop.js';
import { OpsServer } from '../ops/http.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { diff, type Plan } from '../plan/plan.js';
import { summarize } from '../plan/format.js';
import { planView } from '../plan/view.js';
import type { Binding } from '../smtp/bindings.js';
import type { Listener } from '../smtp/listener.js';
import type { AuthLimiter, ClientConnections } from '../smtp/limits.js';
import { abort, contextFor, prepare, type Generation, type Prepared } from './transaction.js';
import { buildStatus, type LastAttempt } from './status.js';

export type ReloadOutcome = 'applied' | 'unchanged' | 'invalid' | 'rolled_back';

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
  readonly clients: ClientConnections;
}

export class StartupError extends Error {
  constructor(readonly result: ReloadResult) {
    super(result.errors.join('\n') || `start-up failed: ${result.outcome}`);
  }
}

export class Controller {
  applied: Generation | null = null;
  lastAttempt: LastAttempt | null = null;
  appliedAt: number | null = null;
  readonly pool = new Map<string, Binding>();
  readonly draining = new Set<Listener>();
  /** storages of an earlier dataDir: their queue keeps delivering until shutdown */
  private readonly oldStorages: Storage[] = [];
  private ops: OpsServer | null = null;
  private running: Promise<ReloadResult> | null = null;
  private queued: Promise<ReloadResult> | null = null;
  private nextNumber = 1;
  private stopping = false;

  /** the worst event-loop delays, for /status and metrics */
  readonly eventLoop: EventLoopMonitor;

  constructor(
    private readonly provider: ConfigProvider,
    private readonly d: ControllerDeps,
  ) {
    this.eventLoop = new EventLoopMonitor(d.metrics);
  }

  get configPath(): string {
    return this.provider.path;
  }

  get opsPort(): number | null {
    return this.ops?.boundPort ?? null;
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
    return !this.stopping && this.applied !== null && this.applied.storage.outbound.ready() && [...this.pool.values()].every((b) => b.server.listening);
  }

  status(): unknown {
    return buildStatus(this);
  }

  /** Stops accepting everywhere, lets sessions finish within graceMs, then closes the rest. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.pool.values()].map((b) => b.close()));
    this.pool.clear();
    const all = new Set<Listener>([...(this.applied?.listeners.values() ?? []), ...this.draining]);
    await Promise.all([...all].map((l) => l.drain(graceMs)));
    await this.ops?.close();
    const storages = [...this.oldStorages, ...(this.applied ? [this.applied.storage] : [])];
    await Promise.all(storages.map((s) => s.close()));
    await this.applied?.transport.close();
    await this.applied?.accounts.close();
    this.eventLoop.stop();
  }

  /** What queued mail is delivered with: always the serving generation's transport and settings. */
  deliveryContext(): DeliveryContext {
    const gen = this.applied!;
    return { transport: gen.transport, settings: gen.state.delivery, hostname: gen.state.hostname, domains: gen.policy.domains, accounts: gen.accounts };
  }

  private async runOnce(reason: string): Promise<ReloadResult> {
    const t0 = performance.now();
    const m = this.d.metrics;
    const loaded = await this.provider.load();
    const warnings = loaded.warnings.map(formatIssue);
    if (!loaded.state) {
      const errors = loaded.errors.map(formatIssue);
      return this.finish(reason, this.result('invalid', errors, warnings, null, t0));
    }
    const desired = loaded.state;
    const prev = this.applied;
    if (prev && prev.state.hash === desired.hash) return this.finish(reason, this.result('unchanged', [], warnings, null, t0));
    const plan = diff(prev ? planView(prev.state) : null, planView(desired));
    let prepared: Prepared;
    const number = this.nextNumber;
    try {
      prepared = await prepare(
        {
          log: this.d.log,
          sessionDeps: { metrics: m, log: this.d.log, authLimiter: this.d.authLimiter, clients: this.d.clients },
          pool: this.pool,
          makeOps: (host, port) => new OpsServer(host, port, { ready: () => this.ready(), status: () => this.status(), reload: () => this.httpReload(), registry: m.registry }),
          currentOps: () => this.ops,
          metrics: m,
        },
        prev,
        plan,
        desired,
        number,
      );
    } catch (e) {
      return this.finish(reason, this.result('rolled_back', [`apply failed, previous generation kept: ${(e as Error).message}`], warnings, plan, t0));
    }
    if (this.stopping) {
      await abort(prepared.created);
      return this.result('unchanged', [], warnings, plan, t0);
    }
    this.nextNumber++;
    this.commit(prepared);
    return this.finish(reason, this.result('applied', [], warnings, plan, t0));
  }

  /** Synchronous: from here on the new generation serves. */
  private commit(p: Prepared): void {
    const prev = this.applied;
    const { gen } = p;
    const m = this.d.metrics;
    for (const [name, l] of gen.listeners) {
      l.context = contextFor(gen, gen.state.smtp.listeners.find((s) => s.name === name)!);
      if (gen.tlsContext && l.spec.tls !== 'none') l.setTlsContext(gen.tlsContext);
      l.setIdleTimeout(gen.state.smtp.limits.idleTimeoutMs);
    }
    for (const b of p.created.bindings) this.pool.set(b.key, b);
    for (const [key, l] of p.targets) this.pool.get(key)!.target = l;
    for (const [key, b] of [...this.pool]) {
      if (p.targets.has(key)) continue;
      this.pool.delete(key);
      void b.close();
    }
    if (p.created.ops) {
      const old = this.ops;
      this.ops = p.created.ops;
      void old?.close();
    }
    this.applied = gen;
    this.appliedAt = Date.now();
    const grace = gen.state.smtp.drainGraceMs;
    for (const l of prev?.listeners.values() ?? []) {
      if (gen.listeners.get(l.name) !== l) this.retire(l, grace);
    }
    if (prev && prev.accounts !== gen.accounts) {
      // sessions that pinned the old backend may still use it until they end
      const old = prev.accounts;
      setTimeout(() => void old.close(), grace + gen.state.smtp.limits.idleTimeoutMs).unref();
    }
    for (const [name, l] of gen.listeners) {
      m.initListener(name);
      m.listenerUp.set({ listener: name }, 1);
      const tls = gen.state.smtp.tls;
      if (l.spec.tls !== 'none' && tls) m.tlsCertificateExpiry.set({ listener: name }, Math.floor(tls.material.notAfter / 1000));
      else m.tlsCertificateExpiry.remove({ listener: name });
    }
    m.setGeneration(gen.number, gen.state.hash);
    m.accountsSource = () => ({ backend: this.applied!.accounts.kind, up: this.applied!.accounts.health().up });
    gen.storage.intake.budget.limit = gen.state.storage.memoryBudget;
    if (!prev || prev.storage !== gen.storage) {
      if (prev) this.oldStorages.push(prev.storage);
      m.queueSource = () => gen.storage.stats();
      m.bodyMemorySource = () => gen.storage.intake.budget;
      void gen.storage.outbound.start(() => this.deliveryContext()).catch((e: Error) => this.d.log.error('cannot start the outbound queue', { error: e }));
    } else {
      gen.storage.outbound.reconfigure();
    }
    if (!prev || prev.transport !== gen.transport) {
      m.relaySource = () => (this.applied?.transport.kind === 'relay' ? this.applied.transport.health().up : null);
      if (gen.transport.verify) void gen.transport.verify();
      if (prev) this.retireTransport(prev.transport);
    }
  }

  /** Closes a replaced transport once no send uses it any more. */
  private retireTransport(t: Transport): void {
    const storages = () => [...this.oldStorages, ...(this.applied ? [this.applied.storage] : [])];
    const check = () => {
      if (storages().some((s) => s.outbound.usersOf(t) > 0)) setTimeout(check, 200).unref();
      else void t.close();
    };
    check();
  }

  private retire(l: Listener, graceMs: number): void {
    this.draining.add(l);
    void l.drain(graceMs).then(async () => {
      this.draining.delete(l);
      const stillConfigured = this.applied?.listeners.has(l.name) ?? false;
      if (!stillConfigured && ![...this.draining].some((o) => o.name === l.name)) await this.d.metrics.dropListener(l.name);
    });
  }

  private async httpReload(): Promise<{ httpStatus: number; body: unknown }> {
    const r = await this.reconcile('http');
    const httpStatus = r.outcome === 'invalid' ? 422 : r.outcome === 'rolled_back' ? 500 : 200;
    return { httpStatus, body: { outcome: r.outcome, generation: r.generation, hash: r.hash, errors: r.errors, warnings: r.warnings, plan: r.plan ? summarize(r.plan) : [], durationMs: r.durationMs } };
  }

  private result(outcome: ReloadOutcome, errors: string[], warnings: string[], plan: Plan | null, t0: number): ReloadResult {
    return {
      outcome,
      generation: this.applied?.number ?? null,
      hash: this.applied?.state.hash ?? null,
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
