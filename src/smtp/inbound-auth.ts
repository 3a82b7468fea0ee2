// Authentication checks of incoming mail (SPF, DKIM, DMARC, ARC: mailauth's authenticate()),
// for messages from mx clients that are neither authenticated nor trusted. The results become
// one Authentication-Results header (RFC 8601) and per-method counts, and a decision
// (inbound-verdict.ts) when DMARC is enforced or our own domains are protected. DNS goes only to
// the server's configured resolvers (delivery.dns).
import type { Readable } from 'node:stream';
import { authenticate, type AuthenticateResult } from 'mailauth';
import { configuredResolver } from '../outbound/dns.js';
import { DnsCache } from './dns-cache.js';
import type { PolicySpec } from '../plan/specs.js';
import { decide, decideUnfinished, enforcing, type Decision, type Rules } from './inbound-verdict.js';

/** The most one message's checks may take, whatever delivery.dns.timeout says. */
const MAX_CHECK_MS = 10_000;

export type AuthMethod = 'spf' | 'dkim' | 'dmarc' | 'arc';
/** The results RFC 8601 names (mailauth's, folded into these) */
export const AUTH_RESULTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy'] as const;
export type AuthResult = (typeof AUTH_RESULTS)[number];

export interface AuthVerdict {
  /** the whole header field, CRLF-terminated */
  readonly header: string;
  /** one entry per method clause in the header (several for several DKIM signatures) */
  readonly results: readonly { readonly method: AuthMethod; readonly result: AuthResult }[];
  /** what happens to the message */
  readonly decision: Decision;
}

export interface AuthInput {
  readonly ip: string;
  readonly helo: string;
  /** MAIL FROM; '' for the null sender */
  readonly sender: string;
}

interface Clause {
  readonly info?: string;
  readonly status?: { readonly result?: string };
}

export class InboundAuth {
  private readonly resolve: (name: string, rr: string) => Promise<unknown>;
  private readonly rules: Rules;

  private constructor(
    private readonly hostname: string,
    private readonly checks: PolicySpec['inbound'],
    domains: readonly string[],
  ) {
    const resolver = configuredResolver(checks.dnsServers, checks.dnsTimeoutMs);
    const cache = new DnsCache((name, rr) => resolver.resolve(name, rr));
    this.resolve = (name, rr) => cache.lookup(name, rr);
    this.rules = { dmarc: checks.dmarc, ownDomains: checks.ownDomains, arcTrustedSealers: checks.arcTrustedSealers, domains: new Set(domains) };
  }

  /** null when every check and rule is off */
  static from(hostname: string, checks: PolicySpec['inbound'], domains: readonly string[]): InboundAuth | null {
    if (!checks.spf && !checks.dkim && !checks.arc && checks.dmarc === 'off' && checks.ownDomains === 'off') return null;
    return new InboundAuth(hostname, checks, domains);
  }

  /** the Maildir++ folder quarantined mail goes to */
  get junkFolder(): string {
    return this.checks.junkFolder;
  }

  /** whether a decision can refuse or file a message (otherwise the checks only record) */
  get enforcing(): boolean {
    return enforcing(this.rules);
  }

  /**
   * Checks the message (the stream yields it as received, without our trace headers). All its
   * checks together get twice the DNS timeout, at most MAX_CHECK_MS: whatever has not finished
   * then is temperror (a silent resolver must not hold the 250 for each lookup in turn).
   */
  async check(message: Readable, input: AuthInput): Promise<AuthVerdict> {
    const limitMs = Math.min(MAX_CHECK_MS, 2 * this.checks.dnsTimeoutMs);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), limitMs)));
    const r = await Promise.race([this.run(message, input), late]).finally(() => clearTimeout(timer));
    if (r === null) {
      message.destroy();
      const clauses = this.methods().map((method) => ({ method, c: { info: `${method}=temperror (checks did not finish within ${limitMs} ms)`, status: { result: 'temperror' } } }));
      return this.verdict(clauses, decideUnfinished(this.rules));
    }
    const clauses: { method: AuthMethod; c: Clause }[] = [];
    if (this.checks.dkim) for (const c of (r.dkim?.results ?? []) as Clause[]) clauses.push({ method: 'dkim', c });
    if (this.checks.spf && r.spf) clauses.push({ method: 'spf', c: r.spf });
    if (this.checks.arc && r.arc) clauses.push({ method: 'arc', c: r.arc });
    if (this.checks.dmarc !== 'off' && r.dmarc) clauses.push({ method: 'dmarc', c: r.dmarc });
    return this.verdict(clauses, decide(r, this.rules));
  }

  private methods(): AuthMethod[] {
    const on: AuthMethod[] = [];
    if (this.checks.dkim) on.push('dkim');
    if (this.checks.spf) on.push('spf');
    if (this.checks.arc) on.push('arc');
    if (this.checks.dmarc !== 'off') on.push('dmarc');
    return on;
  }

  private run(message: Readable, input: AuthInput): Promise<AuthenticateResult> {
    return authenticate(message, {
      ip: input.ip,
      helo: input.helo,
      sender: input.sender,
      mta: this.hostname,
      resolver: this.resolve as never,
      disableArc: !this.checks.arc,
      disableDmarc: this.checks.dmarc === 'off',
      // SPF and DKIM always run (the own-domain rule needs them); the header shows what is on
      disableBimi: true,
    });
  }

  private verdict(clauses: readonly { method: AuthMethod; c: Clause }[], decision: Decision): AuthVerdict {
    const parts: string[] = [];
    const results: { method: AuthMethod; result: AuthResult }[] = [];
    for (const { method, c } of clauses) {
      const result = toResult(c.status?.result);
      results.push({ method, result });
      parts.push(oneLine(c.info) ?? `${method}=${result}`);
    }
    const value = parts.length ? parts.join(';\r\n\t') : 'none';
    return { header: `Authentication-Results: ${this.hostname};\r\n\t${value}\r\n`, results, decision };
  }
}

function toResult(s: string | undefined): AuthResult {
  const r = (s ?? 'none').toLowerCase();
  return (AUTH_RESULTS as readonly string[]).includes(r) ? (r as AuthResult) : r === 'temperr' ? 'temperror' : r === 'permerr' ? 'permerror' : 'none';
}

/** A clause as one line (mailauth may fold it): bare CR/LF never reach the stored header. */
function oneLine(info: string | undefined): string | null {
  if (!info) return null;
  return info.replace(/\r?\n[ \t]*/g, ' ').trim();
}
