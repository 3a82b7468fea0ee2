// The Received header we prepend (RFC 5321 §4.4; protocol names per RFC 3848, and RFC 6531 §4.3
// for SMTPUTF8 transactions).
import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
import { unmapV4 } from '../config/cidr.js';

export interface ReceivedFacts {
  /** the EHLO/HELO argument as the client gave it (never trusted: see heloClause) */
  readonly helo: string;
  readonly clientAddress: string;
  readonly hostname: string;
  readonly esmtp: boolean;
  /** the transaction used SMTPUTF8 (RFC 6531): `with UTF8SMTP…` */
  readonly utf8?: boolean;
  readonly tls: { readonly version: string; readonly cipher: string } | null;
  readonly authenticated: boolean;
  readonly id: string;
  readonly recipients: readonly string[];
  readonly date: Date;
}

export function receivedHeader(f: ReceivedFacts): string {
  const ip = unmapV4(f.clientAddress);
  const literal = isIPv6(ip) ? `[IPv6:${ip}]` : `[${ip}]`;
  const proto = `${f.utf8 ? 'UTF8SMTP' : f.esmtp ? 'ESMTP' : 'SMTP'}${f.tls ? 'S' : ''}${f.authenticated ? 'A' : ''}`;
  const lines = [`Received: from ${heloClause(f.helo, literal)}`, `\tby ${f.hostname} (mailplane) with ${proto} id ${f.id}`];
  if (f.tls) lines.push(`\t(using ${f.tls.version} with cipher ${f.tls.cipher})`);
  const forClause = f.recipients.length === 1 ? `for <${f.recipients[0]}>; ` : '';
  lines.push(`\t${forClause}${rfc5322Date(f.date)}`);
  return `${lines.join('\r\n')}\r\n`;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** A Domain (RFC 5321 §4.1.2, in ASCII: an internationalized name as its A-label), or null. */
function asDomain(name: string): string | null {
  const ascii = /^[\x21-\x7e]*$/.test(name) ? name : domainToASCII(name);
  const bare = ascii.replace(/\.$/, '');
  if (!bare || bare.length > 253) return null;
  return bare.split('.').every((l) => LABEL.test(l)) ? bare : null;
}

/** An address-literal as given ([192.0.2.1], [IPv6:2001:db8::1]), or null. */
function asAddressLiteral(name: string): string | null {
  const m = /^\[(.*)\]$/.exec(name);
  if (!m) return null;
  const inner = m[1]!;
  if (isIPv4(inner)) return name;
  if (/^ipv6:/i.test(inner) && isIPv6(inner.slice(5))) return `[IPv6:${inner.slice(5)}]`;
  return null;
}

/**
 * `from` clause: the HELO name when it is a domain or an address literal, then our view of the
 * client in a comment. Any other HELO argument never stands where a domain belongs: it goes into
 * the comment as `helo=`, printable ASCII only, with `(`, `)` and `\` escaped (RFC 5322 ctext),
 * so that nothing a client says can end the comment or the header.
 */
export function heloClause(helo: string, literal: string): string {
  const name = helo ? (asAddressLiteral(helo) ?? asDomain(helo)) : null;
  if (name) return `${name} (${literal})`;
  if (!helo) return `unknown (${literal})`;
  const safe = helo
    .slice(0, 255)
    .replace(/[^\x21-\x7e]/g, '?')
    .replace(/[()\\]/g, (c) => `\\${c}`);
  return `unknown (${literal} helo=${safe})`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
