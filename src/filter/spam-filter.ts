// The spam filter as the server runs it, across generations: the Rspamd client of the serving
// settings, whether Rspamd answers (a log line on each change, mailplane_spam_filter_up, the
// last error for /status), scan metrics, and a probe of /ping while no mail arrives, so that a
// filter that went down (or came back) is seen without traffic.
import type { SpamFilterState } from '../config/desired-state.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { RspamdClient, ScanError, type ScanInput, type ScanResult } from './rspamd.js';

/** How often the probe looks at Rspamd when no scan did in that time. */
const PROBE_MS = 30_000;

export type ScanOutcome = { readonly ok: true; readonly result: ScanResult } | { readonly ok: false; readonly error: string };

export class SpamFilter {
  private spec: SpamFilterState | null = null;
  private client: RspamdClient | null = null;
  private up: boolean | null = null;
  private lastError: { message: string; at: number } | null = null;
  private lastSeen = 0;
  private probe: NodeJS.Timeout | null = null;

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** The serving generation's settings (null: no spam filter); a new client only when where or how it connects changed. */
  configure(spec: SpamFilterState | null): void {
    const same = this.spec && spec && this.spec.url === spec.url && this.spec.timeoutMs === spec.timeoutMs && this.spec.password?.reveal() === spec.password?.reveal();
    this.spec = spec;
    if (same) return;
    const old = this.client;
    // scans in flight finish on the old client
    if (old) setTimeout(() => old.close(), 60_000).unref();
    this.client = spec ? new RspamdClient(spec) : null;
    this.up = null;
    this.metrics.spamFilterUp.reset();
    if (this.probe) clearInterval(this.probe);
    this.probe = null;
    if (!spec) return;
    this.metrics.spamFilterUp.set({ type: spec.type }, 1);
    this.probe = setInterval(() => void this.runProbe(), PROBE_MS);
    this.probe.unref();
    void this.runProbe();
  }

  /** One message's verdict, or why there is none (counted, timed, and the filter's state updated). */
  async scan(input: ScanInput): Promise<ScanOutcome> {
    const client = this.client;
    if (!client) return { ok: false, error: 'no spam filter configured' };
    const t0 = performance.now();
    try {
      const result = await client.scan(input);
      this.metrics.spamScans.inc({ action: result.action.replace(' ', '_') });
      this.seen(true);
      return { ok: true, result };
    } catch (e) {
      const error = e instanceof ScanError ? e.message : `scan failed: ${(e as Error).message}`;
      this.metrics.spamScans.inc({ action: 'error' });
      this.seen(false, error);
      return { ok: false, error };
    } finally {
      this.metrics.spamScanDuration.observe((performance.now() - t0) / 1000);
    }
  }

  /** What /status shows: the filter, whether it answers, its last error (no password). */
  status(): unknown {
    const s = this.spec;
    if (!s) return null;
    return {
      type: s.type,
      url: s.url,
      timeoutMs: s.timeoutMs,
      onError: s.onError,
      maxSize: s.maxSize,
      scanSubmissions: s.scanSubmissions,
      up: this.up,
      lastError: this.lastError ? { message: this.lastError.message, at: new Date(this.lastError.at).toISOString() } : null,
    };
  }

  close(): void {
    if (this.probe) clearInterval(this.probe);
    this.probe = null;
    this.client?.close();
  }

  private async runProbe(): Promise<void> {
    const client = this.client;
    if (!client || Date.now() - this.lastSeen < PROBE_MS / 2) return;
    try {
      await client.ping();
      if (client === this.client) this.seen(true);
    } catch (e) {
      if (client === this.client) this.seen(false, (e as Error).message);
    }
  }

  private seen(ok: boolean, error?: string): void {
    this.lastSeen = Date.now();
    if (!ok) this.lastError = { message: error ?? 'unknown error', at: Date.now() };
    if (this.spec) this.metrics.spamFilterUp.set({ type: this.spec.type }, ok ? 1 : 0);
    if (this.up === ok) return;
    const was = this.up;
    this.up = ok;
    const url = this.spec?.url;
    if (!ok) this.log.warn('spam filter unavailable', { filter: url, error, onError: this.spec?.onError });
    else if (was === false) this.log.info('spam filter answers again', { filter: url });
  }
}
