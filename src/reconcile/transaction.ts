// Apply as a transaction. prepare() compares the component specs of what serves with the
// desired ones (plan/plan.ts: the same comparison the plan prints) and builds, without touching
// what serves now, every component whose spec changed — new sockets, storage, accounts, the
// transport — plus what is cheap enough to build on every apply (TLS context, policy);
// commit() then swaps references synchronously; abort() closes whatever prepare() opened.
import type { SecureContext } from 'node:tls';
import type { AccountBackend } from '../accounts/backend.js';
import { instrumented } from '../accounts/instrumented.js';
import { LdapAccounts } from '../accounts/ldap.js';
import { LocalAccounts } from '../accounts/local.js';
import type { DesiredState, ListenerSpec } from '../config/desired-state.js';
import { DkimSigner } from '../dkim/signer.js';
import type { DeliveryContext } from '../outbound/queue.js';
import { LmtpTransport } from '../outbound/lmtp.js';
import { MxTransport, RelayTransport, type Transport } from '../outbound/transports.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import type { OpsServer } from '../ops/http.js';
import { changes, diff, specView, type Changes, type Plan, type SpecView } from '../plan/plan.js';
import { specsOf, type AccountsSpec, type MailboxesSpec, type TransportSpec } from '../plan/specs.js';
import { Binding, bindingKey } from '../smtp/bindings.js';
import { Listener, type SharedSessionDeps } from '../smtp/listener.js';
import { buildPolicy, type SessionPolicy } from '../smtp/policy.js';
import type { ListenerContext } from '../smtp/session.js';
import { secureContextOf } from '../tls/material.js';
import { applyPasswdFile, type PasswdFileState } from './dovecot.js';
import { Storage } from './storage.js';

export interface Generation {
  readonly number: number;
  readonly state: DesiredState;
  /** its specs as compared (secrets as per-process digests) */
  readonly view: SpecView;
  readonly policy: SessionPolicy;
  readonly accounts: AccountBackend;
  readonly storage: Storage;
  /** how queued mail leaves: the relay, or direct to MX */
  readonly transport: Transport;
  /** local mail queued for LMTP goes here (mailboxes.lmtp); null: none configured */
  readonly lmtp: Transport | null;
  /** Dovecot's passwd-file as this generation left it (mailboxes.dovecot.passwdFile); null: none (set last in prepare) */
  passwd: PasswdFileState | null;
  readonly tlsContext: SecureContext | null;
  /** DKIM signing of outbound mail: the same instance until the signing spec changes */
  readonly signer: DkimSigner;
  /** listener name → the instance serving it */
  readonly listeners: ReadonlyMap<string, Listener>;
}

/** What serves now: owned by the controller, changed only by commit(). */
export interface Runtime {
  applied: Generation | null;
  appliedAt: number | null;
  /** open sockets by binding key, shared across generations */
  readonly pool: Map<string, Binding>;
  readonly draining: Set<Listener>;
  ops: OpsServer | null;
  /** storages of an earlier dataDir: their queue keeps delivering until shutdown */
  readonly oldStorages: Storage[];
}

export interface Prepared {
  readonly gen: Generation;
  readonly plan: Plan;
  readonly changes: Changes;
  /** binding key → the listener it hands new connections to */
  readonly targets: ReadonlyMap<string, Listener>;
  readonly created: Created;
}

export interface Created {
  bindings: Binding[];
  listeners: Listener[];
  accounts: AccountBackend | null;
  ops: OpsServer | null;
  storage: Storage | null;
  transport: Transport | null;
  lmtp: Transport | null;
}

export interface TransactionDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly sessionDeps: SharedSessionDeps;
  readonly makeOps: (host: string, port: number) => OpsServer;
  /** what queued mail is delivered with: the serving generation's */
  readonly deliveryContext: () => DeliveryContext;
}

export function contextFor(gen: Generation, spec: ListenerSpec): ListenerContext {
  const l = gen.state.smtp.limits;
  return {
    policy: gen.policy,
    spec,
    intake: gen.storage.intake,
    maxConnections: l.maxConnections,
    maxConnectionsPerClient: l.maxConnectionsPerClient,
  };
}

/** The plan from what serves to `desired`, and the components it rebuilds. */
export function planFor(rt: Runtime, desired: DesiredState): { view: SpecView; plan: Plan; changes: Changes } {
  const view = specView(desired, 'digest');
  const before = rt.applied?.view ?? null;
  return { view, plan: diff(before, view), changes: changes(before, view) };
}

export async function prepare(d: TransactionDeps, rt: Runtime, desired: DesiredState, number: number): Promise<Prepared> {
  const created: Created = { bindings: [], listeners: [], accounts: null, ops: null, storage: null, transport: null, lmtp: null };
  const prev = rt.applied;
  const { view, plan, changes: changed } = planFor(rt, desired);
  const rebuild = (c: Parameters<typeof changed.components.has>[0]) => !prev || changed.components.has(c);
  try {
    const specs = specsOf(desired);
    // cheap: built anew on every apply, so they can never be stale
    const tlsContext = specs.tls ? secureContextOf(specs.tls) : null;
    const accounts = rebuild('accounts') ? (created.accounts = instrumented(createAccounts(specs.accounts), d.metrics)) : prev!.accounts;
    const storage =
      prev && prev.storage.dataDir === specs.storage.dataDir
        ? prev.storage
        : (created.storage = await Storage.open(specs.storage.dataDir, specs.storage.memoryBudget, d.log, d.metrics, specs.storage));
    const transport = rebuild('transport') ? (created.transport = createTransport(specs.transport, d.metrics)) : prev!.transport;
    const lmtp = rebuild('mailboxes') ? (created.lmtp = createLmtp(specs.mailboxes)) : prev!.lmtp;
    const policy = buildPolicy(specs.policy, number, accounts);
    const signer = rebuild('signing') ? new DkimSigner(specs.signing, { metrics: d.metrics, log: d.log }) : prev!.signer;
    const gen: Generation = { number, state: desired, view, policy, accounts, storage, transport, lmtp, passwd: null, tlsContext, signer, listeners: new Map() };

    const listeners = gen.listeners as Map<string, Listener>;
    const targets = new Map<string, Listener>();
    for (const spec of desired.smtp.enabled ? desired.smtp.listeners : []) {
      const old = prev?.listeners.get(spec.name);
      let l: Listener;
      if (old && !changed.sockets.has(spec.name)) {
        l = old;
      } else {
        const material = spec.tls !== 'none' && specs.tls && tlsContext ? { cert: specs.tls.certPem, key: specs.tls.keyPem.reveal(), context: tlsContext } : null;
        l = new Listener(spec, contextFor(gen, spec), d.sessionDeps, material, desired.smtp.limits.idleTimeoutMs, d.log);
        created.listeners.push(l);
      }
      listeners.set(spec.name, l);
      const key = bindingKey(spec.address, spec.port);
      if (!rt.pool.has(key) && !created.bindings.some((b) => b.key === key)) {
        const b = new Binding(spec.address, spec.port);
        created.bindings.push(b);
        await b.listen().catch((e: NodeJS.ErrnoException) => {
          throw new Error(
            `listener ${spec.name}: cannot bind ${spec.address ?? '*'}:${spec.port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : e.message}`,
          );
        });
      }
      targets.set(key, l);
    }

    if (!rt.ops || rebuild('ops')) {
      const { host, port } = specs.ops;
      const next = d.makeOps(host, port);
      created.ops = next;
      await next.listen().catch((e: NodeJS.ErrnoException) => {
        throw new Error(`observability.listen: cannot bind ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`);
      });
    }
    // last, once nothing else can fail: Dovecot's accounts follow this generation (a write that
    // fails aborts the apply, so mailplane and Dovecot never disagree about who may log in)
    gen.passwd = specs.dovecot ? await applyPasswdFile(specs.dovecot, d.log) : null;
    return { gen, plan, changes: changed, targets, created };
  } catch (e) {
    await abort(created);
    throw e;
  }
}

/** Synchronous: from here on the new generation serves. */
export function commit(d: TransactionDeps, rt: Runtime, p: Prepared): void {
  const prev = rt.applied;
  const { gen } = p;
  const m = d.metrics;
  for (const [name, l] of gen.listeners) {
    l.context = contextFor(
      gen,
      gen.state.smtp.listeners.find((s) => s.name === name)!,
    );
    if (gen.tlsContext && l.spec.tls !== 'none') l.setTlsContext(gen.tlsContext);
    l.setIdleTimeout(gen.state.smtp.limits.idleTimeoutMs);
  }
  for (const b of p.created.bindings) rt.pool.set(b.key, b);
  for (const [key, l] of p.targets) rt.pool.get(key)!.target = l;
  for (const [key, b] of [...rt.pool]) {
    if (p.targets.has(key)) continue;
    rt.pool.delete(key);
    void b.close();
  }
  if (p.created.ops) {
    const old = rt.ops;
    rt.ops = p.created.ops;
    void old?.close();
  }
  rt.applied = gen;
  rt.appliedAt = Date.now();
  const grace = gen.state.smtp.drainGraceMs;
  for (const l of prev?.listeners.values() ?? []) {
    if (gen.listeners.get(l.name) !== l) retire(d, rt, l, grace);
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
  m.setGeneration(gen.number, gen.state.publicHash);
  m.accountsSource = () => {
    const h = rt.applied!.accounts.health();
    return { backend: rt.applied!.accounts.kind, up: h.up, failures: h.failures ?? 0 };
  };
  m.dataDirSource = () => gen.state.storage.dataDir;
  gen.storage.intake.budget.limit = gen.state.storage.memoryBudget;
  gen.storage.setMailbox(gen.state.storage);
  if (!prev || prev.storage !== gen.storage) {
    if (prev) rt.oldStorages.push(prev.storage);
    m.queueSource = () => gen.storage.stats();
    m.bodyMemorySource = () => gen.storage.intake.budget;
    m.localDeliverySource = () => gen.storage.journal.unwritten();
    void gen.storage.outbound.start(d.deliveryContext).catch((e: Error) => d.log.error('cannot start the outbound queue', { error: e }));
  } else {
    gen.storage.outbound.reconfigure();
  }
  gen.storage.intake.localStore = gen.state.mailboxes.store;
  m.lmtpSource = () => rt.applied?.lmtp?.health().up ?? null;
  if (prev && prev.lmtp && prev.lmtp !== gen.lmtp) retireTransport(rt, prev.lmtp);
  if (!prev || prev.transport !== gen.transport) {
    m.relaySource = () => (rt.applied?.transport.kind === 'relay' ? rt.applied.transport.health().up : null);
    m.relayFailuresSource = () => (rt.applied?.transport.kind === 'relay' ? (rt.applied.transport.health().failures ?? 0) : null);
    if (gen.transport.verify) void gen.transport.verify();
    if (prev) retireTransport(rt, prev.transport);
  }
}

/** Closes what prepare() opened; nothing that serves traffic is touched. */
export async function abort(c: Created): Promise<void> {
  await Promise.all(c.bindings.map((b) => b.close()));
  await c.ops?.close();
  await c.accounts?.close();
  await c.transport?.close();
  await c.lmtp?.close();
  await c.storage?.close();
}

/** Closes a replaced transport once no send uses it any more. */
function retireTransport(rt: Runtime, t: Transport): void {
  const storages = () => [...rt.oldStorages, ...(rt.applied ? [rt.applied.storage] : [])];
  const check = () => {
    if (storages().some((s) => s.outbound.usersOf(t) > 0)) setTimeout(check, 200).unref();
    else void t.close();
  };
  check();
}

/** A listener that no longer serves: it drains, then its series go unless its name still serves. */
function retire(d: TransactionDeps, rt: Runtime, l: Listener, graceMs: number): void {
  rt.draining.add(l);
  void l.drain(graceMs).then(async () => {
    rt.draining.delete(l);
    const stillConfigured = rt.applied?.listeners.has(l.name) ?? false;
    if (!stillConfigured && ![...rt.draining].some((o) => o.name === l.name)) await d.metrics.dropListener(l.name);
  });
}

function createTransport(spec: TransportSpec, metrics: Metrics): Transport {
  return spec.relay.enabled ? new RelayTransport(spec.relay, spec.connect, spec.hostname) : new MxTransport(spec.connect, spec.hostname, (result) => metrics.mtaSts.inc({ result }));
}

function createLmtp(spec: MailboxesSpec): Transport | null {
  return spec.lmtp ? new LmtpTransport(spec) : null;
}

function createAccounts(spec: AccountsSpec): AccountBackend {
  return spec.type === 'local' ? new LocalAccounts(spec.users) : new LdapAccounts(spec.ldap, spec.domains);
}
