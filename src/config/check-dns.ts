// dns and mtaSts: what `mailplane dns` derives the records to publish from (src/dns/records.ts).
// No running component reads them; these checks catch what would publish a broken record: an
// SPF include that is no domain name or too many of them for SPF's lookup limit, a relay whose
// SPF is not included, an address that is not one, a report address no mailto: URI can carry,
// an MTA-STS policy that would make senders refuse to deliver.
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { MTA_STS_MAX_AGE_LIMIT } from '../dns/mta-sts.js';
import { isNonPublic, parseCidr } from './cidr.js';
import { normalizeDomain } from './check-names.js';
import type { LoadContext } from './context.js';
import type { DnsState, MtaStsState } from './desired-state.js';
import type { DnsConfig, MailserverConfig, MtaStsConfig } from './types.generated.js';
import { parseDuration } from './units.js';

/** RFC 7208 section 4.6.4; the `mx` of our own record takes one of them. */
const SPF_LOOKUPS = 10;

/** A DNS name that may have underscore labels (_spf.example.net): ASCII, lower case; null when it is none. */
export function dnsName(text: string): string | null {
  const ascii = domainToASCII(text.trim().replace(/\.$/, '')).toLowerCase();
  if (!ascii || ascii.length > 253 || !ascii.includes('.')) return null;
  const labels = ascii.split('.');
  const ok = labels.every((l) => /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l));
  return ok && !/^[0-9]+$/.test(labels[labels.length - 1]!) ? ascii : null;
}

/**
 * The dns and mtaSts blocks, checked and normalized; null when the schema found them broken
 * (each value the schema passed is still checked, so that one finding does not hide another).
 */
export function checkDns(ctx: LoadContext, cfg: MailserverConfig, broken: (prefix: string) => boolean): { dns: DnsState; mtaSts: MtaStsState } | null {
  // until the schema passes, a block may be anything: what it broke is skipped below
  const d: DnsConfig = isMap(cfg.dns) ? cfg.dns : {};
  const m: MtaStsConfig = isMap(cfg.mtaSts) ? cfg.mtaSts : {};
  const list = (v: readonly string[] | undefined, path: string): readonly string[] => (!broken(path) && v ? v : []);

  const spfInclude: string[] = [];
  const seen = new Map<string, number>();
  const includes = list(d.spfInclude, 'dns.spfInclude');
  includes.forEach((text, i) => {
    const name = dnsName(text);
    if (!name) {
      ctx.error('MP_INVALID_VALUE', ['dns', 'spfInclude', i], `'${text}' is not a domain name (SPF includes name a domain, such as _spf.relay.example.net; macros are not supported)`);
      return;
    }
    const first = seen.get(name);
    if (first !== undefined) {
      ctx.error('MP_DUPLICATE', ['dns', 'spfInclude', i], `'${text}' duplicates dns.spfInclude[${first}]`);
      return;
    }
    seen.set(name, i);
    spfInclude.push(name);
  });
  if (includes.length + 1 > SPF_LOOKUPS) {
    ctx.error(
      'MP_DNS_SPF',
      ['dns', 'spfInclude'],
      `${includes.length} includes and the record's mx take at least ${includes.length + 1} DNS lookups; SPF allows ${SPF_LOOKUPS} (RFC 7208 section 4.6.4), and receivers fail SPF for a record that needs more`,
    );
  }
  if (!broken('relay') && !broken('dns.spfInclude') && cfg.relay?.enabled === true && includes.length === 0) {
    ctx.warn(
      'MP_DNS_SPF',
      ['relay', 'enabled'],
      `outbound mail goes through the relay${typeof cfg.relay.host === 'string' ? ` ${cfg.relay.host}` : ''}, but dns.spfInclude is empty: receivers check SPF against the relay's addresses, which "v=spf1 mx -all" does not list; add the SPF domain the relay documents (dns: { spfInclude: [_spf.relay.example.net] })`,
    );
  }

  const addresses: string[] = [];
  const seenAddress = new Map<string, number>();
  list(d.addresses, 'dns.addresses').forEach((text, i) => {
    const at = ['dns', 'addresses', i];
    const plain = text.trim();
    if (isIP(plain) === 0 || plain.includes('%')) {
      ctx.error('MP_ADDRESS', at, `'${text}' is not an IP address (an IPv4 or IPv6 address of this host, without a prefix length)`);
      return;
    }
    const c = parseCidr(plain); // canonical form; an IPv4-mapped IPv6 address is its IPv4 address
    const first = seenAddress.get(c.address);
    if (first !== undefined) {
      ctx.error('MP_DUPLICATE', at, `'${text}' duplicates dns.addresses[${first}]`);
      return;
    }
    seenAddress.set(c.address, i);
    if (isNonPublic(c)) {
      ctx.warn('MP_DNS_ADDRESS', at, `${c.address} is not a public address (private, loopback, link-local or documentation space): A, AAAA and PTR records name the address other servers connect to`);
    }
    addresses.push(c.address);
  });

  const reportAddress = (path: string[], text: string | undefined): string | null => {
    if (typeof text !== 'string' || broken(path.join('.'))) return null;
    const at = text.lastIndexOf('@');
    const domain = normalizeDomain(text.slice(at + 1));
    if (!domain) {
      ctx.error('MP_INVALID_VALUE', path, `'${text}': '${text.slice(at + 1)}' is not a domain name`);
      return null;
    }
    return `${text.slice(0, at)}@${domain}`;
  };
  const dmarcReport = reportAddress(['dns', 'dmarc', 'reportAddress'], d.dmarc?.reportAddress);
  const tlsRptAddress = reportAddress(['dns', 'tlsRptAddress'], d.tlsRptAddress);

  const maxAge = broken('mtaSts.maxAge') ? 0 : Math.floor(parseDuration(m.maxAge!) / 1000);
  if (!broken('mtaSts.maxAge') && (maxAge < 1 || maxAge > MTA_STS_MAX_AGE_LIMIT)) {
    ctx.error('MP_INVALID_VALUE', ['mtaSts', 'maxAge'], `must be from 1s to 365.25 days (RFC 8461 section 3.2 allows a max_age of at most ${MTA_STS_MAX_AGE_LIMIT} seconds); it is ${maxAge} seconds`);
  }
  if (m.mode === 'enforce' && !broken('mtaSts.mode') && !broken('smtp.listeners')) {
    const listeners = Array.isArray(cfg.smtp?.listeners) ? cfg.smtp.listeners : [];
    if (!listeners.some((l) => l.role === 'mx' && l.tls === 'starttls')) {
      ctx.error(
        'MP_MTA_STS',
        ['mtaSts', 'mode'],
        'enforce tells senders to deliver to us only over TLS, but no mx listener offers STARTTLS: mail for our domains would wait in their queues until it bounces; give the mx listener tls: starttls, or use testing',
      );
    }
  }

  if (broken('dns') || broken('mtaSts')) return null;
  return {
    dns: { spfInclude, dmarc: { policy: d.dmarc!.policy!, reportAddress: dmarcReport }, tlsRptAddress, addresses, ttl: d.ttl! },
    mtaSts: { mode: m.mode!, maxAge },
  };
}

function isMap(v: unknown): v is object {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
