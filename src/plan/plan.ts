// Plan = diff(applied, desired): typed actions keyed by stable names. Pure: no I/O, so the
// same function drives a reload and `mailplane plan` (which may diff against the view a
// running server publishes in /status).
import type { ListenerSpec } from '../config/desired-state.js';
import type { PlanView } from './view.js';

export type Action =
  | { readonly kind: 'listener.add'; readonly listener: string; readonly spec: ListenerSpec }
  | { readonly kind: 'listener.remove'; readonly listener: string; readonly spec: ListenerSpec }
  /** port, address, TLS mode or PROXY protocol changed: new socket (or a new server on the same socket), old sessions drain */
  | { readonly kind: 'listener.rebind'; readonly listener: string; readonly from: ListenerSpec; readonly to: ListenerSpec; readonly changes: readonly string[] }
  /** role changed: applies to new sessions, no socket touched */
  | { readonly kind: 'listener.update'; readonly listener: string; readonly changes: readonly string[] }
  | { readonly kind: 'tls.rotate'; readonly from: string | null; readonly to: string | null; readonly notAfter: number | null }
  | { readonly kind: 'policy.update'; readonly changes: readonly string[] }
  | { readonly kind: 'accounts.update'; readonly changes: readonly string[] }
  | { readonly kind: 'relay.update'; readonly changes: readonly string[] }
  | { readonly kind: 'delivery.update'; readonly changes: readonly string[] }
  | { readonly kind: 'storage.update'; readonly changes: readonly string[] }
  | { readonly kind: 'observability.rebind'; readonly from: string; readonly to: string };

export interface Plan {
  readonly from: string | null; // hash of the applied state
  readonly to: string;
  readonly actions: readonly Action[];
}

/** Whether an action opens or closes a socket, or makes sessions drain. */
export function touchesSockets(a: Action): boolean {
  return a.kind === 'listener.add' || a.kind === 'listener.remove' || a.kind === 'listener.rebind' || a.kind === 'observability.rebind';
}

export function diff(applied: PlanView | null, desired: PlanView): Plan {
  const actions: Action[] = [];
  const before = activeListeners(applied);
  const after = activeListeners(desired);
  for (const [name, spec] of after) {
    const old = before.get(name);
    if (!old) {
      actions.push({ kind: 'listener.add', listener: name, spec });
      continue;
    }
    const socket = changed(old, spec, ['port', 'address', 'tls', 'proxyProtocol']);
    if (socket.length) actions.push({ kind: 'listener.rebind', listener: name, from: old, to: spec, changes: socket });
    const rest = changed(old, spec, ['role']);
    if (rest.length) actions.push({ kind: 'listener.update', listener: name, changes: rest });
  }
  for (const [name, spec] of before) if (!after.has(name)) actions.push({ kind: 'listener.remove', listener: name, spec });
  if (!applied) return { from: null, to: desired.hash, actions };

  const oldFp = applied.smtp.tls?.fingerprint ?? null;
  const newFp = desired.smtp.tls?.fingerprint ?? null;
  if (oldFp !== newFp) actions.push({ kind: 'tls.rotate', from: oldFp, to: newFp, notAfter: desired.smtp.tls?.notAfter ?? null });
  const policy = policyChanges(applied, desired);
  if (policy.length) actions.push({ kind: 'policy.update', changes: policy });
  const accounts = accountChanges(applied, desired);
  if (accounts.length) actions.push({ kind: 'accounts.update', changes: accounts });
  const relay = relayChanges(applied, desired);
  if (relay.length) actions.push({ kind: 'relay.update', changes: relay });
  const delivery = deliveryChanges(applied, desired);
  if (delivery.length) actions.push({ kind: 'delivery.update', changes: delivery });
  const storage = [...scalar('dataDir', applied.dataDir, desired.dataDir), ...scalar('memoryBudget', applied.memoryBudget, desired.memoryBudget)];
  if (storage.length) actions.push({ kind: 'storage.update', changes: storage });
  if (applied.observability !== desired.observability) actions.push({ kind: 'observability.rebind', from: applied.observability, to: desired.observability });
  return { from: applied.hash, to: desired.hash, actions };
}

function activeListeners(v: PlanView | null): Map<string, ListenerSpec> {
  if (!v || !v.smtp.enabled) return new Map();
  return new Map(v.smtp.listeners.map((l) => [l.name, l]));
}

function changed(a: ListenerSpec, b: ListenerSpec, keys: readonly (keyof ListenerSpec)[]): string[] {
  return keys.filter((k) => a[k] !== b[k]).map((k) => `${k}: ${show(a[k])} → ${show(b[k])}`);
}

function show(v: unknown): string {
  return v === null || v === undefined ? 'all interfaces' : String(v);
}

function listDiff(label: string, a: readonly string[], b: readonly string[]): string[] {
  const added = b.filter((x) => !a.includes(x));
  const removed = a.filter((x) => !b.includes(x));
  const out: string[] = [];
  if (added.length) out.push(`${label} added: ${added.join(', ')}`);
  if (removed.length) out.push(`${label} removed: ${removed.join(', ')}`);
  return out;
}

function scalar(label: string, a: unknown, b: unknown): string[] {
  return a === b ? [] : [`${label}: ${String(a)} → ${String(b)}`];
}

const ms = (n: number) => `${n}ms`;

function policyChanges(a: PlanView, b: PlanView): string[] {
  const x = a.smtp;
  const y = b.smtp;
  return [
    ...scalar('hostname', a.hostname, b.hostname),
    ...listDiff('domains', a.domains, b.domains),
    ...scalar('maxMessageSize', x.maxMessageSize, y.maxMessageSize),
    ...scalar('auth.required', x.auth.required, y.auth.required),
    ...listDiff('exemptClients', x.auth.exemptClients, y.auth.exemptClients),
    ...scalar('lanBypass', x.auth.lanBypass, y.auth.lanBypass),
    ...listDiff('lanNetworks', x.auth.lanNetworks, y.auth.lanNetworks),
    ...scalar('auth.maxFailures', x.auth.maxFailures, y.auth.maxFailures),
    ...scalar('auth.failureWindow', ms(x.auth.failureWindowMs), ms(y.auth.failureWindowMs)),
    ...scalar('auth.lockoutDuration', ms(x.auth.lockoutMs), ms(y.auth.lockoutMs)),
    ...scalar('limits.maxRecipients', x.limits.maxRecipients, y.limits.maxRecipients),
    ...scalar('limits.maxLineLength', x.limits.maxLineLength, y.limits.maxLineLength),
    ...scalar('limits.maxConnections', x.limits.maxConnections, y.limits.maxConnections),
    ...scalar('limits.maxConnectionsPerClient', x.limits.maxConnectionsPerClient, y.limits.maxConnectionsPerClient),
    ...scalar('limits.idleTimeout', ms(x.limits.idleTimeoutMs), ms(y.limits.idleTimeoutMs)),
    ...scalar('limits.commandTimeout', ms(x.limits.commandTimeoutMs), ms(y.limits.commandTimeoutMs)),
    ...scalar('limits.dataTimeout', ms(x.limits.dataTimeoutMs), ms(y.limits.dataTimeoutMs)),
    ...scalar('drainGrace', ms(x.drainGraceMs), ms(y.drainGraceMs)),
  ];
}

function accountChanges(a: PlanView, b: PlanView): string[] {
  const x = a.accounts;
  const y = b.accounts;
  if (x.type !== y.type) return [`type: ${x.type} → ${y.type}`];
  if (x.type === 'local' && y.type === 'local') {
    const out = listDiff('users', x.users.map((u) => u.name), y.users.map((u) => u.name));
    const changedUsers = y.users.filter((u) => {
      const old = x.users.find((o) => o.name === u.name);
      return old && (old.digest !== u.digest || old.aliases.join() !== u.aliases.join());
    });
    if (changedUsers.length) out.push(`users changed (password or aliases): ${changedUsers.map((u) => u.name).join(', ')}`);
    return out;
  }
  if (x.type === 'ldap' && y.type === 'ldap') {
    return [
      ...scalar('ldap.url', x.url, y.url),
      ...scalar('ldap.startTls', x.startTls, y.startTls),
      ...scalar('ldap.bindDn', x.bindDn, y.bindDn),
      ...scalar('ldap.userBase', x.userBase, y.userBase),
      ...scalar('ldap.userFilter', x.userFilter, y.userFilter),
      ...listDiff('ldap.aliasAttributes', x.aliasAttributes, y.aliasAttributes),
      ...scalar('ldap.timeout', ms(x.timeoutMs), ms(y.timeoutMs)),
      ...scalar('ldap.cacheTtl', ms(x.cacheTtlMs), ms(y.cacheTtlMs)),
      ...scalar('ldap.poolSize', x.poolSize, y.poolSize),
      ...(x.caDigest !== y.caDigest ? ['ldap.caFile: content changed'] : []),
      ...(x.bindPasswordDigest !== y.bindPasswordDigest ? ['ldap bind password changed'] : []),
    ];
  }
  return [];
}

function relayChanges(a: PlanView, b: PlanView): string[] {
  const x = a.relay;
  const y = b.relay;
  return [
    ...scalar('relay.enabled', x.enabled, y.enabled),
    ...scalar('relay.host', x.host, y.host),
    ...scalar('relay.port', x.port, y.port),
    ...scalar('relay.secure', x.secure, y.secure),
    ...scalar('relay.implicitTls', x.implicitTls, y.implicitTls),
    ...scalar('relay.auth.username', x.username, y.username),
    ...(x.passwordDigest !== y.passwordDigest ? ['relay password changed'] : []),
    ...(x.caDigest !== y.caDigest ? ['relay.caFile: content changed'] : []),
  ];
}

function deliveryChanges(a: PlanView, b: PlanView): string[] {
  const x = a.delivery;
  const y = b.delivery;
  return [
    ...scalar('delivery.minRetryDelay', ms(x.minRetryDelayMs), ms(y.minRetryDelayMs)),
    ...scalar('delivery.maxRetryDelay', ms(x.maxRetryDelayMs), ms(y.maxRetryDelayMs)),
    ...scalar('delivery.maxLifetime', ms(x.maxLifetimeMs), ms(y.maxLifetimeMs)),
    ...scalar('delivery.concurrency', x.concurrency, y.concurrency),
    ...scalar('delivery.destinationConcurrency', x.destinationConcurrency, y.destinationConcurrency),
    ...scalar('delivery.maxReceivedHeaders', x.maxReceivedHeaders, y.maxReceivedHeaders),
    ...listDiff('delivery.dns.servers', x.dnsServers, y.dnsServers),
    ...scalar('delivery.dns.timeout', ms(x.dnsTimeoutMs), ms(y.dnsTimeoutMs)),
    ...scalar('delivery.mxPort', x.mxPort, y.mxPort),
    ...scalar('delivery.connectTimeout', ms(x.connectTimeoutMs), ms(y.connectTimeoutMs)),
  ];
}
