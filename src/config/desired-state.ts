// The normalized, frozen result of loading mailserver.yaml: what every other module
// consumes. Nothing outside config/ sees the raw (generated) config types.
import type { Cidr } from './cidr.js';
import type { HashScheme } from './hashes.js';
import type { Secret } from './secret.js';
import type { TlsMaterial } from '../tls/material.js';
import type { DkimKeyMaterial } from '../dkim/key.js';

export type ListenerRole = 'mx' | 'submission' | 'peer';
export type ListenerTls = 'none' | 'starttls' | 'implicit';

export interface ListenerSpec {
  readonly name: string;
  readonly port: number;
  /** null = all interfaces */
  readonly address: string | null;
  readonly role: ListenerRole;
  readonly tls: ListenerTls;
  readonly proxyProtocol: boolean;
}

export interface AuthPolicy {
  readonly required: boolean;
  readonly exemptClients: readonly Cidr[];
  readonly lanBypass: boolean;
  readonly lanNetworks: readonly Cidr[];
  readonly maxFailures: number;
  readonly failureWindowMs: number;
  readonly lockoutMs: number;
}

export interface SmtpLimits {
  readonly maxRecipients: number;
  /** octets per message line, CRLF excluded */
  readonly maxLineLength: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  readonly idleTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly dataTimeoutMs: number;
  /** per authenticated user or trusted client address; 0 = no limit */
  readonly sendRate: SendRate;
  readonly rejectedRecipients: RejectedRecipients;
}

export interface SendRate {
  readonly messages: number;
  readonly recipients: number;
  readonly windowMs: number;
}

export interface RejectedRecipients {
  readonly delayAfter: number;
  readonly delayMs: number;
  /** 0 = never */
  readonly disconnectAfter: number;
  /** with cluster.redis: refused RCPTs are also counted per client address over this window, across replicas */
  readonly windowMs: number;
}

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly material: TlsMaterial;
}

export interface SmtpState {
  readonly enabled: boolean;
  readonly maxMessageSize: number;
  readonly tls: TlsFiles | null;
  readonly listeners: readonly ListenerSpec[];
  readonly auth: AuthPolicy;
  readonly limits: SmtpLimits;
  readonly drainGraceMs: number;
}

export interface LocalUser {
  /** lower-case login and local part; also the Maildir name */
  readonly name: string;
  readonly passwordHash: Secret;
  readonly scheme: HashScheme;
  readonly aliases: readonly string[];
}

export interface LdapSettings {
  readonly url: string;
  readonly startTls: boolean;
  readonly caFile: string | null;
  readonly caPem: string | null;
  readonly bindDn: string | null;
  readonly bindPasswordFile: string | null;
  readonly bindPassword: Secret | null;
  readonly userBase: string;
  readonly userFilter: string;
  readonly aliasAttributes: readonly string[];
  readonly timeoutMs: number;
  readonly cacheTtlMs: number;
  readonly poolSize: number;
}

export type AccountsState = { readonly type: 'local'; readonly users: readonly LocalUser[]; readonly usersFile: string | null } | { readonly type: 'ldap'; readonly ldap: LdapSettings };

export interface RelayState {
  readonly enabled: boolean;
  readonly host: string | null;
  readonly port: number;
  readonly secure: boolean;
  /** TLS from the first byte (port 465 unless configured) rather than STARTTLS */
  readonly implicitTls: boolean;
  /** extra trusted CAs for the relay's certificate */
  readonly caPem: string | null;
  readonly auth: { readonly username: string; readonly password: Secret; readonly source: string } | null;
}

export interface DeliveryState {
  readonly minRetryDelayMs: number;
  readonly maxRetryDelayMs: number;
  readonly maxLifetimeMs: number;
  readonly concurrency: number;
  /** attempts in flight per destination (recipient domain) */
  readonly destinationConcurrency: number;
  /** bytes of the messages of the attempts in flight, added up, at most (one larger message goes alone) */
  readonly maxBytesInFlight: number;
  /** after a start, the limits grow from one attempt to all of them over this time */
  readonly startupRampMs: number;
  readonly maxReceivedHeaders: number;
  /** resolver addresses for MX lookups; empty = the system's */
  readonly dnsServers: readonly string[];
  readonly dnsTimeoutMs: number;
  readonly mxPort: number;
  readonly connectTimeoutMs: number;
  /** honour recipient domains' MTA-STS policies on direct MX delivery */
  readonly mtaSts: boolean;
}

/** storage.mailboxGroup: as written (a name, or null for a number) and resolved */
export interface MailboxGroup {
  readonly name: string | null;
  readonly gid: number;
}

export interface StorageState {
  readonly dataDir: string;
  /** body bytes held in memory across sessions */
  readonly memoryBudget: number;
  /** the group Maildir folders and files are given to; null = mailplane's own */
  readonly mailboxGroup: MailboxGroup | null;
  /** modes of Maildir files and folders, four octal digits ("0640", "2770") */
  readonly mailboxMode: { readonly files: string; readonly folders: string };
}

/** mailboxes.lmtp.address, parsed: a TCP host and port, or a unix socket */
export type LmtpTarget = { readonly path: string } | { readonly host: string; readonly port: number };

/** mailboxes: where local copies go, and the passwd-file written for Dovecot */
export interface MailboxesState {
  readonly store: 'maildir' | 'lmtp';
  /** null: no LMTP server configured */
  readonly lmtp: LmtpTarget | null;
  /** absolute; null: none written */
  readonly passwdFile: string | null;
}

export interface DkimKey {
  /** one of domains: the From: domain it signs for (d=) */
  readonly domain: string;
  /** lower case (s=) */
  readonly selector: string;
  /** absolute; where the key came from */
  readonly keyFile: string;
  readonly material: DkimKeyMaterial;
}

/** inbound.checks: what is checked on mail from unauthenticated, untrusted mx clients, and what is enforced */
export interface InboundChecks {
  readonly spf: boolean;
  readonly dkim: boolean;
  readonly arc: boolean;
  readonly dmarc: 'enforce' | 'monitor' | 'off';
  readonly ownDomains: 'reject' | 'junk' | 'off';
  /** ASCII, lower case */
  readonly arcTrustedSealers: readonly string[];
}

/** inbound.spamFilter: the Rspamd scanner (password a Secret) */
export interface SpamFilterState {
  readonly type: 'rspamd';
  /** base URL, no trailing slash */
  readonly url: string;
  readonly password: Secret | null;
  readonly timeoutMs: number;
  readonly onError: 'accept' | 'tempfail';
  /** bytes */
  readonly maxSize: number;
  readonly scanSubmissions: boolean;
}

/** dns: what `mailplane dns` derives the records to publish from (no running component reads it) */
export interface DnsState {
  /** ASCII, lower case, in the order written */
  readonly spfInclude: readonly string[];
  readonly dmarc: { readonly policy: 'none' | 'quarantine' | 'reject'; readonly reportAddress: string | null };
  /** as written (its domain lower case); null: none given (the records fall back to dmarc.reportAddress) */
  readonly tlsRptAddress: string | null;
  /** canonical form: IPv6 compressed, IPv4-mapped as IPv4 */
  readonly addresses: readonly string[];
  /** seconds */
  readonly ttl: number;
}

/** mtaSts: the MTA-STS policy of our domains (published by `mailplane dns`, served by the ops endpoint) */
export interface MtaStsState {
  readonly mode: 'none' | 'testing' | 'enforce';
  /** seconds */
  readonly maxAge: number;
}

/** cluster.redis: where the replicas share their abuse counters (password a Secret) */
export interface RedisState {
  /** as written, without a password (the password comes from passwordFile) */
  readonly url: string;
  readonly password: Secret | null;
  readonly timeoutMs: number;
  readonly keyPrefix: string;
}

/** cluster.peers: where this replica's queue goes when it leaves (host lower case) */
export interface PeersState {
  readonly handoff: { readonly host: string; readonly port: number };
  /** the shared secret of peer listeners and the hand-off client (null: exempt clients only) */
  readonly secret: Secret | null;
}

/** cluster: several replicas of this config (null parts: not configured) */
export interface ClusterState {
  readonly redis: RedisState | null;
  readonly peers: PeersState | null;
}

export interface DesiredState {
  /** sha256 over everything the state means, secrets as per-process keyed digests: "did anything change?" */
  readonly hash: string;
  /** the same without anything derived from a secret (only whether each is set): what /status and metrics show */
  readonly publicHash: string;
  readonly configPath: string;
  readonly hostname: string;
  /** ASCII (punycode), lower case; the first is the primary domain */
  readonly domains: readonly string[];
  readonly smtp: SmtpState;
  readonly accounts: AccountsState;
  readonly relay: RelayState;
  readonly delivery: DeliveryState;
  readonly storage: StorageState;
  readonly mailboxes: MailboxesState;
  readonly inbound: { readonly checks: InboundChecks; readonly junkFolder: string; readonly spamFilter: SpamFilterState | null };
  /** the ops endpoint; token: what /status and /-/reload need (null: open, loopback only) */
  readonly observability: { readonly host: string; readonly port: number; readonly token: Secret | null; readonly logAddresses: 'full' | 'redact' };
  /** DKIM keys outbound mail from our domains is signed with (several per domain: several signatures) */
  readonly dkim: { readonly keys: readonly DkimKey[] };
  readonly dns: DnsState;
  readonly mtaSts: MtaStsState;
  readonly cluster: ClusterState;
  /** every file the state depends on, absolute; watched for changes */
  readonly watchedFiles: readonly string[];
}
