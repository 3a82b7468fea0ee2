// The only code that turns the (schema-checked, defaulted) raw config into DesiredState:
// units parsed, paths resolved, secrets wrapped, a content hash over everything, deep-frozen.
import { createHash } from 'node:crypto';
import type { Cidr } from './cidr.js';
import type { AccountsState, DeliveryState, DesiredState, LdapSettings, LocalUser, RelayState, TlsFiles } from './desired-state.js';
import { Secret } from './secret.js';
import type { MailserverConfig } from './types.generated.js';
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
  readonly listen: { host: string; port: number };
  readonly dataDir: string;
  /** absolute path → content of every referenced file */
  readonly files: ReadonlyMap<string, string>;
  /** of those, the files holding raw passwords (covered by their Secret's digest) */
  readonly secretFiles: ReadonlySet<string>;
}

export function normalize(cfg: MailserverConfig, r: Resolved): DesiredState {
  const smtp = cfg.smtp!;
  const auth = smtp.auth!;
  const limits = smtp.limits!;
  const accounts: AccountsState =
    cfg.accounts!.type === 'ldap'
      ? { type: 'ldap', ldap: r.ldap! }
      : { type: 'local', users: r.local?.users ?? [], usersFile: r.local?.usersFile ?? null };
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
      },
      drainGraceMs: parseDuration(smtp.drainGrace!),
    },
    accounts,
    relay: r.relay,
    delivery: r.delivery,
    storage: { dataDir: r.dataDir, memoryBudget: parseSize(cfg.storage!.memoryBudget!) },
    observability: r.listen,
    watchedFiles: [r.configPath, ...[...r.files.keys()].sort()],
  };
  const hash = contentHash(body, r.files, r.secretFiles);
  return deepFreeze({ hash, ...body });
}

/** sha256 over the normalized state and referenced file contents; secrets enter only as their digests. */
function contentHash(body: object, files: ReadonlyMap<string, string>, skip: ReadonlySet<string>): string {
  const h = createHash('sha256');
  const { configPath: _c, watchedFiles: _w, ...meaning } = body as { configPath?: unknown; watchedFiles?: unknown };
  h.update(JSON.stringify(withDigests(meaning)));
  for (const [path, text] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    if (skip.has(path)) continue;
    h.update(`\0${path}\0`).update(createHash('sha256').update(text).digest());
  }
  return h.digest('hex');
}

/** A copy where every Secret is its digest (JSON.stringify alone would see only "[redacted]"). */
function withDigests(v: unknown): unknown {
  if (v instanceof Secret) return { secret: v.digest() };
  if (Array.isArray(v)) return v.map(withDigests);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withDigests(x)]));
  return v;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v as object)) deepFreeze(child);
  }
  return v;
}
