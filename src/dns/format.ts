// `mailplane dns` output: a zone-file fragment (BIND, NSD, Knot), JSON for tools
// (schema/dns-records.schema.json), or external-dns DNSEndpoint resources for Kubernetes.
import { stringify } from 'yaml';
import { fqdn, rdata, type DnsRecord, type DnsRecords } from './records.js';

export type DnsFormat = 'zone' | 'json' | 'external-dns';

const PURPOSE_NOTE: Record<DnsRecord['purpose'], string> = {
  mx: 'MX: mail for the domain goes to the host name',
  spf: 'SPF (RFC 7208): who may send mail from the domain',
  'spf-host': 'SPF of the host name: the HELO identity, and bounces (MAIL FROM <>)',
  dkim: 'DKIM public key (RFC 6376)',
  dmarc: 'DMARC (RFC 7489)',
  'dmarc-report-auth': 'DMARC: this domain accepts reports for another of ours (RFC 7489 section 7.1)',
  'mta-sts': 'MTA-STS (RFC 8461): the id changes when the policy does',
  'tls-rpt': 'TLS-RPT (RFC 8460): where sending servers report TLS failures',
  submission: 'mail clients: submission with STARTTLS (RFC 6186)',
  submissions: 'mail clients: submission with implicit TLS (RFC 8314)',
  imaps: 'mail clients: IMAP with implicit TLS (RFC 6186, RFC 8314)',
  address: 'the host name: the address of this server',
  ptr: 'reverse DNS',
};

/** The zone section a record goes in: its zone, the host name when it lies outside our domains. */
function section(r: DnsRecord): string {
  return r.zone ?? r.name;
}

/**
 * Zone-file lines grouped by zone, every name absolute and every record with its TTL, so a
 * section pastes into any zone file without depending on its $ORIGIN or $TTL. PTR advice and
 * the notes are comments.
 */
export function formatZone(set: DnsRecords, source: string): string {
  const out: string[] = [
    `; DNS records for mailplane at ${set.hostname}, derived from ${source} by \`mailplane dns\`.`,
    '; Each section belongs in the zone it names. `mailplane dns check` compares them with live DNS.',
  ];
  const published = set.records.filter((r) => !r.advice);
  const advice = set.records.filter((r) => r.advice);
  const widthOf = (rs: DnsRecord[]) => Math.max(0, ...rs.map((r) => fqdn(r.name).length));
  const line = (r: DnsRecord, width: number) => `${fqdn(r.name).padEnd(width)} ${String(r.ttl).padStart(6)} IN ${r.type.padEnd(5)} ${rdata(r)}`;
  const sections = [...new Set(published.map(section))];
  for (const s of sections) {
    const inside = set.domains.includes(s);
    out.push('', `; ---- ${s}${inside ? '' : ' (in the zone that holds this name)'} ----`);
    let last: string | null = null;
    for (const r of published.filter((x) => section(x) === s)) {
      if (r.purpose !== last) out.push(`; ${PURPOSE_NOTE[r.purpose]}`);
      last = r.purpose;
      out.push(line(r, widthOf(published)));
    }
  }
  if (advice.length) {
    out.push('', '; ---- reverse DNS (advice): set by whoever holds each address, usually the hosting provider ----');
    for (const r of advice) out.push(`; ${line(r, widthOf(advice))}`);
  }
  out.push('', ...policyComment(set, ';'));
  if (set.notes.length) {
    out.push('', '; Notes:');
    for (const n of set.notes) out.push(`; * ${n}`);
  }
  return `${out.join('\n')}\n`;
}

/** The MTA-STS policy the `_mta-sts` records announce, as comment lines. */
function policyComment(set: DnsRecords, mark: string): string[] {
  return [
    `${mark} ---- MTA-STS policy (id ${set.mtaSts.id}), served as https://mta-sts.<domain>/.well-known/mta-sts.txt, CRLF line ends ----`,
    ...set.mtaSts.text
      .split('\r\n')
      .filter(Boolean)
      .map((l) => `${mark}   ${l}`),
  ];
}

/** One record for JSON output: the fields of its type, and its data in presentation form. */
export function recordJson(r: DnsRecord): Record<string, unknown> {
  const { name, type, ttl, purpose, zone, advice } = r;
  const common = { name, type, ttl, purpose, zone, advice, rdata: rdata(r) };
  switch (r.type) {
    case 'MX':
      return { ...common, preference: r.preference, exchange: r.exchange };
    case 'TXT':
      return {
        ...common,
        value: r.value,
        strings: r.strings,
        ...(r.dkim ? { selector: r.dkim.selector, algorithm: r.dkim.algorithm, fingerprint: r.dkim.fingerprint } : {}),
      };
    case 'SRV':
      return { ...common, priority: r.priority, weight: r.weight, port: r.port, target: r.target };
    case 'A':
    case 'AAAA':
      return { ...common, address: r.address };
    case 'PTR':
      return { ...common, target: r.target, address: r.address };
  }
}

export function formatJson(set: DnsRecords, source: string): string {
  const doc = {
    config: source,
    hostname: set.hostname,
    domains: set.domains,
    records: set.records.map(recordJson),
    mtaSts: { mode: set.mtaSts.mode, maxAge: set.mtaSts.maxAge, mx: set.mtaSts.mx, id: set.mtaSts.id, policy: set.mtaSts.text },
    notes: set.notes,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * external-dns targets are provider-neutral strings: names without the trailing dot, MX as
 * "preference host", SRV as "priority weight port target". A TXT value of up to 255 bytes is
 * one plain string; a longer one (a DKIM RSA key) is its 255-byte character-strings, each
 * quoted, which is how Route 53, RFC 2136 and most other providers take long TXT values.
 */
export function externalDnsTarget(r: DnsRecord): string {
  const bare = (n: string) => (n === '.' ? '.' : n.replace(/\.$/, ''));
  switch (r.type) {
    case 'MX':
      return `${r.preference} ${bare(r.exchange)}`;
    case 'TXT':
      return r.strings.length === 1 ? r.value : rdata(r).replace(/^\( | \)$/g, '');
    case 'SRV':
      // the external-dns CRD refuses an SRV target without its final dot (the whole DNSEndpoint with it)
      return `${r.priority} ${r.weight} ${r.port} ${r.target === '.' ? '.' : `${bare(r.target)}.`}`;
    case 'A':
    case 'AAAA':
      return r.address;
    case 'PTR':
      return bare(r.target);
  }
}

/** Kubernetes object name for a zone: a DNS-1123 subdomain, at most 253 characters. */
function objectName(zone: string): string {
  return `mailplane-dns-${zone.replace(/\./g, '-')}`.slice(0, 253).replace(/[-.]+$/, '');
}

/**
 * One DNSEndpoint (externaldns.k8s.io/v1alpha1) per zone; each endpoint holds the records of
 * one name and type. PTR advice is left out (reverse zones belong to the address's owner).
 */
export function formatExternalDns(set: DnsRecords, source: string): string {
  const published = set.records.filter((r) => !r.advice);
  const docs: string[] = [];
  for (const zone of [...new Set(published.map(section))]) {
    const endpoints: { dnsName: string; recordType: string; recordTTL: number; targets: string[] }[] = [];
    for (const r of published.filter((x) => section(x) === zone)) {
      const target = externalDnsTarget(r);
      const same = endpoints.find((e) => e.dnsName === r.name && e.recordType === r.type);
      if (same) same.targets.push(target);
      else endpoints.push({ dnsName: r.name, recordType: r.type, recordTTL: r.ttl, targets: [target] });
    }
    const resource = {
      apiVersion: 'externaldns.k8s.io/v1alpha1',
      kind: 'DNSEndpoint',
      metadata: { name: objectName(zone), labels: { 'app.kubernetes.io/name': 'mailplane', 'app.kubernetes.io/component': 'dns' } },
      spec: { endpoints },
    };
    docs.push(stringify(resource, { lineWidth: 0 }));
  }
  const head = [`# DNS records for mailplane at ${set.hostname}, derived from ${source} by \`mailplane dns --format external-dns\`.`, ...set.notes.map((n) => `# * ${n}`), ...policyComment(set, '#')];
  return `${head.join('\n')}\n${docs.join('---\n')}`;
}

export function formatRecords(set: DnsRecords, format: DnsFormat, source: string): string {
  if (format === 'json') return formatJson(set, source);
  if (format === 'external-dns') return formatExternalDns(set, source);
  return formatZone(set, source);
}
