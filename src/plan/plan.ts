// Plan = diff(applied, desired) over the component specs (specs.ts): typed actions keyed by
// stable names, each with the changed leaves for people. Pure: no I/O, so the same function
// drives a reload and `mailplane plan` (which may diff against the view a running server
// publishes in /status). The transaction's rebuild decisions come from the same comparison.
import { canonical, describeChanges, sameJson, type Json, type SecretMode } from '../config/canonical.js';
import type { DesiredState, ListenerRole, ListenerTls } from '../config/desired-state.js';
import { COMPONENTS, specsOf, type Component, type Specs } from './specs.js';

/** What an action says about a listener. */
export interface ListenerFacts {
  readonly role: ListenerRole;
  readonly port: number;
  readonly address: string | null;
  readonly tls: ListenerTls;
}

export type Action =
  | { readonly kind: 'listener.add'; readonly listener: string; readonly spec: ListenerFacts }
  | { readonly kind: 'listener.remove'; readonly listener: string; readonly spec: ListenerFacts }
  /** port, address, TLS mode or PROXY protocol changed: new socket (or a new server on the same socket), old sessions drain */
  | { readonly kind: 'listener.rebind'; readonly listener: string; readonly changes: readonly string[] }
  /** role changed: applies to new sessions, no socket touched */
  | { readonly kind: 'listener.update'; readonly listener: string; readonly changes: readonly string[] }
  | { readonly kind: 'tls.rotate'; readonly from: string | null; readonly to: string | null; readonly notAfter: number | null; readonly changes: readonly string[] }
  | { readonly kind: 'policy.update'; readonly changes: readonly string[] }
  | { readonly kind: 'accounts.update'; readonly changes: readonly string[] }
  | { readonly kind: 'relay.update'; readonly changes: readonly string[] }
  | { readonly kind: 'delivery.update'; readonly changes: readonly string[] }
  | { readonly kind: 'storage.update'; readonly changes: readonly string[] }
  | { readonly kind: 'observability.rebind'; readonly from: string; readonly to: string }
  | { readonly kind: 'observability.update'; readonly changes: readonly string[] }
  /** DKIM keys added, removed or replaced: the signer is swapped in place */
  | { readonly kind: 'signing.update'; readonly changes: readonly string[] }
  /** where local copies go (Maildir or LMTP), the LMTP server */
  | { readonly kind: 'mailboxes.update'; readonly changes: readonly string[] }
  /** the passwd-file written for Dovecot: users added, removed, given a new password (never the hash itself) */
  | { readonly kind: 'dovecot.update'; readonly changes: readonly string[] }
  /** cluster: the Redis of the shared limits (switched in place), the hand-off peer */
  | { readonly kind: 'cluster.update'; readonly changes: readonly string[] };

export interface Plan {
  readonly from: string | null; // public hash of the applied state
  readonly to: string;
  readonly actions: readonly Action[];
}

/**
 * The specs of a state as JSON, with its public hash: what a plan compares. In-process, secrets
 * are per-process digests (a changed password shows); what /status publishes has 'presence'.
 */
export interface SpecView {
  readonly hash: string;
  readonly specs: { readonly [C in Component]: Json };
}

export function specView(s: DesiredState, secrets: SecretMode): SpecView {
  const specs = specsOf(s);
  return { hash: s.publicHash, specs: Object.fromEntries(COMPONENTS.map((c) => [c, canonical(specs[c], secrets)])) as SpecView['specs'] };
}

/** The same view with secrets reduced to whether they are set (to compare with a published one). */
export function withoutSecrets(v: SpecView): SpecView {
  return { hash: v.hash, specs: Object.fromEntries(COMPONENTS.map((c) => [c, presence(v.specs[c])])) as SpecView['specs'] };
}

function presence(v: Json): Json {
  if (Array.isArray(v)) return v.map(presence);
  if (v && typeof v === 'object') return 'secret' in v && Object.keys(v).length === 1 ? { secret: 'set' } : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, presence(x)]));
  return v;
}

/** Whether an action opens or closes a socket, or makes sessions drain. */
export function touchesSockets(a: Action): boolean {
  return a.kind === 'listener.add' || a.kind === 'listener.remove' || a.kind === 'listener.rebind' || a.kind === 'observability.rebind';
}

/** What differs, component by component: the transaction rebuilds exactly these. */
export interface Changes {
  readonly components: ReadonlySet<Component>;
  /** listeners whose socket changed or that are new: they need a new Listener */
  readonly sockets: ReadonlySet<string>;
}

export function changes(applied: SpecView | null, desired: SpecView): Changes {
  const components = new Set<Component>();
  const sockets = new Set<string>();
  for (const c of COMPONENTS) if (!applied || !sameJson(applied.specs[c], desired.specs[c])) components.add(c);
  const before = listeners(applied);
  for (const [name, l] of listeners(desired)) {
    const old = before.get(name);
    if (!old || !sameJson(old.socket, l.socket)) sockets.add(name);
  }
  return { components, sockets };
}

type ListenerJson = { socket: { port: number; address: string | null; tls: ListenerTls; proxyProtocol: boolean }; role: ListenerRole };

function listeners(v: SpecView | null): Map<string, ListenerJson> {
  return new Map(Object.entries((v?.specs.listeners ?? {}) as Record<string, ListenerJson>));
}

const facts = (l: ListenerJson): ListenerFacts => ({ role: l.role, port: l.socket.port, address: l.socket.address, tls: l.socket.tls });

export function diff(applied: SpecView | null, desired: SpecView): Plan {
  const actions: Action[] = [];
  const before = listeners(applied);
  const after = listeners(desired);
  for (const [name, l] of after) {
    const old = before.get(name);
    if (!old) {
      actions.push({ kind: 'listener.add', listener: name, spec: facts(l) });
      continue;
    }
    const socket = describeChanges(old.socket, l.socket);
    if (socket.length) actions.push({ kind: 'listener.rebind', listener: name, changes: socket });
    if (old.role !== l.role) actions.push({ kind: 'listener.update', listener: name, changes: [`role: ${old.role} → ${l.role}`] });
  }
  for (const [name, l] of before) if (!after.has(name)) actions.push({ kind: 'listener.remove', listener: name, spec: facts(l) });
  if (!applied) return { from: null, to: desired.hash, actions };

  const a = applied.specs;
  const b = desired.specs;
  if (!sameJson(a.tls, b.tls)) {
    const leaf = (t: Json) => (t && typeof t === 'object' && !Array.isArray(t) ? t : null) as { fingerprint256?: string; notAfter?: number } | null;
    actions.push({
      kind: 'tls.rotate',
      from: leaf(a.tls)?.fingerprint256 ?? null,
      to: leaf(b.tls)?.fingerprint256 ?? null,
      notAfter: leaf(b.tls)?.notAfter ?? null,
      changes: describeChanges(a.tls, b.tls)
        .filter((c) => !/^(fingerprint256|notAfter):/.test(c))
        .map((c) => c.replace(/^certPem: content changed$/, 'certificate chain changed')),
    });
  }
  push(actions, 'policy.update', describeChanges(a.policy, b.policy));
  push(actions, 'accounts.update', describeChanges(a.accounts, b.accounts));
  const transport = (t: Json) => (t && typeof t === 'object' && !Array.isArray(t) ? t : {}) as Record<string, Json>;
  push(actions, 'relay.update', describeChanges(transport(a.transport).relay ?? null, transport(b.transport).relay ?? null, 'relay'));
  const delivery = [
    ...describeChanges(transport(a.transport).hostname ?? null, transport(b.transport).hostname ?? null, 'hostname'),
    ...describeChanges(transport(a.transport).connect ?? null, transport(b.transport).connect ?? null, 'delivery'),
    ...describeChanges(a.delivery, b.delivery, 'delivery'),
  ];
  push(actions, 'delivery.update', [...new Set(delivery)]);
  push(actions, 'storage.update', describeChanges(a.storage, b.storage));
  if (!sameJson(a.ops, b.ops)) actions.push({ kind: 'observability.rebind', from: hostPortOf(a.ops), to: hostPortOf(b.ops) });
  const observability = [...describeChanges(a.opsAccess, b.opsAccess, 'observability'), ...describeChanges(a.logging ?? null, b.logging ?? null, 'observability.logging')];
  if (observability.length) actions.push({ kind: 'observability.update', changes: observability });
  const signing = signingChanges(a.signing ?? null, b.signing ?? null);
  if (signing.length) actions.push({ kind: 'signing.update', changes: signing });
  const mailboxes = describeChanges(a.mailboxes ?? null, b.mailboxes ?? null, 'mailboxes');
  if (mailboxes.length) actions.push({ kind: 'mailboxes.update', changes: mailboxes });
  const dovecot = describeChanges(a.dovecot ?? null, b.dovecot ?? null, 'dovecot').map((c) => c.replace(/^dovecot\.users\.([^.]+)\.passwordHash: changed$/, 'dovecot.users.$1: password changed'));
  if (dovecot.length) actions.push({ kind: 'dovecot.update', changes: dovecot });
  const cluster = describeChanges(a.cluster ?? null, b.cluster ?? null, 'cluster');
  if (cluster.length) actions.push({ kind: 'cluster.update', changes: cluster });
  return { from: applied.hash, to: desired.hash, actions };
}

type SigningKeyJson = { domain: string; selector: string; algorithm: string; fingerprint: string; privateKey: Json };

/** DKIM keys by domain and selector: added, removed, replaced (by public fingerprint; the key itself never shows). */
function signingChanges(a: Json, b: Json): string[] {
  const keys = (v: Json) => new Map(((v as { keys?: SigningKeyJson[] } | null)?.keys ?? []).map((k) => [`${k.domain} selector ${k.selector}`, k]));
  const [before, after] = [keys(a), keys(b)];
  const fp = (k: SigningKeyJson) => `${k.fingerprint.slice(0, 'sha256:'.length + 16)}…`;
  const out: string[] = [];
  for (const [id, k] of after) {
    const old = before.get(id);
    if (!old) out.push(`add key ${id} (${k.algorithm}, ${fp(k)})`);
    else if (old.fingerprint !== k.fingerprint) out.push(`replace key ${id}: ${fp(old)} → ${fp(k)} (${k.algorithm})`);
    else if (old.algorithm !== k.algorithm) out.push(`key ${id}: algorithm ${old.algorithm} → ${k.algorithm}`);
    else if (!sameJson(old.privateKey, k.privateKey)) out.push(`key ${id}: file content changed, same key`);
  }
  for (const [id] of before) if (!after.has(id)) out.push(`remove key ${id}`);
  return out;
}

function push(actions: Action[], kind: 'policy.update' | 'accounts.update' | 'relay.update' | 'delivery.update' | 'storage.update', changes: string[]): void {
  if (changes.length) actions.push({ kind, changes });
}

function hostPortOf(v: Json): string {
  const o = (v ?? {}) as { host?: string; port?: number };
  return hostPort({ host: o.host ?? '?', port: o.port ?? 0 });
}

export function hostPort(o: { host: string; port: number }): string {
  return o.host.includes(':') ? `[${o.host}]:${o.port}` : `${o.host}:${o.port}`;
}

export type { Specs };
