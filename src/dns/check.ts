// `mailplane dns check`: every expected record looked up in live DNS and compared the way a
// receiver reads it (TXT character-strings joined; SPF terms, DMARC and TLS-RPT tags compared
// as values, not as text), and what only DNS can break: the DKIM key in DNS is ours, SPF stays
// within its 10 DNS lookups, the MX host name resolves.
import type { promises as dns } from 'node:dns';
import { fqdn, quote, rdata, type AddressRecord, type DnsRecord, type DnsRecords, type SrvRecord, type TxtRecord } from './records.js';

export type CheckStatus = 'ok' | 'missing' | 'different' | 'fail' | 'error';

export interface CheckResult {
  readonly status: CheckStatus;
  /** the record type looked up, or the name of a derived check: SPF-LOOKUPS, MX-HOST */
  readonly type: string;
  readonly name: string;
  readonly purpose: DnsRecord['purpose'] | 'spf-lookups' | 'mx-host';
  /** PTR advice: reported, never fails the check */
  readonly advice: boolean;
  /** one sentence for people */
  readonly message: string;
  /** presentation form, as in the zone output */
  readonly expected: readonly string[];
  readonly found: readonly string[];
}

/** RFC 7208 section 4.6.4: SPF evaluation may cause at most 10 DNS lookups. */
export const SPF_LOOKUP_LIMIT = 10;

type Lookup<T> = { readonly kind: 'found'; readonly value: T } | { readonly kind: 'none' } | { readonly kind: 'error'; readonly message: string };

/** A lookup, with NXDOMAIN and NODATA as none, and anything else (timeout, SERVFAIL, refused) as an error. */
async function lookup<T>(q: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { kind: 'found', value: await q() };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return { kind: 'none' };
    return { kind: 'error', message: `the lookup failed (${code ?? (e as Error).message})` };
  }
}

const bare = (n: string) => n.replace(/\.$/, '').toLowerCase();

/** The TXT records at a name, each its character-strings joined (what SPF, DKIM, DMARC read). */
async function txt(resolver: dns.Resolver, name: string): Promise<Lookup<string[]>> {
  const r = await lookup(() => resolver.resolveTxt(name));
  return r.kind === 'found' ? { kind: 'found', value: r.value.map((chunks) => chunks.join('')) } : r;
}

/** Runs every check; results in the order of the records, derived checks after the records they concern. */
export async function checkRecords(set: DnsRecords, resolver: dns.Resolver): Promise<CheckResult[]> {
  const txtCache = new Map<string, Promise<Lookup<string[]>>>();
  const txtAt = (name: string) => {
    let p = txtCache.get(name);
    if (!p) txtCache.set(name, (p = txt(resolver, name)));
    return p;
  };
  const jobs: Promise<CheckResult[]>[] = [];
  const addressRecords = set.records.filter((x): x is AddressRecord => x.type === 'A' || x.type === 'AAAA');
  for (const r of set.records) {
    switch (r.type) {
      case 'MX':
        jobs.push(checkMx(resolver, r.name, r.exchange, r).then((x) => [x]));
        break;
      case 'TXT':
        jobs.push(
          checkTxt(txtAt, r).then(async ({ check, mine }) =>
            r.purpose === 'spf' || r.purpose === 'spf-host' ? [check, await checkSpfLookups(txtAt, r, mine.length === 1 ? mine[0]! : null)] : [check],
          ),
        );
        break;
      case 'SRV':
        jobs.push(checkSrv(resolver, r).then((x) => [x]));
        break;
      case 'A':
      case 'AAAA':
        // one check per RRset: the first record of the set stands for all of it
        if (addressRecords.find((a) => a.type === r.type) === r) {
          jobs.push(
            checkAddresses(
              resolver,
              r.name,
              r.type,
              addressRecords.filter((a) => a.type === r.type).map((a) => a.address),
              r,
            ).then((x) => [x]),
          );
        }
        break;
      case 'PTR':
        jobs.push(checkPtr(resolver, r.name, r.target, r.address, r).then((x) => [x]));
        break;
    }
  }
  jobs.push(checkMxHost(resolver, set.hostname).then((x) => [x]));
  return (await Promise.all(jobs)).flat();
}

function result(r: Pick<DnsRecord, 'name' | 'type' | 'purpose' | 'advice'>, status: CheckStatus, message: string, expected: string[], found: string[]): CheckResult {
  return { status, type: r.type, name: r.name, purpose: r.purpose, advice: r.advice, message, expected, found };
}

async function checkMx(resolver: dns.Resolver, name: string, exchange: string, r: DnsRecord): Promise<CheckResult> {
  const expected = [rdata(r)];
  const got = await lookup(() => resolver.resolveMx(name));
  if (got.kind === 'error') return result(r, 'error', `MX: ${got.message}`, expected, []);
  if (got.kind === 'none' || got.value.length === 0) return result(r, 'missing', 'MX: no MX record: mail for the domain goes to its A record, if any', expected, []);
  const found = got.value.sort((a, b) => a.priority - b.priority).map((m) => `${m.priority} ${fqdn(m.exchange || '.')}`);
  const hosts = new Set(got.value.map((m) => bare(m.exchange)));
  if (hosts.size === 1 && hosts.has(exchange)) return result(r, 'ok', `MX: ${exchange}`, expected, found);
  const others = [...hosts].filter((h) => h !== exchange).map((h) => h || 'a null MX');
  const why =
    hosts.has('') && hosts.size === 1
      ? `${name} publishes a null MX (RFC 7505): it says it takes no mail`
      : hosts.has(exchange)
        ? `other hosts receive mail for ${name} too (${others.join(', ')})`
        : `mail for ${name} goes elsewhere`;
  return result(r, 'different', `MX: ${why}`, expected, found);
}

/** Tag=value list (DKIM, DMARC, MTA-STS, TLS-RPT): tag names lower case, values trimmed. */
function tags(value: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of value.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    out.set(part.slice(0, i).trim().toLowerCase(), part.slice(i + 1).trim());
  }
  return out;
}

/** The records of the kind a TXT check looks at, among all TXT records at the name. */
function ofKind(purpose: TxtRecord['purpose'], value: string): boolean {
  const v = value.trim();
  switch (purpose) {
    case 'spf':
    case 'spf-host':
      return /^v=spf1(\s|$)/i.test(v);
    case 'dkim':
      return /^v=DKIM1\s*(;|$)/.test(v) || (!/^v=/i.test(v) && tags(v).has('p'));
    case 'dmarc':
    case 'dmarc-report-auth':
      return /^v\s*=\s*DMARC1\s*(;|$)/.test(v);
    case 'mta-sts':
      return /^v\s*=\s*STSv1\s*(;|$)/.test(v);
    case 'tls-rpt':
      return /^v\s*=\s*TLSRPTv1\s*(;|$)/.test(v);
    default:
      return true;
  }
}

const KIND: Partial<Record<DnsRecord['purpose'], string>> = {
  spf: 'SPF',
  'spf-host': 'SPF of the host name',
  dkim: 'DKIM',
  dmarc: 'DMARC',
  'dmarc-report-auth': 'DMARC report authorization',
  'mta-sts': 'MTA-STS',
  'tls-rpt': 'TLS-RPT',
};

/** SPF terms as a receiver reads them: lower case, the all term last, order of the others ignored. */
function spfTerms(v: string): string {
  const terms = v.trim().toLowerCase().split(/\s+/).slice(1);
  const all = terms.filter((t) => /^[+\-~?]?all$/.test(t));
  const rest = terms.filter((t) => !all.includes(t)).map((t) => t.replace(/^\+/, ''));
  return [...new Set(rest)].sort().concat(all).join(' ');
}

/** DMARC tags with their defaults (RFC 7489 section 6.3) left out, so that spelling a default out is no difference. */
function dmarcTags(v: string): string {
  const t = tags(v);
  const defaults: Record<string, string> = { pct: '100', adkim: 'r', aspf: 'r', fo: '0', rf: 'afrf', ri: '86400' };
  for (const [k, d] of Object.entries(defaults)) if (t.get(k)?.toLowerCase() === d) t.delete(k);
  if (t.get('sp') !== undefined && t.get('sp')?.toLowerCase() === t.get('p')?.toLowerCase()) t.delete('sp');
  return [...t]
    .map(([k, x]) => `${k}=${k === 'rua' || k === 'ruf' ? uris(x) : x.toLowerCase()}`)
    .sort()
    .join('; ');
}

/** A list of report URIs, compared case-insensitively and in any order. */
function uris(v: string): string {
  return v
    .split(',')
    .map((u) => u.trim().toLowerCase())
    .sort()
    .join(',');
}

function same(purpose: TxtRecord['purpose'], expected: string, found: string): boolean {
  switch (purpose) {
    case 'spf':
    case 'spf-host':
      return spfTerms(expected) === spfTerms(found);
    case 'dmarc':
      return dmarcTags(expected) === dmarcTags(found);
    case 'dmarc-report-auth':
      return true;
    case 'mta-sts':
      return tags(expected).get('id') === tags(found).get('id');
    case 'tls-rpt':
      return uris(tags(expected).get('rua') ?? '') === uris(tags(found).get('rua') ?? '');
    default:
      return expected === found;
  }
}

/** The p= of a DKIM record without the whitespace a split or a line break may leave in it. */
function dkimKey(value: string): string {
  return (tags(value).get('p') ?? '').replace(/\s+/g, '');
}

/** The comparison, and the records of its kind found (the SPF lookup count reads the published one). */
async function checkTxt(txtAt: (name: string) => Promise<Lookup<string[]>>, r: TxtRecord): Promise<{ check: CheckResult; mine: string[] }> {
  const got = await txtAt(r.name);
  const all = got.kind === 'found' ? got.value : [];
  const mine = all.filter((v) => ofKind(r.purpose, v));
  return { check: compareTxt(r, got, all, mine), mine };
}

function compareTxt(r: TxtRecord, got: Lookup<string[]>, all: string[], mine: string[]): CheckResult {
  const kind = KIND[r.purpose] ?? 'TXT';
  const expected = [quote(r.value)];
  if (got.kind === 'error') return result(r, 'error', `${kind}: ${got.message}`, expected, []);
  const found = mine.map(quote);
  if (!mine.length) {
    const other = all.length ? ` (${all.length} other TXT record${all.length === 1 ? '' : 's'} there)` : '';
    return result(r, 'missing', `${kind}: no record${other}`, expected, all.map(quote));
  }
  if (r.purpose === 'dkim') {
    const ours = r.dkim!.publicKey;
    const match = mine.find((v) => dkimKey(v) === ours);
    if (match) {
      const kTag = (tags(match).get('k') ?? 'rsa').toLowerCase();
      const want = r.dkim!.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa';
      if (kTag !== want) return result(r, 'different', `DKIM: our key is published with k=${kTag}; it is an ${want} key`, expected, found);
      return result(r, 'ok', `DKIM: our key (${r.dkim!.fingerprint})`, expected, [quote(match)]);
    }
    const revoked = mine.some((v) => dkimKey(v) === '');
    const msg = revoked ? 'the key in DNS is revoked (empty p=)' : `the key in DNS is not the key of ${r.dkim!.selector} in dkim.keys (ours is ${r.dkim!.fingerprint}): receivers fail our signatures`;
    return result(r, 'different', `DKIM: ${msg}`, expected, found);
  }
  if (mine.length > 1 && r.purpose !== 'dmarc-report-auth') {
    return result(r, 'different', `${kind}: ${mine.length} records where there must be one: receivers treat that as an error`, expected, found);
  }
  if (same(r.purpose, r.value, mine[0]!)) return result(r, 'ok', kind, expected, found);
  return result(r, 'different', `${kind}: the record differs`, expected, found);
}

/**
 * SPF's 10-lookup limit over the published record (the expected one when none is published
 * yet): include, a, mx, ptr and exists mechanisms and the redirect modifier count, and the
 * records include and redirect name count with all their own.
 */
async function checkSpfLookups(txtAt: (name: string) => Promise<Lookup<string[]>>, r: TxtRecord, published: string | null): Promise<CheckResult> {
  const record = published ?? r.value;
  const base = { name: r.name, type: 'SPF-LOOKUPS', purpose: 'spf-lookups' as const, advice: false, expected: [`at most ${SPF_LOOKUP_LIMIT} DNS lookups`] };
  const problems: string[] = [];
  const failures: string[] = [];
  const parts: string[] = [];
  let count = 0;
  const walk = async (domain: string, text: string, depth: number, seen: Set<string>): Promise<void> => {
    const terms = text.trim().split(/\s+/).slice(1);
    const hasAll = terms.some((t) => /^[+\-~?]?all$/i.test(t));
    for (const term of terms) {
      if (count > SPF_LOOKUP_LIMIT) return; // over already: receivers stop here too
      const t = term.replace(/^[+\-~?]/, '').toLowerCase();
      const mech = t.match(/^(include|a|mx|ptr|exists)(?:$|[:/])(?:([^/]*))?/);
      const redirect = t.match(/^redirect=(.+)$/);
      if (!mech && !(redirect && !hasAll)) continue;
      const before = count;
      count++;
      const target = mech?.[1] === 'include' ? (mech[2] ?? '') : redirect ? redirect[1]! : null;
      if (target !== null && target !== '' && !target.includes('%')) {
        const next = bare(target);
        if (seen.has(next) || depth >= SPF_LOOKUP_LIMIT) {
          problems.push(`${term} in ${domain} loops`);
        } else {
          const got = await txtAt(next);
          const spf = got.kind === 'found' ? got.value.filter((v) => /^v=spf1(\s|$)/i.test(v.trim())) : [];
          if (got.kind === 'error') failures.push(`${term}: ${got.message}`);
          else if (spf.length !== 1) problems.push(`${term}: ${next} has ${spf.length ? `${spf.length} SPF records` : 'no SPF record'} (a permanent error for receivers)`);
          else await walk(next, spf[0]!, depth + 1, new Set([...seen, next]));
        }
      }
      if (depth === 0) parts.push(`${term} ${count - before}`);
    }
  };
  await walk(r.name, record, 0, new Set([r.name]));
  const which = published ? 'the published SPF record' : 'the expected SPF record (none is published)';
  const found = [`${count > SPF_LOOKUP_LIMIT ? `more than ${SPF_LOOKUP_LIMIT}` : count} lookups${parts.length ? `: ${parts.join(', ')}` : ''}`];
  if (count > SPF_LOOKUP_LIMIT) {
    return { ...base, status: 'fail', message: `SPF: ${which} needs more than ${SPF_LOOKUP_LIMIT} DNS lookups: receivers give up with permerror, and SPF fails for all our mail`, found };
  }
  if (problems.length) return { ...base, status: 'fail', message: `SPF: ${which}: ${problems.join('; ')}`, found };
  if (failures.length) return { ...base, status: 'error', message: `SPF: ${which}: ${failures.join('; ')}`, found };
  return { ...base, status: 'ok', message: `SPF: ${count} of ${SPF_LOOKUP_LIMIT} DNS lookups${published ? '' : ' (of the expected record: none is published)'}`, found };
}

async function checkSrv(resolver: dns.Resolver, r: SrvRecord): Promise<CheckResult> {
  const expected = [rdata(r)];
  const got = await lookup(() => resolver.resolveSrv(r.name));
  if (got.kind === 'error') return result(r, 'error', `SRV: ${got.message}`, expected, []);
  if (got.kind === 'none' || !got.value.length) return result(r, 'missing', 'SRV: no record: mail clients cannot find the service', expected, []);
  const found = got.value.map((s) => `${s.priority} ${s.weight} ${s.port} ${fqdn(s.name || '.')}`);
  const target = (n: string) => (n === '' || n === '.' ? '.' : bare(n));
  const ok = got.value.length === 1 && got.value[0]!.port === r.port && target(got.value[0]!.name) === target(r.target);
  if (ok) return result(r, 'ok', `SRV: ${r.target === '.' ? 'the service is not offered' : `port ${r.port} on ${r.target}`}`, expected, found);
  const want = r.target === '.' ? 'the "not offered" form (0 0 0 .): the config has no such listener' : `port ${r.port} on ${r.target}`;
  return result(r, 'different', `SRV: expected ${want}`, expected, found);
}

async function checkAddresses(resolver: dns.Resolver, name: string, type: 'A' | 'AAAA', addresses: string[], r: DnsRecord): Promise<CheckResult> {
  const got = await lookup(() => (type === 'A' ? resolver.resolve4(name) : resolver.resolve6(name)));
  const expected = [...addresses].sort();
  if (got.kind === 'error') return result(r, 'error', `${type}: ${got.message}`, expected, []);
  if (got.kind === 'none' || !got.value.length) return result(r, 'missing', `${type}: ${name} has no ${type} record`, expected, []);
  const found = [...got.value].sort();
  const ok = found.length === expected.length && found.every((a, i) => a === expected[i]);
  return result(r, ok ? 'ok' : 'different', `${type}: ${ok ? found.join(', ') : `${name} resolves to other addresses than dns.addresses`}`, expected, found);
}

async function checkPtr(resolver: dns.Resolver, name: string, host: string, address: string, r: DnsRecord): Promise<CheckResult> {
  const expected = [fqdn(host)];
  const got = await lookup(() => resolver.resolvePtr(name));
  if (got.kind === 'error') return result(r, 'error', `PTR of ${address}: ${got.message}`, expected, []);
  if (got.kind === 'none' || !got.value.length)
    return result(r, 'missing', `PTR of ${address}: none; receivers often distrust a server without reverse DNS (ask the address's provider)`, expected, []);
  const found = got.value.map(fqdn);
  const ok = got.value.length === 1 && bare(got.value[0]!) === host;
  return result(r, ok ? 'ok' : 'different', `PTR of ${address}: ${ok ? host : `should name ${host} alone`}`, expected, found);
}

/** The host name the MX records point at must resolve, or no mail reaches us. */
async function checkMxHost(resolver: dns.Resolver, host: string): Promise<CheckResult> {
  const [a, aaaa] = await Promise.all([lookup(() => resolver.resolve4(host)), lookup(() => resolver.resolve6(host))]);
  const found = [...(a.kind === 'found' ? a.value : []), ...(aaaa.kind === 'found' ? aaaa.value : [])];
  const base = { name: host, type: 'MX-HOST', purpose: 'mx-host' as const, advice: false, expected: ['an A or AAAA record'], found };
  if (found.length) return { ...base, status: 'ok', message: `the MX host name resolves: ${found.join(', ')}` };
  const err = [a, aaaa].find((x): x is { kind: 'error'; message: string } => x.kind === 'error');
  if (err) return { ...base, status: 'error', message: `the MX host name: ${err.message}` };
  return { ...base, status: 'fail', message: `the MX host name ${host} has no A or AAAA record: no mail can reach it` };
}

/** Whether the results pass: every record that is not advice is ok. */
export function allOk(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.advice || r.status === 'ok');
}

/** Text for people (and CI logs): one line per check, expected and found under the ones that failed. */
export function formatCheckText(results: readonly CheckResult[], resolver: string): string {
  const width = Math.min(40, Math.max(...results.map((r) => r.name.length)));
  const lines: string[] = [];
  for (const r of results) {
    const status = r.advice && r.status !== 'ok' ? `${r.status}*` : r.status;
    lines.push(`${status.padEnd(10)} ${r.type.padEnd(11)} ${r.name.padEnd(width)}  ${r.message}`);
    if (r.status !== 'ok') {
      for (const e of r.expected) lines.push(`${' '.repeat(11)}expected: ${e}`);
      for (const f of r.found) lines.push(`${' '.repeat(11)}found:    ${f}`);
      if (!r.found.length && r.status !== 'error') lines.push(`${' '.repeat(11)}found:    nothing`);
    }
  }
  const bad = results.filter((r) => !r.advice && r.status !== 'ok');
  const advice = results.filter((r) => r.advice && r.status !== 'ok');
  if (advice.length) lines.push(`* advice (reverse DNS, kept by the address's owner): reported, does not fail the check`);
  const counts = (['missing', 'different', 'fail', 'error'] as const).map((s) => [s, bad.filter((r) => r.status === s).length] as const).filter(([, n]) => n > 0);
  lines.push(
    bad.length
      ? `mailplane dns check: ${bad.length} of ${results.length - advice.length} checks failed (${counts.map(([s, n]) => `${n} ${s}`).join(', ')}), resolver ${resolver}`
      : `mailplane dns check: all ${results.length - advice.length} checks ok, resolver ${resolver}`,
  );
  return `${lines.join('\n')}\n`;
}

export function formatCheckJson(results: readonly CheckResult[], resolver: string): string {
  const summary: Record<CheckStatus, number> = { ok: 0, missing: 0, different: 0, fail: 0, error: 0 };
  for (const r of results) if (!r.advice) summary[r.status]++;
  return `${JSON.stringify({ ok: allOk(results), resolver, summary, results }, null, 2)}\n`;
}
