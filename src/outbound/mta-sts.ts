// Other domains' MTA-STS policies (RFC 8461), for direct MX delivery: looked up through the
// server's resolver (delivery.dns) and fetched over HTTPS by mailauth, cached per domain as long
// as the policy allows (max_age) and re-checked against the `_mta-sts` TXT id at most every few
// minutes. A policy that cannot be fetched when none is cached counts as no policy (RFC 8461
// §5.1: a sender must not fail delivery because of it); a cached one stays in force.
import { getPolicy, validateMx } from 'mailauth/lib/mta-sts.js';
import { configuredResolver } from './dns.js';

export type MtaStsMode = 'enforce' | 'testing' | 'none';

export interface DomainPolicy {
  readonly mode: MtaStsMode;
  /** the mx patterns (`mx.example.com`, `*.example.com`) */
  readonly mx: readonly string[];
  readonly id: string;
}

/** How often a cached policy's id is compared with DNS again. */
const RECHECK_MS = 5 * 60_000;
/** A failed lookup is not repeated for this long (the message is delivered as without a policy meanwhile). */
const ERROR_BACKOFF_MS = 60_000;
const MAX_DOMAINS = 10_000;

interface Cached {
  policy: { id?: string | false; mode: MtaStsMode; mx?: string[]; expires?: string; maxAge?: number } | null;
  checkedAt: number;
  lastError: string | null;
}

export class MtaStsPolicies {
  private readonly cache = new Map<string, Cached>();
  private readonly inflight = new Map<string, Promise<Cached>>();
  private readonly resolve: (name: string, rr: string) => Promise<unknown>;

  constructor(
    servers: readonly string[],
    private readonly timeoutMs: number,
  ) {
    const resolver = configuredResolver(servers, timeoutMs);
    this.resolve = (name, rr) => resolver.resolve(name, rr);
  }

  /** The domain's policy in force (null: none), and the last fetch error if the lookup failed. */
  async policyFor(domain: string): Promise<{ policy: DomainPolicy | null; error: string | null }> {
    const d = domain.toLowerCase();
    let c = this.cache.get(d);
    const fresh = c && Date.now() - c.checkedAt < (c.lastError && !c.policy ? ERROR_BACKOFF_MS : RECHECK_MS);
    if (!c || !fresh) c = await this.refresh(d, c ?? null);
    const p = c.policy;
    if (!p || p.mode === 'none' || !p.id) return { policy: null, error: c.lastError };
    return { policy: { mode: p.mode, mx: p.mx ?? [], id: String(p.id) }, error: c.lastError };
  }

  /** Whether an MX host name is allowed by the policy (exact, or a `*.` pattern one label deep). */
  static allows(policy: DomainPolicy, mx: string): boolean {
    return validateMx(mx.replace(/\.$/, ''), { mode: policy.mode, mx: [...policy.mx] }).valid;
  }

  private refresh(domain: string, known: Cached | null): Promise<Cached> {
    const running = this.inflight.get(domain);
    if (running) return running;
    const p = (async (): Promise<Cached> => {
      const knownPolicy = known?.policy && known.policy.expires && Date.parse(known.policy.expires) > Date.now() ? known.policy : null;
      let entry: Cached;
      try {
        const r = await getPolicy(domain, knownPolicy, { resolver: this.resolve as never, timeout: this.timeoutMs * 4 });
        const errored = r.status === 'errored';
        const policy = r.policy && !(errored && !knownPolicy) ? (r.policy as Cached['policy']) : knownPolicy;
        entry = {
          policy: r.status === 'not_found' ? null : policy,
          checkedAt: Date.now(),
          lastError: errored ? String((r.policy as { error?: { message?: string } })?.error?.message ?? 'policy fetch failed') : null,
        };
      } catch (e) {
        entry = { policy: knownPolicy, checkedAt: Date.now(), lastError: (e as Error).message };
      }
      if (this.cache.size >= MAX_DOMAINS && !this.cache.has(domain)) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(domain, entry);
      return entry;
    })().finally(() => this.inflight.delete(domain));
    this.inflight.set(domain, p);
    return p;
  }
}
