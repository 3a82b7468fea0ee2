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
import type { SharedLimits } from '../cluster/shared-limits.js';
import type { RequestResult } from '../outbound/requests.js';
import { PeerTransport } from '../outbound/peer.js';
import { formatLmtpTarget } from '../config/check-mailboxes.js';
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
  /** the abuse limits (lockouts, sending rates, connections per client, harvest), shared across replicas with cluster.redis */
  readonly limits: SharedLimits;
  readonly mailLog: MailLog;
  /** inbound.spamFilter: configured with each applied generation */
  readonly spamFilter: SpamFilter;
  /** ends the process (as SIGTERM does) once a hand-off has emptied the queue */
  readonly leave?: (reason: string) => void;
}

/** A hand-off in progress (`mailplane queue handoff`), for /status. */
interface Leaving {
  readonly since: number;
  readonly peer: string;
  state: 'draining sessions' | 'waiting for the journal' | 'handing off' | 'done';
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
  /** set once this replica hands its queue off and leaves: nothing is applied or served any more */
  private leaving: Leaving | null = null;
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
    d.metrics.activeLockouts = () => d.limits.lockouts().length;
    this.tx = {
      log: d.log,
      metrics: d.metrics,
      sessionDeps: { metrics: d.metrics, log: d.log, limits: d.limits, mailLog: d.mailLog, spamFilter: d.spamFilter },
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
    if (this.stopping || this.leaving) return Promise.resolve(this.result('unchanged', [], [], null, 0));
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
    return !this.stopping && !this.leaving && this.applied !== null && this.applied.storage.outbound.ready() && [...this.rt.pool.values()].every((b) => b.server.listening);
  }

  status(): unknown {
    return buildStatus({
      configPath: this.configPath,
      ready: this.ready(),
      rt: this.rt,
      lastAttempt: this.lastAttempt,
      eventLoop: this.eventLoop,
      lockouts: this.d.limits.lockouts(),
      spamFilter: this.d.spamFilter.status(),
      cluster: this.clusterStatus(),
    });
  }

  /** Redis of the shared limits (never its password), the hand-off peer, a hand-off in progress. */
  private clusterStatus(): unknown {
    const peers = this.applied?.state.cluster.peers ?? null;
    const l = this.leaving;
    return {
      ...(this.d.limits.status() as object),
      peers: peers ? { handoff: formatLmtpTarget(peers.handoff), secret: peers.secret ? 'set' : null } : null,
      handoff: l ? { state: l.state, peer: l.peer, since: new Date(l.since).toISOString() } : null,
    };
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
    await this.d.limits.close();
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
      handoff: () => this.handoff(),
    };
  }

  /** `mailplane unlock`: lifts one address's AUTH lockout, or all of them (in Redis too: on every replica). */
  async unlock(address: string | null): Promise<RequestResult> {
    let n: number;
    try {
      n = await this.d.limits.unlock(address);
    } catch (e) {
      return { ok: false, message: (e as Error).message };
    }
    this.d.log.info('AUTH lockout lifted by an operator', { client: address ?? 'all', lifted: n });
    if (address === null) return { ok: true, message: `lifted ${n} lockout${n === 1 ? '' : 's'}` };
    return n ? { ok: true, message: `lifted the lockout of ${address}` } : { ok: false, message: `${address} is not locked out` };
  }

  /**
   * `mailplane queue handoff`: this replica leaves for good. Answered at once (to whom, how much);
   * then: stop accepting, let sessions finish (smtp.drainGrace), wait until the journal has handed
   * every accepted message to the queue, deliver the whole queue to cluster.peers.handoff one
   * message at a time (outbound/queue.ts handoff()), and exit once it is empty.
   */
  handoff(): RequestResult {
    const gen = this.applied;
    const peers = gen?.state.cluster.peers ?? null;
    if (!gen || !peers) return { ok: false, message: 'cluster.peers.handoff is not configured: there is no peer to hand the queue to' };
    const peer = formatLmtpTarget(peers.handoff);
    const queued = [...this.rt.oldStorages, gen.storage].reduce((n, s) => n + s.stats().active + s.stats().deferred, 0);
    if (this.leaving) return { ok: true, message: `already handing the queue to ${peer} (${this.leaving.state}); ${queued} message${queued === 1 ? '' : 's'} left` };
    this.leaving = { since: Date.now(), peer, state: 'draining sessions' };
    this.d.metrics.handoffActive.set(1);
    this.d.log.info('leaving: no new connections; once sessions have finished the queue goes to a peer, then the process exits', { peer, messages: queued });
    void this.leave(gen, peers).catch((e: Error) => this.d.log.error('hand-off failed: the queue stays in the data dir, delivered when a replica runs on it again', { error: e }));
    return { ok: true, message: `stopped accepting; handing ${queued} message${queued === 1 ? '' : 's'} to ${peer}, then exiting` };
  }

  private async leave(gen: Generation, peers: NonNullable<Generation['state']['cluster']['peers']>): Promise<void> {
    const l = this.leaving!;
    const rt = this.rt;
    await Promise.all([...rt.pool.values()].map((b) => b.close()));
    rt.pool.clear();
    await Promise.all([...new Set<Listener>([...gen.listeners.values(), ...rt.draining])].map((x) => x.drain(gen.state.smtp.drainGraceMs)));
    const storages = [...rt.oldStorages, gen.storage];
    // what the sessions accepted reaches the queue at the journal's next checkpoint
    l.state = 'waiting for the journal';
    await until(() => this.stopping || storages.every((s) => s.intake.unreleasedCount === 0));
    if (this.stopping) return;
    const tls = gen.state.smtp.tls;
    const peer = new PeerTransport({
      host: peers.handoff.host,
      port: peers.handoff.port,
      secret: peers.secret,
      hostname: gen.state.hostname,
      fingerprint256: tls?.material.fingerprint256 ?? null,
      connectTimeoutMs: gen.state.delivery.connectTimeoutMs,
    });
    l.state = 'handing off';
    for (const s of storages) s.outbound.handoff(peer);
    let lastLog = Date.now();
    // empty: nothing queued, nothing attempted, nothing (a bounce made meanwhile) waiting for the journal
    await until(() => {
      if (this.stopping) return true;
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        const left = storages.reduce((n, s) => n + s.stats().active + s.stats().deferred, 0);
        this.d.log.info('handing off', { peer: l.peer, left, lastError: peer.health().lastError ?? undefined });
      }
      return storages.every((s) => s.outbound.empty && s.intake.unreleasedCount === 0);
    });
    await peer.close();
    if (this.stopping) return;
    l.state = 'done';
    this.d.log.info('hand-off complete: the queue is empty, exiting', { peer: l.peer, seconds: Math.round((Date.now() - l.since) / 1000) });
    this.d.leave?.('handoff complete');
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
    this.d.limits.configure(desired.cluster.redis);
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

/** Resolves once cond() holds (looked at every 100 ms). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 100));
}
