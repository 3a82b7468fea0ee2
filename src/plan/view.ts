// What a plan compares: a serializable view of a DesiredState. /status publishes the view of
// the applied generation, so `mailplane plan NEW --server URL` diffs against a running server
// exactly as a reload would. Secrets appear only as digests (slow ones for raw passwords).
import { createHash } from 'node:crypto';
import { formatCidr } from '../config/cidr.js';
import type { AuthPolicy, DeliveryState, DesiredState, ListenerSpec, SmtpLimits } from '../config/desired-state.js';

export interface PlanView {
  readonly hash: string;
  readonly hostname: string;
  readonly domains: readonly string[];
  readonly smtp: {
    readonly enabled: boolean;
    readonly maxMessageSize: number;
    readonly tls: { readonly fingerprint: string; readonly notAfter: number } | null;
    readonly listeners: readonly ListenerSpec[];
    /** the policy with its ranges as text */
    readonly auth: Omit<AuthPolicy, 'exemptClients' | 'lanNetworks'> & { readonly exemptClients: readonly string[]; readonly lanNetworks: readonly string[] };
    readonly limits: SmtpLimits;
    readonly drainGraceMs: number;
  };
  readonly accounts:
    | { readonly type: 'local'; readonly users: readonly { readonly name: string; readonly aliases: readonly string[]; readonly digest: string }[] }
    | {
        readonly type: 'ldap';
        readonly url: string;
        readonly startTls: boolean;
        readonly bindDn: string | null;
        readonly userBase: string;
        readonly userFilter: string;
        readonly aliasAttributes: readonly string[];
        readonly timeoutMs: number;
        readonly cacheTtlMs: number;
        readonly poolSize: number;
        readonly caDigest: string | null;
        readonly bindPasswordDigest: string | null;
      };
  readonly relay: {
    readonly enabled: boolean;
    readonly host: string | null;
    readonly port: number;
    readonly secure: boolean;
    readonly implicitTls: boolean;
    readonly username: string | null;
    readonly passwordDigest: string | null;
    readonly caDigest: string | null;
  };
  readonly delivery: DeliveryState;
  readonly dataDir: string;
  readonly memoryBudget: number;
  readonly observability: string;
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

export function hostPort(o: { host: string; port: number }): string {
  return o.host.includes(':') ? `[${o.host}]:${o.port}` : `${o.host}:${o.port}`;
}

export function planView(s: DesiredState): PlanView {
  const a = s.smtp.auth;
  const acc = s.accounts;
  return {
    hash: s.hash,
    hostname: s.hostname,
    domains: s.domains,
    smtp: {
      enabled: s.smtp.enabled,
      maxMessageSize: s.smtp.maxMessageSize,
      tls: s.smtp.tls ? { fingerprint: s.smtp.tls.material.fingerprint256, notAfter: s.smtp.tls.material.notAfter } : null,
      listeners: s.smtp.listeners,
      auth: {
        required: a.required,
        exemptClients: a.exemptClients.map(formatCidr),
        lanBypass: a.lanBypass,
        lanNetworks: a.lanNetworks.map(formatCidr),
        maxFailures: a.maxFailures,
        failureWindowMs: a.failureWindowMs,
        lockoutMs: a.lockoutMs,
      },
      limits: s.smtp.limits,
      drainGraceMs: s.smtp.drainGraceMs,
    },
    accounts:
      acc.type === 'local'
        ? { type: 'local', users: acc.users.map((u) => ({ name: u.name, aliases: u.aliases, digest: sha(u.passwordHash.digest()) })) }
        : {
            type: 'ldap',
            url: acc.ldap.url,
            startTls: acc.ldap.startTls,
            bindDn: acc.ldap.bindDn,
            userBase: acc.ldap.userBase,
            userFilter: acc.ldap.userFilter,
            aliasAttributes: acc.ldap.aliasAttributes,
            timeoutMs: acc.ldap.timeoutMs,
            cacheTtlMs: acc.ldap.cacheTtlMs,
            poolSize: acc.ldap.poolSize,
            caDigest: acc.ldap.caPem ? sha(acc.ldap.caPem) : null,
            bindPasswordDigest: acc.ldap.bindPassword ? acc.ldap.bindPassword.digest() : null,
          },
    relay: {
      enabled: s.relay.enabled,
      host: s.relay.host,
      port: s.relay.port,
      secure: s.relay.secure,
      implicitTls: s.relay.implicitTls,
      username: s.relay.auth?.username ?? null,
      passwordDigest: s.relay.auth ? s.relay.auth.password.digest() : null,
      caDigest: s.relay.caPem ? sha(s.relay.caPem) : null,
    },
    delivery: s.delivery,
    dataDir: s.storage.dataDir,
    memoryBudget: s.storage.memoryBudget,
    observability: hostPort(s.observability),
  };
}
