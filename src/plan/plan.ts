// Plan = diff(applied, desired): typed actions keyed by stable names. Pure: no I/O, so the
// same function drives a reload and `mailplane plan`.
import type { DesiredState, ListenerSpec } from '../config/desired-state.js';
import { formatCidr } from '../config/cidr.js';

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

export function diff(applied: DesiredState | null, desired: DesiredState): Plan {
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

  const oldFp = applied?.smtp.tls?.material.fingerprint256 ?? null;
  const newFp = desired.smtp.tls?.material.fingerprint256 ?? null;
  if (applied && oldFp !== newFp) actions.push({ kind: 'tls.rotate', from: oldFp, to: newFp, notAfter: desired.smtp.tls?.material.notAfter ?? null });

  if (applied) {
    const policy = policyChanges(applied, desired);
    if (policy.length) actions.push({ kind: 'policy.update', changes: policy });
    const accounts = accountChanges(applied, desired);
    if (accounts.length) actions.push({ kind: 'accounts.update', changes: accounts });
    const relay = relayChanges(applied, desired);
    if (relay.length) actions.push({ kind: 'relay.update', changes: relay });
    if (applied.storage.dataDir !== desired.storage.dataDir) {
      actions.push({ kind: 'storage.update', changes: [`dataDir: ${applied.storage.dataDir} → ${desired.storage.dataDir}`] });
    }
    const oldListen = hostPort(applied.observability);
    const newListen = hostPort(desired.observability);
    if (oldListen !== newListen) actions.push({ kind: 'observability.rebind', from: oldListen, to: newListen });
  }
  return { from: applied?.hash ?? null, to: desired.hash, actions };
}

function activeListeners(s: DesiredState | null): Map<string, ListenerSpec> {
  if (!s || !s.smtp.enabled) return new Map();
  return new Map(s.smtp.listeners.map((l) => [l.name, l]));
}

function changed(a: ListenerSpec, b: ListenerSpec, keys: readonly (keyof ListenerSpec)[]): string[] {
  return keys.filter((k) => a[k] !== b[k]).map((k) => `${k}: ${show(a[k])} → ${show(b[k])}`);
}

function show(v: unknown): string {
  if (v === null || v === undefined) return 'all interfaces';
  return String(v);
}

function hostPort(o: { host: string; port: number }): string {
  return o.host.includes(':') ? `[${o.host}]:${o.port}` : `${o.host}:${o.port}`;
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

function policyChanges(a: DesiredState, b: DesiredState): string[] {
  const x = a.smtp;
  const y = b.smtp;
  return [
    ...scalar('hostname', a.hostname, b.hostname),
    ...listDiff('domains', a.domains, b.domains),
    ...scalar('maxMessageSize', x.maxMessageSize, y.maxMessageSize),
    ...scalar('auth.required', x.auth.required, y.auth.required),
    ...listDiff('exemptClients', x.auth.exemptClients.map(formatCidr), y.auth.exemptClients.map(formatCidr)),
    ...scalar('lanBypass', x.auth.lanBypass, y.auth.lanBypass),
    ...listDiff('lanNetworks', x.auth.lanNetworks.map(formatCidr), y.auth.lanNetworks.map(formatCidr)),
    ...scalar('auth.maxFailures', x.auth.maxFailures, y.auth.maxFailures),
    ...scalar('auth.failureWindow', `${x.auth.failureWindowMs}ms`, `${y.auth.failureWindowMs}ms`),
    ...scalar('auth.lockoutDuration', `${x.auth.lockoutMs}ms`, `${y.auth.lockoutMs}ms`),
    ...scalar('limits.maxRecipients', x.limits.maxRecipients, y.limits.maxRecipients),
    ...scalar('limits.maxConnections', x.limits.maxConnections, y.limits.maxConnections),
    ...scalar('limits.maxConnectionsPerClient', x.limits.maxConnectionsPerClient, y.limits.maxConnectionsPerClient),
    ...scalar('limits.idleTimeout', `${x.limits.idleTimeoutMs}ms`, `${y.limits.idleTimeoutMs}ms`),
    ...scalar('drainGrace', `${x.drainGraceMs}ms`, `${y.drainGraceMs}ms`),
  ];
}

function accountChanges(a: DesiredState, b: DesiredState): string[] {
  const x = a.accounts;
  const y = b.accounts;
  if (x.type !== y.type) return [`type: ${x.type} → ${y.type}`];
  if (x.type === 'local' && y.type === 'local') {
    const out = listDiff('users', x.users.map((u) => u.name), y.users.map((u) => u.name));
    const changedUsers = y.users.filter((u) => {
      const old = x.users.find((o) => o.name === u.name);
      return old && (old.passwordHash.reveal() !== u.passwordHash.reveal() || old.aliases.join() !== u.aliases.join());
    });
    if (changedUsers.length) out.push(`users changed (password or aliases): ${changedUsers.map((u) => u.name).join(', ')}`);
    return out;
  }
  if (x.type === 'ldap' && y.type === 'ldap') {
    const l = x.ldap;
    const m = y.ldap;
    const out = [
      ...scalar('ldap.url', l.url, m.url),
      ...scalar('ldap.startTls', l.startTls, m.startTls),
      ...scalar('ldap.bindDn', l.bindDn, m.bindDn),
      ...scalar('ldap.userBase', l.userBase, m.userBase),
      ...scalar('ldap.userFilter', l.userFilter, m.userFilter),
      ...listDiff('ldap.aliasAttributes', l.aliasAttributes, m.aliasAttributes),
      ...scalar('ldap.timeout', `${l.timeoutMs}ms`, `${m.timeoutMs}ms`),
      ...scalar('ldap.cacheTtl', `${l.cacheTtlMs}ms`, `${m.cacheTtlMs}ms`),
      ...scalar('ldap.poolSize', l.poolSize, m.poolSize),
    ];
    if (l.caPem !== m.caPem) out.push('ldap.caFile: content changed');
    if (l.bindPassword?.reveal() !== m.bindPassword?.reveal()) out.push('ldap bind password changed');
    return out;
  }
  return [];
}

function relayChanges(a: DesiredState, b: DesiredState): string[] {
  const x = a.relay;
  const y = b.relay;
  const out = [
    ...scalar('relay.enabled', x.enabled, y.enabled),
    ...scalar('relay.host', x.host, y.host),
    ...scalar('relay.port', x.port, y.port),
    ...scalar('relay.secure', x.secure, y.secure),
    ...scalar('relay.auth.username', x.auth?.username, y.auth?.username),
  ];
  if (x.auth?.password.reveal() !== y.auth?.password.reveal()) out.push('relay password changed');
  return out;
}
