// What each runtime component is built from: one spec function of the desired state per
// component, and nothing else. The plan (what `mailplane plan` prints and a reload logs) and
// the transaction's rebuild decisions both come from comparing these specs, and every factory
// takes its spec, so a field a component reads is a field whose change rebuilds it.
import { formatCidr } from '../config/cidr.js';
import type {
  AuthPolicy,
  DeliveryState,
  PeersState,
  RedisState,
  DesiredState,
  InboundChecks,
  LdapSettings,
  SpamFilterState,
  ListenerRole,
  ListenerTls,
  LocalUser,
  RelayState,
  SmtpLimits,
  StorageState,
} from '../config/desired-state.js';
import type { LmtpTarget } from '../config/desired-state.js';
import type { HashScheme } from '../config/hashes.js';
import type { Secret } from '../config/secret.js';
import type { DkimAlgorithm } from '../dkim/key.js';
import type { TlsMaterial } from '../tls/material.js';

/** The socket a listener owns: a change needs a new socket (or a new server on it). */
export interface SocketSpec {
  readonly port: number;
  /** null = all interfaces */
  readonly address: string | null;
  readonly tls: ListenerTls;
  readonly proxyProtocol: boolean;
}

/** A listener: its socket, and its role (which new sessions pin). */
export interface ListenerComponent {
  readonly socket: SocketSpec;
  readonly role: ListenerRole;
}

/** The policy new sessions pin (smtp/policy.ts builds it from this alone). */
export interface PolicySpec {
  readonly hostname: string;
  readonly domains: readonly string[];
  readonly maxMessageSize: number;
  /** the ranges as written (address/prefix) */
  readonly auth: Omit<AuthPolicy, 'exemptClients' | 'lanNetworks'> & { readonly exemptClients: readonly string[]; readonly lanNetworks: readonly string[] };
  readonly limits: SmtpLimits;
  readonly drainGraceMs: number;
  /** delivery.maxReceivedHeaders, for loop detection while a message arrives */
  readonly maxReceivedHeaders: number;
  /** inbound.checks, with the resolvers they query (delivery.dns) */
  readonly inbound: InboundChecks & { readonly junkFolder: string; readonly spamFilter: SpamFilterState | null; readonly dnsServers: readonly string[]; readonly dnsTimeoutMs: number };
  /** cluster.peers.secretFile: what AUTH on peer listeners compares with (null: exempt clients only) */
  readonly peerSecret: Secret | null;
}

/** The account backend: local users, or the directory (which needs our domains for aliases). */
/** What the directory client reads (the file paths only say where caPem and the password came from). */
export type LdapSpec = Omit<LdapSettings, 'caFile' | 'bindPasswordFile'>;

export type AccountsSpec = { readonly type: 'local'; readonly users: readonly LocalUser[] } | { readonly type: 'ldap'; readonly ldap: LdapSpec; readonly domains: readonly string[] };

/** What the relay client reads (not where its password came from). */
export type RelaySpec = Omit<RelayState, 'auth'> & { readonly auth: { readonly username: string; readonly password: Secret } | null };

/** How queued mail leaves: the relay or direct MX, with the connection settings they use. */
export interface TransportSpec {
  readonly hostname: string;
  readonly relay: RelaySpec;
  readonly connect: Pick<DeliveryState, 'concurrency' | 'dnsServers' | 'dnsTimeoutMs' | 'mxPort' | 'connectTimeoutMs' | 'mtaSts'>;
}

/** What the queue reads at every attempt (applied in place). */
export type DeliverySpec = Pick<
  DeliveryState,
  'minRetryDelayMs' | 'maxRetryDelayMs' | 'maxLifetimeMs' | 'maxReceivedHeaders' | 'concurrency' | 'destinationConcurrency' | 'maxBytesInFlight' | 'startupRampMs'
>;

/** One DKIM key as the signer uses it: the key (a Secret) and, for people, its public fingerprint. */
export interface SigningKeySpec {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: DkimAlgorithm;
  readonly fingerprint: string;
  readonly privateKey: Secret;
}

/** The DKIM signer: every key, by domain then selector (the order of the config is no change). */
export interface SigningSpec {
  readonly keys: readonly SigningKeySpec[];
}

/**
 * Where local copies go (mailboxes.store, read by the intake at every message) and the LMTP
 * client (rebuilt when this changes). The client exists whenever an LMTP server is configured,
 * so that what was queued for it is delivered after a switch back to maildir.
 */
export interface MailboxesSpec {
  readonly store: 'maildir' | 'lmtp';
  readonly lmtp: LmtpTarget | null;
  /** the name mailplane gives in LHLO */
  readonly hostname: string;
  readonly connectTimeoutMs: number;
}

/** One line of the passwd-file written for Dovecot. */
export interface DovecotUserSpec {
  readonly name: string;
  readonly passwordHash: Secret;
  readonly scheme: HashScheme;
}

/** The passwd-file written for Dovecot on every applied generation (mailboxes.dovecot.passwdFile); null when none is. */
export type DovecotSpec = {
  readonly passwdFile: string;
  readonly users: readonly DovecotUserSpec[];
  /** with store maildir, <dataDir>/mail: each user's home is the Maildir under it; null with lmtp (Dovecot's own mail_home) */
  readonly mailRoot: string | null;
  /** the file's group (storage.mailboxGroup); null: mailplane's own */
  readonly gid: number | null;
  /** store lmtp and nobody claims postmaster: a postmaster line nobody can log in with, so Dovecot takes its mail */
  readonly postmaster: boolean;
} | null;

/**
 * Several replicas (cluster): the Redis the abuse counters are shared in (applied in place: the
 * limits switch to the new client) and where this replica's queue goes when it leaves (read when
 * `mailplane queue handoff` runs).
 */
export interface ClusterSpec {
  readonly redis: RedisState | null;
  readonly peers: PeersState | null;
}

export interface Specs {
  /** active listeners only (none while smtp.enabled is false), by name */
  readonly listeners: Readonly<Record<string, ListenerComponent>>;
  /** the certificate chain as served and its key (with the leaf's fingerprint and expiry, for people) */
  readonly tls: { readonly certPem: string; readonly keyPem: Secret; readonly fingerprint256: string; readonly notAfter: number } | null;
  readonly policy: PolicySpec;
  readonly accounts: AccountsSpec;
  readonly transport: TransportSpec;
  readonly delivery: DeliverySpec;
  /** reopening the data dir; the memory budget and the Maildir group and modes are applied in place (to what is created next) */
  readonly storage: StorageState;
  readonly ops: { readonly host: string; readonly port: number };
  /** who may read /status and reload (applied in place: read at every request) */
  readonly opsAccess: { readonly token: Secret | null };
  /** how the mail log writes addresses (applied in place) */
  readonly logging: { readonly addresses: 'full' | 'redact' };
  /** DKIM signing of outbound mail (swapped in place: the next message is signed with it) */
  readonly signing: SigningSpec;
  /** local copies into Maildir or over LMTP (the store applied in place, the LMTP client rebuilt) */
  readonly mailboxes: MailboxesSpec;
  /** the passwd-file for Dovecot, checked and (when its content differs) written on every applied generation */
  readonly dovecot: DovecotSpec;
  /** shared limits in Redis, the hand-off peer */
  readonly cluster: ClusterSpec;
}

export type Component = keyof Specs;

export const COMPONENTS: readonly Component[] = [
  'listeners',
  'tls',
  'policy',
  'accounts',
  'transport',
  'delivery',
  'storage',
  'ops',
  'opsAccess',
  'logging',
  'signing',
  'mailboxes',
  'dovecot',
  'cluster',
];

export function specsOf(s: DesiredState): Specs {
  const a = s.smtp.auth;
  const d = s.delivery;
  return {
    listeners: Object.fromEntries(
      (s.smtp.enabled ? s.smtp.listeners : []).map((l) => [l.name, { socket: { port: l.port, address: l.address, tls: l.tls, proxyProtocol: l.proxyProtocol }, role: l.role }]),
    ),
    tls: s.smtp.tls ? tlsSpec(s.smtp.tls.material) : null,
    policy: {
      hostname: s.hostname,
      domains: s.domains,
      maxMessageSize: s.smtp.maxMessageSize,
      auth: {
        required: a.required,
        exemptClients: a.exemptClients.map(formatCidr),
        lanBypass: a.lanBypass,
        lanNetworks: a.lanNetworks.map(formatCidr),
        maxFailures: a.maxFailures,
        failureWindowMs: a.failureWindowMs,
        lockoutMs: a.lockoutMs,
      },
      limits: { ...s.smtp.limits },
      drainGraceMs: s.smtp.drainGraceMs,
      maxReceivedHeaders: d.maxReceivedHeaders,
      inbound: { ...s.inbound.checks, junkFolder: s.inbound.junkFolder, spamFilter: s.inbound.spamFilter, dnsServers: d.dnsServers, dnsTimeoutMs: d.dnsTimeoutMs },
      peerSecret: s.cluster.peers?.secret ?? null,
    },
    accounts: s.accounts.type === 'local' ? { type: 'local', users: s.accounts.users } : { type: 'ldap', ldap: ldapSpec(s.accounts.ldap), domains: s.domains },
    transport: {
      hostname: s.hostname,
      relay: { ...s.relay, auth: s.relay.auth ? { username: s.relay.auth.username, password: s.relay.auth.password } : null },
      connect: { concurrency: d.concurrency, dnsServers: d.dnsServers, dnsTimeoutMs: d.dnsTimeoutMs, mxPort: d.mxPort, connectTimeoutMs: d.connectTimeoutMs, mtaSts: d.mtaSts },
    },
    delivery: {
      minRetryDelayMs: d.minRetryDelayMs,
      maxRetryDelayMs: d.maxRetryDelayMs,
      maxLifetimeMs: d.maxLifetimeMs,
      maxReceivedHeaders: d.maxReceivedHeaders,
      concurrency: d.concurrency,
      destinationConcurrency: d.destinationConcurrency,
      maxBytesInFlight: d.maxBytesInFlight,
      startupRampMs: d.startupRampMs,
    },
    storage: { dataDir: s.storage.dataDir, memoryBudget: s.storage.memoryBudget, mailboxGroup: s.storage.mailboxGroup, mailboxMode: s.storage.mailboxMode },
    ops: { host: s.observability.host, port: s.observability.port },
    opsAccess: { token: s.observability.token },
    logging: { addresses: s.observability.logAddresses },
    signing: {
      keys: [...s.dkim.keys]
        .sort((x, y) => (x.domain === y.domain ? (x.selector < y.selector ? -1 : 1) : x.domain < y.domain ? -1 : 1))
        .map((k) => ({ domain: k.domain, selector: k.selector, algorithm: k.material.algorithm, fingerprint: k.material.fingerprint, privateKey: k.material.privateKey })),
    },
    mailboxes: { store: s.mailboxes.store, lmtp: s.mailboxes.lmtp, hostname: s.hostname, connectTimeoutMs: d.connectTimeoutMs },
    dovecot: dovecotSpec(s),
    cluster: { redis: s.cluster.redis, peers: s.cluster.peers },
  };
}

function dovecotSpec(s: DesiredState): DovecotSpec {
  const file = s.mailboxes.passwdFile;
  if (file === null) return null;
  const users = s.accounts.type === 'local' ? s.accounts.users : [];
  const claimed = users.some((u) => u.name === 'postmaster' || u.aliases.includes('postmaster'));
  return {
    passwdFile: file,
    users: users.map((u) => ({ name: u.name, passwordHash: u.passwordHash, scheme: u.scheme })),
    mailRoot: s.mailboxes.store === 'maildir' ? `${s.storage.dataDir.replace(/\/+$/, '')}/mail` : null,
    gid: s.storage.mailboxGroup?.gid ?? null,
    postmaster: s.mailboxes.store === 'lmtp' && s.accounts.type === 'local' && !claimed,
  };
}

function ldapSpec(l: LdapSettings): LdapSpec {
  const { caFile: _c, bindPasswordFile: _b, ...spec } = l;
  return spec;
}

function tlsSpec(m: TlsMaterial): Specs['tls'] {
  return { certPem: m.certPem, keyPem: m.keyPem, fingerprint256: m.fingerprint256, notAfter: m.notAfter };
}
