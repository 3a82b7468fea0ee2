// Where mail for a domain goes: MX hosts in preference order (equal preferences shuffled),
// the domain itself when it has no MX (RFC 5321 §5.1), nowhere for a null MX (RFC 7505).
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';

export interface RouteHost {
  readonly name: string;
  readonly addresses: readonly string[];
}

export type Route =
  | { readonly kind: 'hosts'; readonly hosts: readonly RouteHost[] }
  /** permanent: the domain says it takes no mail, or does not exist */
  | { readonly kind: 'none'; readonly status: string; readonly reason: string };

/** A lookup that may succeed later (timeout, SERVFAIL, no reachable resolver). */
export class TemporaryDnsError extends Error {}

/** A resolver with the server's settings (delivery.dns): its servers (empty: the system's), a lookup bounded by timeoutMs. */
export function configuredResolver(servers: readonly string[], timeoutMs: number): dns.Resolver {
  const resolver = new dns.Resolver({ timeout: Math.max(100, Math.floor(timeoutMs / 2)), tries: 2 });
  if (servers.length) resolver.setServers([...servers]);
  return resolver;
}

export class MxResolver {
  private readonly resolver: dns.Resolver;

  constructor(servers: readonly string[], timeoutMs: number) {
    this.resolver = configuredResolver(servers, timeoutMs);
  }

  async route(domain: string): Promise<Route> {
    const literal = domain.match(/^\[(?:ipv6:)?([^\]]+)\]$/i);
    if (literal) {
      const ip = literal[1]!;
      return isIP(ip) ? { kind: 'hosts', hosts: [{ name: ip, addresses: [ip] }] } : { kind: 'none', status: '5.1.2', reason: `bad address literal ${domain}` };
    }
    let mx: { exchange: string; priority: number }[];
    try {
      mx = await this.resolver.resolveMx(domain);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND') return { kind: 'none', status: '5.1.2', reason: `domain ${domain} does not exist` };
      if (code === 'ENODATA')
        mx = [{ exchange: domain, priority: 0 }]; // implicit MX
      else throw new TemporaryDnsError(`the MX lookup for ${domain} failed: ${dnsFailure(code, e as Error)}`);
    }
    if (mx.some((r) => r.exchange === '' || r.exchange === '.')) {
      return { kind: 'none', status: '5.1.10', reason: `domain ${domain} does not accept mail (null MX)` };
    }
    const ordered = shuffleWithinPriority(mx);
    const hosts: RouteHost[] = [];
    let temporary: string | null = null;
    for (const r of ordered) {
      const name = r.exchange.replace(/\.$/, '');
      const addresses = await this.addresses(name).catch((e: Error) => {
        temporary = e.message;
        return [] as string[];
      });
      if (addresses.length) hosts.push({ name, addresses });
    }
    if (!hosts.length) {
      if (temporary) throw new TemporaryDnsError(temporary);
      return { kind: 'none', status: '5.4.4', reason: `no address for any mail exchanger of ${domain}` };
    }
    return { kind: 'hosts', hosts };
  }

  private async addresses(name: string): Promise<string[]> {
    if (isIP(name)) return [name];
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name), this.resolver.resolve6(name)]);
    const out = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (!out.length) {
      const failed = [v4, v6].find((r) => r.status === 'rejected' && !['ENODATA', 'ENOTFOUND'].includes((r.reason as NodeJS.ErrnoException).code ?? ''));
      if (failed?.status === 'rejected') throw new TemporaryDnsError(`the address lookup for ${name} failed: ${dnsFailure((failed.reason as NodeJS.ErrnoException).code, failed.reason as Error)}`);
    }
    return out;
  }
}

/** Why a lookup failed, in words (c-ares codes as Node reports them). */
function dnsFailure(code: string | undefined, e: Error): string {
  switch (code) {
    case 'ETIMEOUT':
      return 'no DNS server answered in time';
    case 'ECONNREFUSED':
      return 'the DNS server refused the connection (is it running?)';
    case 'ESERVFAIL':
      return 'the DNS server could not answer (SERVFAIL)';
    case 'EREFUSED':
      return 'the DNS server refused the query (REFUSED)';
    case 'EBADRESP':
    case 'EFORMERR':
      return 'the DNS answer was malformed';
    default:
      return code ?? e.message;
  }
}

function shuffleWithinPriority<T extends { priority: number }>(list: T[]): T[] {
  const byPriority = new Map<number, T[]>();
  for (const r of list) byPriority.set(r.priority, [...(byPriority.get(r.priority) ?? []), r]);
  return [...byPriority.keys()]
    .sort((a, b) => a - b)
    .flatMap((p) => {
      const group = byPriority.get(p)!;
      for (let i = group.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [group[i], group[j]] = [group[j]!, group[i]!];
      }
      return group;
    });
}
