// The only code that turns the (schema-checked, defaulted) raw config into DesiredState:
// units parsed, paths resolved, secrets wrapped, content hashes over everything, deep-frozen.
import { createHash } from 'node:crypto';
import { domainToASCII } from 'node:url';
import { canonical, type SecretMode } from './canonical.js';
import type { Cidr } from './cidr.js';
import type {
  AccountsState,
  ClusterState,
  DeliveryState,
  DesiredState,
  MailboxesState,
  DnsState,
  MtaStsState,
  InboundChecks,
  SpamFilterState,
  DkimKey,
  LdapSettings,
  LocalUser,
  MailboxGroup,
  RelayState,
  StorageState,
  TlsFiles,
} from './desired-state.js';
import type { InboundConfig, MailserverConfig, StorageConfig } from './types.generated.js';
import type { Secret } from './secret.js';
import { parseDuration, parseSize } from './units.js';

export interface Resolved {
  readonly configPath: string;
  readonly hostname: string;
  readonly domains: readonly string[];
  readonly tls: TlsFiles | null;
  readonly exemptClients: readonly Cidr[];
  readonly lanNetworks: readonly Cidr[];
  readonly local: { users: readonly LocalUser[]; usersFile: string | null } | null;
  readonly ldap: LdapSettings | null;
  readonly relay: RelayState;
  readonly delivery: DeliveryState;
  readonly listen: { host: string; port: number; token: Secret | null };
  readonly dataDir: string;
  /** storage.mailboxGroup resolved to its gid */
  readonly mailboxGroup: MailboxGroup | null;
  readonly dkim: readonly DkimKey[];
  /** mailboxes, checked (check-mailboxes.ts) */
  readonly mailboxes: MailboxesState;
  readonly spamFilter: SpamFilterState | null;
  /** dns and mtaSts, checked (check-dns.ts) */
  readonly dns: DnsState;
  readonly mtaSts: MtaStsState;
  /** cluster, checked (check-cluster.ts) */
  readonly cluster: ClusterState;
  /** absolute path → content of every referenced file */
  readonly files: ReadonlyMap<string, string>;
}

export function normalize(cfg: MailserverConfig, r: Resolved): DesiredState {
  const smtp = cfg.smtp!;
  const auth = smtp.auth!;
  const limits = smtp.limits!;
  const accounts: AccountsState = cfg.accounts!.type === 'ldap' ? { type: 'ldap', ldap: r.ldap! } : { type: 'local', users: r.local?.users ?? [], usersFile: r.local?.usersFile ?? null };
  const body = {
    configPath: r.configPath,
    hostname: r.hostname,
    domains: r.domains,
    smtp: {
      enabled: smtp.enabled!,
      maxMessageSize: parseSize(smtp.maxMessageSize!),
      tls: r.tls,
      listeners: smtp.listeners!.map((l) => ({
        name: l.name,
        port: l.port,
        address: l.address ?? null,
        role: l.role,
        tls: l.tls!,
        proxyProtocol: l.proxyProtocol!,
      })),
      auth: {
        required: auth.required!,
        exemptClients: r.exemptClients,
        lanBypass: auth.lanBypass!,
        lanNetworks: r.lanNetworks,
        maxFailures: auth.maxFailures!,
        failureWindowMs: parseDuration(auth.failureWindow!),
        lockoutMs: parseDuration(auth.lockoutDuration!),
      },
      limits: {
        maxRecipients: limits.maxRecipients!,
        maxLineLength: limits.maxLineLength!,
        maxConnections: limits.maxConnections!,
        maxConnectionsPerClient: limits.maxConnectionsPerClient!,
        idleTimeoutMs: parseDuration(limits.idleTimeout!),
        commandTimeoutMs: parseDuration(limits.commandTimeout!),
        dataTimeoutMs: parseDuration(limits.dataTimeout!),
        sendRate: { messages: limits.sendRate!.messages!, recipients: limits.sendRate!.recipients!, windowMs: parseDuration(limits.sendRate!.window!) },
        rejectedRecipients: {
          delayAfter: limits.rejectedRecipients!.delayAfter!,
          delayMs: parseDuration(limits.rejectedRecipients!.delay!),
          disconnectAfter: limits.rejectedRecipients!.disconnectAfter!,
          windowMs: parseDuration(limits.rejectedRecipients!.window!),
        },
      },
      drainGraceMs: parseDuration(smtp.drainGrace!),
    },
    accounts,
    relay: r.relay,
    delivery: r.delivery,
    storage: storageState(cfg.storage!, r),
    mailboxes: r.mailboxes,
    inbound: inboundState(cfg.inbound!, r.spamFilter),
    observability: { ...r.listen, logAddresses: cfg.observability!.logAddresses! },
    dkim: { keys: r.dkim },
    dns: r.dns,
    mtaSts: r.mtaSts,
    cluster: r.cluster,
    watchedFiles: [r.configPath, ...[...r.files.keys()].sort()],
  };
  const { configPath: _c, watchedFiles: _w, ...meaning } = body;
  return deepFreeze({ hash: contentHash(meaning, 'digest'), publicHash: contentHash(meaning, 'presence'), ...body });
}

function inboundState(i: InboundConfig, spamFilter: SpamFilterState | null): { checks: InboundChecks; junkFolder: string; spamFilter: SpamFilterState | null } {
  const c = i.checks!;
  const sealers = c.arcTrustedSealers!.map((d) => domainToASCII(d.replace(/\.$/, '')).toLowerCase() || d.toLowerCase());
  return { checks: { spf: c.spf!, dkim: c.dkim!, arc: c.arc!, dmarc: c.dmarc!, ownDomains: c.ownDomains!, arcTrustedSealers: [...new Set(sealers)].sort() }, junkFolder: i.junkFolder!, spamFilter };
}

/** Modes default to mailplane's private ones, or to group access when there is a group. */
function storageState(s: StorageConfig, r: Resolved): StorageState {
  const group = r.mailboxGroup;
  const mode = (v: string | undefined, plain: string, shared: string) => (parseInt(v ?? (group ? shared : plain), 8) & 0o7777).toString(8).padStart(4, '0');
  return {
    dataDir: r.dataDir,
    memoryBudget: parseSize(s.memoryBudget!),
    mailboxGroup: group,
    mailboxMode: { files: mode(s.mailboxMode?.files, '0600', '0640'), folders: mode(s.mailboxMode?.folders, '0700', '2770') },
  };
}

/**
 * sha256 over everything the state means (referenced files enter parsed: certificates as their
 * PEM, users as name, hash and aliases, so a reformatted file is no change). With 'digest' every
 * secret enters as its per-process keyed digest (a change of a password changes the hash); with
 * 'presence' only whether it is set: the hash that may be published.
 */
function contentHash(meaning: object, secrets: SecretMode): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(meaning, secrets)))
    .digest('hex');
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v as object)) deepFreeze(child);
  }
  return v;
}
