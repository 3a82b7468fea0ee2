// The Received header we prepend (RFC 5321 §4.4, protocol names per RFC 3848).
import { isIPv6 } from 'node:net';
import { unmapV4 } from '../config/cidr.js';

export interface ReceivedFacts {
  readonly helo: string;
  readonly clientAddress: string;
  readonly hostname: string;
  readonly esmtp: boolean;
  readonly tls: { readonly version: string; readonly cipher: string } | null;
  readonly authenticated: boolean;
  readonly id: string;
  readonly recipients: readonly string[];
  readonly date: Date;
}

export function receivedHeader(f: ReceivedFacts): string {
  const ip = unmapV4(f.clientAddress);
  const literal = isIPv6(ip) ? `[IPv6:${ip}]` : `[${ip}]`;
  const proto = `${f.esmtp ? 'ESMTP' : 'SMTP'}${f.tls ? 'S' : ''}${f.authenticated ? 'A' : ''}`;
  const lines = [`Received: from ${f.helo || 'unknown'} (${literal})`, `\tby ${f.hostname} (mailplane) with ${proto} id ${f.id}`];
  if (f.tls) lines.push(`\t(using ${f.tls.version} with cipher ${f.tls.cipher})`);
  const forClause = f.recipients.length === 1 ? `for <${f.recipients[0]}>; ` : '';
  lines.push(`\t${forClause}${rfc5322Date(f.date)}`);
  return `${lines.join('\r\n')}\r\n`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
