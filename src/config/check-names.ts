// hostname and domains: IDN-normalized to ASCII, lower case, unique.
import { domainToASCII } from 'node:url';
import type { LoadContext } from './context.js';

/** ASCII lower-case form of a domain, or null when it is not a valid domain name. */
export function normalizeDomain(d: string): string | null {
  const ascii = domainToASCII(d.trim().replace(/\.$/, '')).toLowerCase();
  if (!ascii || ascii.length > 253) return null;
  const labels = ascii.split('.');
  const ok = labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l));
  return ok && !/^[0-9]+$/.test(labels[labels.length - 1]!) ? ascii : null;
}

export function checkDomains(ctx: LoadContext, domains: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Map<string, number>();
  domains.forEach((d, i) => {
    const n = normalizeDomain(d);
    if (!n) {
      ctx.error('MP_INVALID_VALUE', ['domains', i], `'${d}' is not a valid domain name (expected something like example.com)`);
      return;
    }
    const first = seen.get(n);
    if (first !== undefined) {
      ctx.error('MP_DUPLICATE', ['domains', i], `'${d}' duplicates domains[${first}] (domains are compared case-insensitively, in ASCII form)`);
      return;
    }
    seen.set(n, i);
    out.push(n);
  });
  return out;
}

export function checkHostname(ctx: LoadContext, hostname: string): string {
  const n = normalizeDomain(hostname);
  if (!n) {
    ctx.error('MP_INVALID_VALUE', ['hostname'], `'${hostname}' is not a valid host name (expected something like mail.example.com)`);
    return hostname.toLowerCase();
  }
  if (!n.includes('.')) {
    ctx.warn('MP_INVALID_VALUE', ['hostname'], `'${hostname}' is not fully qualified; other servers expect a name such as mail.example.com`);
  }
  return n;
}
