// The DNS records a config needs, derived from its DesiredState: what `mailplane dns` prints and
// `mailplane dns check` compares with live DNS. For every domain: MX → hostname, SPF, the DKIM
// key of every dkim.keys entry, DMARC, MTA-STS, TLS-RPT and the client service records of RFC
// 6186/8314; for the host name: its SPF (the HELO identity) and, when dns.addresses is given, its
// A/AAAA records and the PTR records (advice: they live in the address owner's reverse zone).
// Pure: no I/O; the keys' public halves come from the state.
import { isIP } from 'node:net';
import type { DesiredState, ListenerSpec } from '../config/desired-state.js';
import { isLoopback } from '../config/check-relay.js';
import { splitTxt, txtValue } from '../dkim/key.js';
import { mtaStsPolicy, type MtaStsPolicy } from './mta-sts.js';

/** What a record is for: `dns check` compares each kind its own way. */
export type Purpose = 'mx' | 'spf' | 'spf-host' | 'dkim' | 'dmarc' | 'dmarc-report-auth' | 'mta-sts' | 'tls-rpt' | 'submission' | 'submissions' | 'imaps' | 'address' | 'ptr';

interface Base {
  /** owner name: ASCII, lower case, no trailing dot */
  readonly name: string;
  /** seconds (dns.ttl) */
  readonly ttl: number;
  readonly purpose: Purpose;
  /** the one of our domains the name lies in (the longest), or null (a host name outside them; PTR) */
  readonly zone: string | null;
  /** published by whoever holds the name (PTR: the address's owner), not in our zones; never fails `dns check` */
  readonly advice: boolean;
}

export type MxRecord = Base & { readonly type: 'MX'; readonly preference: number; readonly exchange: string };
export type TxtRecord = Base & {
  readonly type: 'TXT';
  /** the value as receivers read it: the character-strings joined */
  readonly value: string;
  /** the character-strings, at most 255 bytes each (RFC 1035 section 3.3.14) */
  readonly strings: readonly string[];
  /** DKIM records: the key's selector and the fingerprint of its public key */
  readonly dkim?: { readonly selector: string; readonly algorithm: string; readonly publicKey: string; readonly fingerprint: string };
};
/** target '.' with port 0: the service is not offered at this domain (RFC 2782, RFC 6186 section 4) */
export type SrvRecord = Base & { readonly type: 'SRV'; readonly priority: number; readonly weight: number; readonly port: number; readonly target: string };
export type AddressRecord = Base & { readonly type: 'A' | 'AAAA'; readonly address: string };
export type PtrRecord = Base & { readonly type: 'PTR'; readonly target: string; readonly address: string };
export type DnsRecord = MxRecord | TxtRecord | SrvRecord | AddressRecord | PtrRecord;

export interface DnsRecords {
  readonly hostname: string;
  readonly domains: readonly string[];
  readonly records: readonly DnsRecord[];
  /** the policy the `_mta-sts` records announce (its id is in them) */
  readonly mtaSts: MtaStsPolicy;
  /** what the operator should know: records left out and why, records others must publish */
  readonly notes: readonly string[];
}

export const MX_PREFERENCE = 10;
/** RFC 8314 section 5.1: implicit TLS is preferred to STARTTLS, so its SRV record has the lower priority. */
const SRV_PRIORITY = { submissions: 0, submission: 10, imaps: 0 } as const;

/**
 * The mailbox (IMAP) service `_imaps._tcp` points at. The config has no mailbox service today
 * (an IMAP server such as Dovecot runs beside mailplane and is configured on its own), so there
 * is none and no `_imaps._tcp` record is derived. When the schema gains one, return its
 * implicit-TLS port here: the record follows.
 */
export function mailboxService(_state: DesiredState): { readonly port: number } | null {
  return null;
}

/** Every record the config needs, in a stable order: per domain, then the host name, then PTR advice. */
export function expectedRecords(state: DesiredState): DnsRecords {
  const host = state.hostname;
  const ttl = state.dns.ttl;
  const domains = state.domains;
  const records: DnsRecord[] = [];
  const notes: string[] = [];
  const base = (name: string, purpose: Purpose, advice = false): Base => ({ name, ttl, purpose, zone: advice ? null : zoneOf(name, domains), advice });
  const txt = (name: string, purpose: Purpose, value: string, extra: Partial<Pick<TxtRecord, 'dkim'>> = {}): TxtRecord => ({
    ...base(name, purpose),
    type: 'TXT',
    value,
    strings: splitTxt(value),
    ...extra,
  });

  const policy = mtaStsPolicy(state);
  const dmarcRua = state.dns.dmarc.reportAddress;
  const tlsRpt = state.dns.tlsRptAddress ?? dmarcRua;
  const spf = ['v=spf1', 'mx', ...state.dns.spfInclude.map((d) => `include:${d}`), '-all'].join(' ');
  const dmarc = [`v=DMARC1`, `p=${state.dns.dmarc.policy}`, ...(dmarcRua ? [`rua=mailto:${dmarcRua}`] : [])].join('; ');
  const services = serviceListeners(state);
  const mailbox = mailboxService(state);

  for (const domain of domains) {
    records.push({ ...base(domain, 'mx'), type: 'MX', preference: MX_PREFERENCE, exchange: host });
    records.push(txt(domain, 'spf', spf));
    for (const k of state.dkim.keys.filter((key) => key.domain === domain)) {
      const m = k.material;
      records.push(txt(`${k.selector}._domainkey.${domain}`, 'dkim', txtValue(m), { dkim: { selector: k.selector, algorithm: m.algorithm, publicKey: m.publicKey, fingerprint: m.fingerprint } }));
    }
    records.push(txt(`_dmarc.${domain}`, 'dmarc', dmarc));
    records.push(txt(`_mta-sts.${domain}`, 'mta-sts', `v=STSv1; id=${policy.id}`));
    if (tlsRpt) records.push(txt(`_smtp._tls.${domain}`, 'tls-rpt', `v=TLSRPTv1; rua=mailto:${tlsRpt}`));
    for (const service of ['submissions', 'submission'] as const) {
      const l = services[service];
      records.push({
        ...base(`_${service}._tcp.${domain}`, service),
        type: 'SRV',
        ...(l ? { priority: SRV_PRIORITY[service], weight: 1, port: l.port, target: host } : { priority: 0, weight: 0, port: 0, target: '.' }),
      });
    }
    if (mailbox) records.push({ ...base(`_imaps._tcp.${domain}`, 'imaps'), type: 'SRV', priority: SRV_PRIORITY.imaps, weight: 1, port: mailbox.port, target: host });
  }

  // RFC 7489 section 7.1: reports for a domain go to an address at another organisation's
  // domain only when that domain says it takes them.
  if (dmarcRua) {
    const rd = dmarcRua.slice(dmarcRua.lastIndexOf('@') + 1);
    const foreign = domains.filter((d) => !sameTree(d, rd));
    if (domains.includes(rd)) {
      for (const d of foreign) records.push(txt(`${d}._report._dmarc.${rd}`, 'dmarc-report-auth', 'v=DMARC1'));
    } else if (foreign.length) {
      notes.push(
        `DMARC reports go to ${dmarcRua}, at a domain that is not one of ours: ${rd} must publish ${foreign.map((d) => `${d}._report._dmarc.${rd}`).join(', ')} TXT "v=DMARC1", or receivers send no reports (RFC 7489 section 7.1).`,
      );
    }
  }

  if (!domains.includes(host)) records.push(txt(host, 'spf-host', 'v=spf1 a -all'));
  for (const address of state.dns.addresses) records.push({ ...base(host, 'address'), type: isIP(address) === 6 ? 'AAAA' : 'A', address });
  for (const address of state.dns.addresses) records.push({ ...base(reverseName(address), 'ptr', true), type: 'PTR', target: host, address });

  if (!tlsRpt) notes.push('No _smtp._tls (TLS-RPT, RFC 8460) record: set dns.tlsRptAddress (or dns.dmarc.reportAddress) to receive reports of TLS failures from sending servers.');
  notes.push(
    `MTA-STS (mode ${policy.mode}): the _mta-sts records announce a policy that must be served at https://mta-sts.<domain>/.well-known/mta-sts.txt, with a certificate valid for that name. mailplane's ops endpoint answers that path for Host mta-sts.<domain>: route that name's HTTPS there (an Ingress, a reverse proxy), only that path. Until it is served senders ignore the records.`,
  );
  if (state.relay.enabled && state.dns.spfInclude.length === 0) {
    notes.push(`Outbound mail goes through the relay ${state.relay.host ?? ''}, but dns.spfInclude is empty: receivers will fail SPF for it. Add the SPF domain your relay documents.`);
  }
  if (!state.dns.addresses.length) {
    notes.push(
      `No dns.addresses: the A/AAAA records of ${host} and its PTR records are not listed. ${host} must resolve to the server's public addresses, and each address's PTR record must name ${host}.`,
    );
  }
  for (const service of ['submissions', 'submission'] as const) {
    const skipped = services.loopbackOnly[service];
    if (!services[service] && skipped) notes.push(`The ${service} listener '${skipped.name}' binds ${skipped.address} only: _${service}._tcp says the service is not offered.`);
  }
  return { hostname: host, domains, records, mtaSts: policy, notes };
}

/** The first submission listener of each kind that the internet can reach (not bound to loopback). */
function serviceListeners(state: DesiredState): {
  submission: ListenerSpec | null;
  submissions: ListenerSpec | null;
  loopbackOnly: { submission: ListenerSpec | null; submissions: ListenerSpec | null };
} {
  const of = (tls: 'starttls' | 'implicit') => state.smtp.listeners.filter((l) => l.role === 'submission' && l.tls === tls);
  const reachable = (ls: ListenerSpec[]) => ls.find((l) => l.address === null || !isLoopback(l.address)) ?? null;
  const starttls = of('starttls');
  const implicit = of('implicit');
  return {
    submission: reachable(starttls),
    submissions: reachable(implicit),
    loopbackOnly: { submission: starttls[0] ?? null, submissions: implicit[0] ?? null },
  };
}

/** The longest of our domains that name is, or lies under; null when none. */
export function zoneOf(name: string, domains: readonly string[]): string | null {
  const under = domains.filter((d) => name === d || name.endsWith(`.${d}`));
  return under.sort((a, b) => b.length - a.length)[0] ?? null;
}

/** Whether one domain is the other or lies under it (then no report authorization is needed). */
function sameTree(a: string, b: string): boolean {
  return a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`);
}

/** The reverse-zone name of an address: 4.3.2.1.in-addr.arpa, or 32 nibbles under ip6.arpa. */
export function reverseName(address: string): string {
  if (isIP(address) === 4) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  return `${ipv6Nibbles(address).reverse().join('.')}.ip6.arpa`;
}

function ipv6Nibbles(address: string): string[] {
  let text = address.toLowerCase();
  const v4 = text.match(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.flatMap((g) => g.padStart(4, '0').split(''));
}

/** The record's data in zone-file presentation form: what `dig` shows and zone files hold. */
export function rdata(r: DnsRecord): string {
  switch (r.type) {
    case 'MX':
      return `${r.preference} ${fqdn(r.exchange)}`;
    case 'TXT':
      return r.strings.length === 1 ? quote(r.strings[0]!) : `( ${r.strings.map(quote).join(' ')} )`;
    case 'SRV':
      return `${r.priority} ${r.weight} ${r.port} ${fqdn(r.target)}`;
    case 'A':
    case 'AAAA':
      return r.address;
    case 'PTR':
      return fqdn(r.target);
  }
}

/** An absolute name: with its trailing dot ('.' stays the root). */
export function fqdn(name: string): string {
  return name === '.' || name.endsWith('.') ? name : `${name}.`;
}

/** A DNS character-string in a zone file: quoted, with " and \ escaped. */
export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
