// A small cache in front of the inbound checks' resolver: the same sender domains come back
// message after message (their SPF, DKIM key and DMARC records), and every lookup otherwise costs
// a query and its parsing. Answers and "no such name / no such record" are kept for TTL_MS (node's
// resolver does not give TTLs for TXT; a minute is well under what mail domains publish), at most
// MAX_ENTRIES of them; a failure of the resolver itself (timeout, refused) is never cached, so it
// is asked again at the next message. Concurrent lookups of one name share one query.

const TTL_MS = 60_000;
const MAX_ENTRIES = 10_000;
/** the error codes that are answers (the name or record does not exist), not failures */
const NEGATIVE = new Set(['ENOTFOUND', 'ENODATA']);

type Entry = { readonly until: number; readonly value: unknown; readonly error: NodeJS.ErrnoException | null };

export class DnsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<unknown>>();

  constructor(private readonly resolve: (name: string, rr: string) => Promise<unknown>) {}

  lookup(name: string, rr: string): Promise<unknown> {
    const key = `${rr} ${name.toLowerCase()}`;
    const hit = this.entries.get(key);
    if (hit && hit.until > Date.now()) return hit.error ? Promise.reject(hit.error) : Promise.resolve(hit.value);
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.resolve(name, rr).then(
      (value) => {
        this.store(key, { until: Date.now() + TTL_MS, value, error: null });
        return value;
      },
      (e: NodeJS.ErrnoException) => {
        if (NEGATIVE.has(e.code ?? '')) this.store(key, { until: Date.now() + TTL_MS, value: null, error: e });
        throw e;
      },
    );
    const shared = p.finally(() => this.inflight.delete(key));
    this.inflight.set(key, shared);
    return shared;
  }

  private store(key: string, e: Entry): void {
    if (this.entries.size >= MAX_ENTRIES && !this.entries.has(key)) {
      // the oldest entry goes (Map keeps insertion order)
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.delete(key);
    this.entries.set(key, e);
  }
}
