// Checks of the smtp block that a schema cannot express: listener uniqueness and
// addresses, TLS files, trusted ranges.
import { createHash, createPublicKey } from 'node:crypto';
import { isIP } from 'node:net';
import { readTlsMaterial, certCovers, TlsError } from '../tls/material.js';
import { coverage, coversMappedV4, formatCidr, isNonPublic, MAX_PUBLIC_V4, openRelayFindings, parseCidr, type Cidr, type OpenRelayFinding } from './cidr.js';
import type { LoadContext } from './context.js';
import type { TlsFiles } from './desired-state.js';
import type { ListenerConfig, SmtpConfig } from './types.generated.js';

const EXPIRY_WARNING_MS = 30 * 86400_000;

/**
 * SHA-256 of the public key (SPKI) of examples/tls/dev.key, the private key published with
 * mailplane for its examples: TLS with it protects nothing.
 */
export const EXAMPLE_KEY_SPKI_SHA256 = '8abfb2c38c5ae9a392c5db838fed139d5e5452801f749a3ca5c7c9aec71ee3ad';

/** Names reserved for documentation and tests (RFC 2606, RFC 6761): a config with one is an example, not a server. */
export function isReservedName(host: string): boolean {
  return /(^|\.)(localhost|example|test|invalid)$/i.test(host) || /(^|\.)example\.(com|net|org)$/i.test(host);
}

function spkiSha256(keyPem: string): string {
  return createHash('sha256')
    .update(createPublicKey(keyPem).export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** A submission listener without TLS never offers AUTH: with auth.required, nobody can send through it but trusted clients. */
export function checkSubmissionLogin(ctx: LoadContext, smtp: SmtpConfig, broken: (prefix: string) => boolean): void {
  if (smtp.enabled === false || smtp.auth?.required === false) return;
  const listeners = Array.isArray(smtp.listeners) ? smtp.listeners : [];
  listeners.forEach((l, i) => {
    if (broken(`smtp.listeners[${i}]`) || l.role !== 'submission' || l.tls !== 'none') return;
    ctx.warn(
      'MP_SUBMISSION_NO_TLS',
      ['smtp', 'listeners', i, 'tls'],
      `submission listener '${l.name}' has no TLS while smtp.auth.required is true: AUTH is offered only inside TLS, so nobody can log in here (only exemptClients and LAN-bypassed clients can send); use tls: starttls or implicit`,
    );
  });
}

export function checkListeners(ctx: LoadContext, listeners: readonly ListenerConfig[], broken: (prefix: string) => boolean): void {
  const names = new Map<string, number>();
  const sockets: { address: string | null; port: number; index: number }[] = [];
  listeners.forEach((l, i) => {
    if (broken(`smtp.listeners[${i}]`)) return;
    const prev = names.get(l.name);
    if (prev !== undefined) ctx.error('MP_DUPLICATE', ['smtp', 'listeners', i, 'name'], `listener name '${l.name}' is already used by smtp.listeners[${prev}]`);
    else names.set(l.name, i);
    const address = l.address ?? null;
    if (address !== null && !isIP(address)) {
      ctx.error('MP_ADDRESS', ['smtp', 'listeners', i, 'address'], `'${address}' is not an IP address (use 0.0.0.0 or :: for all interfaces, or leave it out)`);
      return;
    }
    const clash = sockets.find((s) => s.port === l.port && overlaps(s.address, address));
    if (clash) {
      ctx.error('MP_PORT_CONFLICT', ['smtp', 'listeners', i, 'port'], `port ${l.port} is already used by smtp.listeners[${clash.index}] on ${clash.address ?? 'all interfaces'}`);
    }
    sockets.push({ address, port: l.port, index: i });
  });
}

/** Whether two bind addresses would collide on the same port. */
export function overlaps(a: string | null, b: string | null): boolean {
  const wild = (x: string | null) => x === null || x === '0.0.0.0' || x === '::';
  if (wild(a) || wild(b)) return true;
  return a === b;
}

export function checkTls(ctx: LoadContext, smtp: SmtpConfig, hostname: string): TlsFiles | null {
  const listeners = Array.isArray(smtp.listeners) ? smtp.listeners : [];
  const needing = listeners.findIndex((l) => (l.tls ?? 'starttls') !== 'none');
  if (!smtp.tls) {
    if (needing >= 0 && smtp.enabled !== false) {
      const l = listeners[needing]!;
      const where = l.tls === undefined ? ['smtp', 'listeners', needing] : ['smtp', 'listeners', needing, 'tls'];
      ctx.error('MP_TLS_REQUIRED', where, `listener '${l.name}' uses tls: ${l.tls ?? 'starttls'} but smtp.tls (certFile and keyFile) is not configured`);
    }
    return null;
  }
  const certPem = ctx.readFile(['smtp', 'tls', 'certFile'], smtp.tls.certFile);
  const keyPem = ctx.readFile(['smtp', 'tls', 'keyFile'], smtp.tls.keyFile);
  if (certPem === null || keyPem === null) return null;
  try {
    const material = readTlsMaterial(certPem, keyPem);
    if (material.notAfter <= ctx.now) {
      ctx.error('MP_TLS_EXPIRED', ['smtp', 'tls', 'certFile'], `certificate expired on ${new Date(material.notAfter).toISOString()}`);
    } else if (material.notBefore > ctx.now) {
      ctx.error('MP_TLS_EXPIRED', ['smtp', 'tls', 'certFile'], `certificate is not valid before ${new Date(material.notBefore).toISOString()}`);
    } else if (material.notAfter - ctx.now < EXPIRY_WARNING_MS) {
      const days = Math.floor((material.notAfter - ctx.now) / 86400_000);
      ctx.warn('MP_TLS_EXPIRING', ['smtp', 'tls', 'certFile'], `certificate expires in ${days} day${days === 1 ? '' : 's'} (${new Date(material.notAfter).toISOString()})`);
    }
    if (!certCovers(material.names, hostname)) {
      ctx.warn('MP_TLS_NAME', ['smtp', 'tls', 'certFile'], `certificate names (${material.names.join(', ') || 'none'}) do not include hostname ${hostname}`);
    }
    if (!isReservedName(hostname) && spkiSha256(keyPem) === EXAMPLE_KEY_SPKI_SHA256) {
      ctx.warn(
        'MP_TLS_EXAMPLE_KEY',
        ['smtp', 'tls', 'keyFile'],
        `this is the example key published with mailplane (examples/tls/dev.key): anyone can read or impersonate this server's TLS; use a key of your own (Let's Encrypt, cert-manager)`,
      );
    }
    return { certFile: ctx.resolvePath(smtp.tls.certFile), keyFile: ctx.resolvePath(smtp.tls.keyFile), material };
  } catch (e) {
    if (!(e instanceof TlsError)) throw e;
    ctx.error('MP_TLS_FILE', ['smtp', 'tls', e.which === 'cert' ? 'certFile' : 'keyFile'], e.message);
    return null;
  }
}

/** One parsed entry of exemptClients or lanNetworks, with where it was written. */
export interface TrustedEntry {
  readonly key: 'exemptClients' | 'lanNetworks';
  readonly index: number;
  /** as written */
  readonly text: string;
  readonly cidr: Cidr;
}

/** Parses exemptClients or lanNetworks; whether they are safe to trust is checkTrusted's call. */
export function checkRanges(ctx: LoadContext, key: 'exemptClients' | 'lanNetworks', list: readonly string[], broken: (prefix: string) => boolean): TrustedEntry[] {
  const out: TrustedEntry[] = [];
  list.forEach((raw, index) => {
    if (broken(`smtp.auth.${key}[${index}]`) || typeof raw !== 'string') return;
    const path = ['smtp', 'auth', key, index];
    const text = raw.trim();
    let cidr: Cidr;
    try {
      cidr = parseCidr(text);
    } catch (e) {
      ctx.error('MP_CIDR', path, (e as Error).message);
      return;
    }
    if (cidr.hostBitsSet) ctx.warn('MP_CIDR', path, `'${text}' has host bits set; it means ${formatCidr(cidr)}`);
    out.push({ key, index, text, cidr });
  });
  return out;
}

/**
 * The open-relay check. Trusted clients relay without AUTH, so what matters is everything they
 * cover together: exemptClients and, when lanBypass is on, lanNetworks. It is an error
 * (MP_OPEN_RELAY) when that covers all of IPv4 or all of IPv6 — IPv4-mapped IPv6 counting as
 * IPv4 — or more public space than one organisation's network can be: more than a /8 of public
 * IPv4 (MAX_PUBLIC_V4) or more than a /32 of public IPv6 (MAX_PUBLIC_V6), overlaps counted once.
 * Every entry that is too much on its own is reported at itself; a combination of entries that
 * are each fine is reported at the entry that takes it over the line. Any other range with public
 * addresses gets the warning MP_PUBLIC_RANGE. With lanBypass off, lanNetworks trusts no one and
 * its problems are warnings (turning lanBypass on would then be refused).
 */
export function checkTrusted(ctx: LoadContext, exempt: readonly TrustedEntry[], lan: readonly TrustedEntry[], lanBypass: boolean): void {
  const judged = lanBypass ? [...exempt, ...lan] : [...exempt];
  const verdict = judgeTrusted(judged);
  const flagged = new Set<TrustedEntry>();
  for (const [e, findings] of verdict.alone) {
    if (findings.length) ctx.error('MP_OPEN_RELAY', pathOf(e), `${aloneText(e, findings)}, which would make this server an open relay; ${FIX}`);
    flagged.add(e);
  }
  for (const u of verdict.together) {
    ctx.error('MP_OPEN_RELAY', pathOf(u.culprit), `${togetherText(u.findings, u.contributors)}, which would make this server an open relay; ${FIX}`);
    flagged.add(u.culprit);
  }
  if (!lanBypass && lan.length) {
    // what turning lanBypass on would be refused for, said now
    const hypothetical = judgeTrusted([...exempt, ...lan]);
    for (const [e, findings] of hypothetical.alone) {
      if (e.key !== 'lanNetworks') continue;
      if (findings.length) ctx.warn('MP_PUBLIC_RANGE', pathOf(e), `${OFF}${aloneText(e, findings)}, which would make this server an open relay; ${FIX}`);
      flagged.add(e);
    }
    for (const u of hypothetical.together) {
      if (u.culprit.key !== 'lanNetworks') continue;
      ctx.warn('MP_PUBLIC_RANGE', pathOf(u.culprit), `${OFF}${togetherText(u.findings, u.contributors)}, which would make this server an open relay; ${FIX}`);
      flagged.add(u.culprit);
    }
  }
  for (const e of [...exempt, ...lan]) {
    if (flagged.has(e) || isNonPublic(e.cidr)) continue;
    const trusted = e.key === 'exemptClients' || lanBypass ? 'clients there are trusted' : 'with lanBypass on, clients there would be trusted';
    ctx.warn('MP_PUBLIC_RANGE', pathOf(e), `'${e.text}' contains public addresses; ${trusted} to relay without AUTH`);
  }
}

const FIX = 'list only your own networks';
const OFF = 'lanBypass is off, so lanNetworks trusts no one now, but once it is on: ';

export interface TrustedVerdict {
  /** entries that are too much on their own (an empty list: only as the end of a combination, in together) */
  readonly alone: ReadonlyMap<TrustedEntry, readonly OpenRelayFinding[]>;
  /** what the entries cover together and no single entry explains, at the entry that takes it over */
  readonly together: readonly { readonly culprit: TrustedEntry; readonly findings: readonly OpenRelayFinding[]; readonly contributors: readonly TrustedEntry[] }[];
}

/** The open-relay judgement of trusted entries, in the order they are written. */
export function judgeTrusted(entries: readonly TrustedEntry[]): TrustedVerdict {
  const alone = new Map<TrustedEntry, OpenRelayFinding[]>();
  for (const e of entries) {
    const f = openRelayFindings(coverage([e.cidr]));
    if (f.length) alone.set(e, f);
  }
  const together: { culprit: TrustedEntry; findings: OpenRelayFinding[]; contributors: TrustedEntry[] }[] = [];
  const same = (f: OpenRelayFinding, g: OpenRelayFinding) => f.family === g.family && f.kind === g.kind;
  const add = (list: readonly TrustedEntry[], f: OpenRelayFinding) => {
    // The findings only grow as entries are added: the first prefix that has this one.
    let lo = 1;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (has(list.slice(0, mid), f)) hi = mid;
      else lo = mid + 1;
    }
    const culprit = list[lo - 1]!;
    const contributors = list.slice(0, lo).filter((e) => contributes(e.cidr, f));
    const u = together.find((x) => x.culprit === culprit);
    if (!u) return void together.push({ culprit, findings: [f], contributors });
    // one message per entry, one finding per family: all of a family says more than a count of it
    if (!u.findings.some((g) => g.family === f.family && (g.kind === 'all' || f.kind === 'public'))) u.findings = [...u.findings.filter((g) => g.family !== f.family), f];
    u.contributors = entries.filter((e) => u.contributors.includes(e) || contributors.includes(e));
  };
  // Entries that are fine alone but not together (each too much alone is reported at itself)...
  const rest = entries.filter((e) => !alone.has(e));
  const fromRest = openRelayFindings(coverage(rest.map((e) => e.cidr)));
  for (const f of fromRest) add(rest, f);
  // ...and what everything covers that neither says ([0.0.0.0/1, 128.0.0.0/1]: all of IPv4).
  for (const f of openRelayFindings(coverage(entries.map((e) => e.cidr)))) {
    if (fromRest.some((g) => same(f, g)) || [...alone.values()].some((list) => list.some((g) => same(f, g)))) continue;
    add(entries, f);
  }
  // At the entry that completes a combination, what they cover together says it all for that
  // family (0.0.0.0/1 + 128.0.0.0/1: all of IPv4, rather than 128.0.0.0/1 being half of it).
  for (const u of together) {
    const own = alone.get(u.culprit);
    if (own)
      alone.set(
        u.culprit,
        own.filter((f) => !u.findings.some((g) => g.family === f.family)),
      );
  }
  return { alone, together };
}

function has(entries: readonly TrustedEntry[], f: OpenRelayFinding): boolean {
  return openRelayFindings(coverage(entries.map((e) => e.cidr))).some((g) => g.family === f.family && g.kind === f.kind);
}

/** Whether a range adds to a finding: any space of the family for 'all', public space for 'public'. */
function contributes(c: Cidr, f: OpenRelayFinding): boolean {
  const cov = coverage([c]);
  if (f.kind === 'all') return (f.family === 4 ? cov.v4 : cov.v6).length > 0;
  return (f.family === 4 ? cov.publicV4 : cov.publicV6) > 0n;
}

function pathOf(e: TrustedEntry): (string | number)[] {
  return ['smtp', 'auth', e.key, e.index];
}

/** "'1.0.0.0/7' trusts 33,554,432 public IPv4 addresses: more than a /8 (…)" */
function aloneText(e: TrustedEntry, findings: readonly OpenRelayFinding[]): string {
  const c = e.cidr;
  const writtenMapped = c.family === 4 && e.text.includes(':');
  // the message of a literal 0.0.0.0/0 or ::/0 stays what it always was
  if (c.prefix === 0 && !writtenMapped) return `'${e.text}' trusts every address on the internet`;
  const whats = findings.map((f) => {
    let note = '';
    if (f.family === 4 && writtenMapped) note = ` (it is the IPv4-mapped form of ${formatCidr(c)}, and a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d)`;
    else if (f.family === 4 && coversMappedV4(c)) note = ` (it contains ::ffff:0:0/96, where a dual-stack listener sees every IPv4 client as ::ffff:a.b.c.d)`;
    return `${what(f)}${note}`;
  });
  return `'${e.text}' trusts ${whats.join(' and ')}${whys(findings)}`;
}

/** "the trusted ranges together cover all of IPv4 (0.0.0.0/1 + 128.0.0.0/1)" */
function togetherText(findings: readonly OpenRelayFinding[], contributors: readonly TrustedEntry[]): string {
  const mixed = new Set(contributors.map((e) => e.key)).size > 1;
  const shown = contributors.length > 6 ? contributors.slice(0, 5) : contributors;
  let list = shown.map((e) => (mixed ? `${e.key} ${e.text}` : e.text)).join(' + ');
  if (shown.length < contributors.length) list += ` + ${contributors.length - shown.length} more`;
  return `the trusted ranges together cover ${findings.map(what).join(' and ')} (${list})${whys(findings)}`;
}

function what(f: OpenRelayFinding): string {
  if (f.kind === 'all') return `all of IPv${f.family}`;
  if (f.family === 4) return `${f.count.toLocaleString('en-US')} public IPv4 addresses`;
  const bits = f.count.toString(2).length - 1;
  return `${f.count === 1n << BigInt(bits) ? '' : 'more than '}2^${bits} public IPv6 addresses`;
}

/** Why a count is too much: the threshold and what it stands for. */
function whys(findings: readonly OpenRelayFinding[]): string {
  const out = findings
    .filter((f) => f.kind === 'public')
    .map((f) =>
      f.family === 4
        ? `more than a /8 (${MAX_PUBLIC_V4.toLocaleString('en-US')} addresses), the largest block ever assigned to one organisation`
        : 'more than a /32 (2^96 addresses), the allocation of a whole ISP',
    );
  return out.length ? `: ${out.join('; ')}` : '';
}
