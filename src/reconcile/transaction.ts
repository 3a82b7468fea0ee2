// Apply as a transaction. prepare() does everything that can fail — build the TLS context,
// open the storage, bind new sockets, create accounts — without touching what serves now;
// commit() then swaps references synchronously; abort() closes whatever prepare() opened.
import type { SecureContext } from 'node:tls';
import type { AccountBackend } from '../accounts/backend.js';
import { instrumented } from '../accounts/instrumented.js';
import { LdapAccounts } from '../accounts/ldap.js';
import { LocalAccounts } from '../accounts/local.js';
import type { DesiredState, ListenerSpec } from '../config/desired-state.js';
import { Storage } from './storage.js';
import { MxTransport, RelayTransport, type Transport } from '../outbound/transports.js';
import type { Metrics } from '../ops/metrics.js';
import type { OpsServer } from '../ops/http.js';
import type { Plan } from '../plan/plan.js';
import { Binding, bindingKey } from '../smtp/bindings.js';
import { Listener, type SharedSessionDeps } from '../smtp/listener.js';
import { buildPolicy, type SessionPolicy } from '../smtp/policy.js';
import type { ListenerContext } from '../smtp/session.js';
import { secureContextOf } from '../tls/material.js';
import type { Logger } from '../ops/logger.js';

export interface Generation {
  readonly number: number;
  readonly state: DesiredState;
  readonly policy: SessionPolicy;
  readonly accounts: AccountBackend;
  readonly storage: Storage;
  /** how queued mail leaves: the relay, or direct to MX */
  readonly transport: Transport;
  readonly tlsContext: SecureContext | null;
  /** listener name → the instance serving it */
  readonly listeners: ReadonlyMap<string, Listener>;
}

export interface Prepared {
  readonly gen: Generation;
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
}

export interface TransactionDeps {
  readonly log: Logger;
  readonly sessionDeps: SharedSessionDeps;
  /** open sockets by binding key, shared across generations */
  readonly pool: Map<string, Binding>;
  readonly makeOps: (host: string, port: number) => OpsServer;
  readonly currentOps: () => OpsServer | null;
  readonly metrics: Metrics;
}

export function activeListeners(s: DesiredState): readonly ListenerSpec[] {
  return s.smtp.enabled ? s.smtp.listeners : [];
}

function sameSocket(a: ListenerSpec, b: ListenerSpec): boolean {
  return a.port === b.port && a.address === b.address && a.tls === b.tls && a.proxyProtocol === b.proxyProtocol;
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

export async function prepare(d: TransactionDeps, prev: Generation | null, plan: Plan, desired: DesiredState, number: number): Promise<Prepared> {
  const created: Created = { bindings: [], listeners: [], accounts: null, ops: null, storage: null, transport: null };
  try {
    const tls = desired.smtp.tls;
    const sameCert = prev && prev.state.smtp.tls?.material.fingerprint256 === tls?.material.fingerprint256;
    const tlsContext = !tls ? null : sameCert && prev.tlsContext ? prev.tlsContext : secureContextOf(tls.material);

    const accountsChanged = !prev || plan.actions.some((a) => a.kind === 'accounts.update');
    const accounts = accountsChanged ? (created.accounts = instrumented(createAccounts(desired), d.metrics)) : prev.accounts;
    const storage =
      prev && prev.storage.dataDir === desired.storage.dataDir ? prev.storage : (created.storage = await Storage.open(desired.storage.dataDir, desired.storage.memoryBudget, d.log, d.metrics));
    const transportChanged = !prev || plan.actions.some((a) => a.kind === 'relay.update' || a.kind === 'delivery.update') || prev.state.hostname !== desired.hostname;
    const transport = transportChanged ? (created.transport = createTransport(desired)) : prev.transport;
    const policy = buildPolicy(desired, number, accounts);
    const gen: Generation = { number, state: desired, policy, accounts, storage, transport, tlsContext, listeners: new Map() };

    const listeners = gen.listeners as Map<string, Listener>;
    const targets = new Map<string, Listener>();
    for (const spec of activeListeners(desired)) {
      const old = prev?.listeners.get(spec.name);
      let l: Listener;
      if (old && sameSocket(old.spec, spec)) {
        l = old;
      } else {
        const material = spec.tls !== 'none' && tls && tlsContext ? { cert: tls.material.certPem, key: tls.material.keyPem.reveal(), context: tlsContext } : null;
        l = new Listener(spec, contextFor(gen, spec), d.sessionDeps, material, desired.smtp.limits.idleTimeoutMs, d.log);
        created.listeners.push(l);
      }
      listeners.set(spec.name, l);
      const key = bindingKey(spec.address, spec.port);
      if (!d.pool.has(key) && !created.bindings.some((b) => b.key === key)) {
        const b = new Binding(spec.address, spec.port);
        created.bindings.push(b);
        await b.listen().catch((e: NodeJS.ErrnoException) => {
          throw new Error(`listener ${spec.name}: cannot bind ${spec.address ?? '*'}:${spec.port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : e.message}`);
        });
      }
      targets.set(key, l);
    }

    const ops = d.currentOps();
    const { host, port } = desired.observability;
    if (!ops || ops.host !== host || ops.port !== port) {
      const next = d.makeOps(host, port);
      created.ops = next;
      await next.listen().catch((e: NodeJS.ErrnoException) => {
        throw new Error(`observability.listen: cannot bind ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`);
      });
    }
    return { gen, targets, created };
  } catch (e) {
    await abort(created);
    throw e;
  }
}

/** Closes what prepare() opened; nothing that serves traffic is touched. */
export async function abort(c: Created): Promise<void> {
  await Promise.all(c.bindings.map((b) => b.close()));
  await c.ops?.close();
  await c.accounts?.close();
  await c.transport?.close();
  await c.storage?.close();
}

function createTransport(state: DesiredState): Transport {
  return state.relay.enabled ? new RelayTransport(state.relay, state.delivery, state.hostname) : new MxTransport(state.delivery, state.hostname);
}

function createAccounts(state: DesiredState): AccountBackend {
  return state.accounts.type === 'local' ? new LocalAccounts(state.accounts.users) : new LdapAccounts(state.accounts.ldap, state.domains);
}
