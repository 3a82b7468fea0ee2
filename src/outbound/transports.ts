// Sending queued mail: through the configured relay, or straight to each recipient domain's
// MX. The only importer of nodemailer. Results are per recipient: delivered, deferred (4xx,
// network, TLS unavailable, relay credentials refused) or failed (5xx).
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import nodemailer from 'nodemailer';
import type { RelaySpec, TransportSpec } from '../plan/specs.js';
import { MxResolver, TemporaryDnsError } from './dns.js';

export type Outcome = 'delivered' | 'deferred' | 'failed';

export interface RecipientResult {
  readonly address: string;
  readonly outcome: Outcome;
  /** the remote reply, or why there was none */
  readonly response: string;
  /** the host that answered, for bounces */
  readonly remote: string | null;
}

export interface Envelope {
  readonly from: string;
  readonly to: readonly string[];
}

/** A queued message, read from disk anew for every attempt (never held whole in memory). */
export interface MessageSource {
  open(): Readable;
}

export interface Transport {
  readonly kind: 'relay' | 'mx';
  /**
   * Sends; onResults is called as groups of recipients finish (persist them at once). Resolves
   * with reached: false when no host of the destination answered (connection, TLS, greeting, DNS).
   */
  send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>): Promise<{ reached: boolean }>;
  health(): { up: boolean | null; lastError: string | null };
  /** Checks reachability and credentials in the background (relay only). */
  verify?(): Promise<void>;
  close(): Promise<void>;
}

interface MailError extends Error {
  code?: string;
  command?: string;
  responseCode?: number;
  response?: string;
  permanent?: boolean;
  rejected?: string[];
  rejectedErrors?: MailError[];
}

interface SendInfo {
  accepted?: (string | { address: string })[];
  rejected?: (string | { address: string })[];
  rejectedErrors?: MailError[];
  response?: string;
}

type Mailer = ReturnType<typeof nodemailer.createTransport>;

const addr = (a: string | { address: string }) => (typeof a === 'string' ? a : a.address).toLowerCase();

interface Attempt {
  readonly results: RecipientResult[];
  /** false when the remote end never answered the transaction (connection, TLS or greeting failure) */
  readonly reached: boolean;
}

/** Turns one nodemailer send (success, partial or error) into per-recipient results. */
async function sendVia(mailer: Mailer, envelope: Envelope, message: MessageSource, remote: string, treatAsTemporary: (e: MailError) => boolean): Promise<Attempt> {
  const raw = message.open();
  const results = await sendResults(mailer, envelope, raw, remote, treatAsTemporary);
  raw.destroy(); // unread when the transaction failed before DATA
  return { results: results.list, reached: results.reached };
}

async function sendResults(mailer: Mailer, envelope: Envelope, raw: Readable, remote: string, treatAsTemporary: (e: MailError) => boolean): Promise<{ list: RecipientResult[]; reached: boolean }> {
  try {
    const info = (await mailer.sendMail({ envelope: { from: envelope.from, to: [...envelope.to] }, raw })) as SendInfo;
    const rejected = new Map((info.rejectedErrors ?? []).map((e) => [(e as { recipient?: string }).recipient?.toLowerCase() ?? '', e]));
    const accepted = new Set((info.accepted ?? []).map(addr));
    const list = envelope.to.map((to): RecipientResult => {
      if (accepted.has(to.toLowerCase())) return { address: to, outcome: 'delivered', response: info.response ?? '250 accepted', remote };
      const e = rejected.get(to.toLowerCase());
      return { address: to, outcome: e && isPermanent(e, treatAsTemporary) ? 'failed' : 'deferred', response: errorText(e), remote };
    });
    return { list, reached: true };
  } catch (err) {
    const e = err as MailError;
    if (e.rejectedErrors?.length) {
      const byRcpt = new Map(e.rejectedErrors.map((x) => [(x as { recipient?: string }).recipient?.toLowerCase() ?? '', x]));
      const list = envelope.to.map((to): RecipientResult => {
        const x = byRcpt.get(to.toLowerCase()) ?? e;
        return { address: to, outcome: isPermanent(x, treatAsTemporary) ? 'failed' : 'deferred', response: errorText(x), remote };
      });
      return { list, reached: true };
    }
    const outcome: Outcome = isPermanent(e, treatAsTemporary) ? 'failed' : 'deferred';
    return { list: envelope.to.map((to) => ({ address: to, outcome, response: errorText(e), remote })), reached: inTransaction(e) };
  }
}

/** The remote end answered our transaction (MAIL, RCPT, DATA) or our login. */
function inTransaction(e: MailError): boolean {
  return /^(MAIL FROM|RCPT TO|DATA|AUTH)/.test(e.command ?? '');
}

/**
 * Only a 5xx to the transaction itself is permanent. A 5xx to STARTTLS, EHLO or the greeting
 * means "TLS (or this host) is not available": retry later, never fall back to clear text.
 */
function isPermanent(e: MailError, treatAsTemporary: (e: MailError) => boolean): boolean {
  return !!e.permanent && /^(MAIL FROM|RCPT TO|DATA)/.test(e.command ?? '') && !treatAsTemporary(e);
}

function errorText(e: MailError | undefined): string {
  if (!e) return 'rejected';
  const during = e.command && !/^(MAIL FROM|RCPT TO|DATA)/.test(e.command) ? `${e.command}: ` : '';
  if (e.response) return `${during}${e.response.split('\n')[0]!.trim()}`;
  return `${during}${e.code ?? 'error'}: ${e.message}`.slice(0, 300);
}

export class RelayTransport implements Transport {
  readonly kind = 'relay' as const;
  private readonly mailer: Mailer;
  private up: boolean | null = null;
  private lastError: string | null = null;

  constructor(
    readonly relay: RelaySpec,
    delivery: TransportSpec['connect'],
    hostname: string,
  ) {
    const implicit = relay.implicitTls;
    this.mailer = nodemailer.createTransport({
      pool: true,
      maxConnections: Math.max(1, Math.min(delivery.concurrency, 10)),
      host: relay.host!,
      port: relay.port,
      name: hostname,
      secure: implicit,
      requireTLS: relay.secure && !implicit,
      tls: {
        minVersion: 'TLSv1.2',
        ...(isIP(relay.host!) ? {} : { servername: relay.host! }),
        rejectUnauthorized: relay.secure,
        ...(relay.caPem ? { ca: [...rootCertificates, relay.caPem] } : {}),
      },
      auth: relay.auth ? { user: relay.auth.username, pass: relay.auth.password.reveal() } : undefined,
      connectionTimeout: delivery.connectTimeoutMs,
      greetingTimeout: delivery.connectTimeoutMs,
      socketTimeout: 5 * 60_000,
      logger: false,
    } as Parameters<typeof nodemailer.createTransport>[0]);
  }

  async send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>): Promise<{ reached: boolean }> {
    const remote = `${this.relay.host}:${this.relay.port}`;
    // Refused relay credentials keep the mail queued: fixing the password must deliver it.
    const { results, reached } = await sendVia(this.mailer, envelope, message, remote, (e) => e.code === 'EAUTH');
    const authRefused = results.length > 0 && results.every((r) => r.outcome !== 'delivered' && /^AUTH /.test(r.response));
    this.up = reached && !authRefused;
    this.lastError = this.up ? null : (results[0]?.response ?? null);
    await onResults(results);
    return { reached };
  }

  health(): { up: boolean | null; lastError: string | null } {
    return { up: this.up, lastError: this.lastError };
  }

  async verify(): Promise<void> {
    try {
      await this.mailer.verify();
      if (this.up === null) this.up = true;
    } catch (e) {
      if (this.up === null) {
        this.up = false;
        this.lastError = errorText(e as MailError);
      }
    }
  }

  close(): Promise<void> {
    this.mailer.close();
    return Promise.resolve();
  }
}

/** Direct delivery: each domain's MX hosts in order, opportunistic STARTTLS, pooled per host. */
export class MxTransport implements Transport {
  readonly kind = 'mx' as const;
  private readonly resolver: MxResolver;
  private readonly pools = new Map<string, { mailer: Mailer; used: number }>();
  private readonly sweeper: NodeJS.Timeout;
  private lastError: string | null = null;

  constructor(
    private readonly delivery: TransportSpec['connect'],
    private readonly hostname: string,
  ) {
    this.resolver = new MxResolver(delivery.dnsServers, delivery.dnsTimeoutMs);
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /** Recipients at several domains (entries queued before jobs were per domain) go to each in turn. */
  async send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>): Promise<{ reached: boolean }> {
    const byDomain = new Map<string, string[]>();
    for (const to of envelope.to) {
      const domain = to.slice(to.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(domain, [...(byDomain.get(domain) ?? []), to]);
    }
    let reached = false;
    for (const [domain, rcpts] of byDomain) {
      const r = await this.toDomain(domain, { from: envelope.from, to: rcpts }, message);
      reached ||= r.reached;
      await onResults(r.results);
    }
    return { reached };
  }

  private async toDomain(domain: string, envelope: Envelope, message: MessageSource): Promise<{ results: RecipientResult[]; reached: boolean }> {
    const all = (outcome: Outcome, response: string, remote: string | null = null) => ({
      results: envelope.to.map((address) => ({ address, outcome, response, remote })),
      reached: false,
    });
    let route;
    try {
      route = await this.resolver.route(domain);
    } catch (e) {
      this.lastError = (e as Error).message;
      return all('deferred', e instanceof TemporaryDnsError ? e.message : `DNS: ${(e as Error).message}`);
    }
    if (route.kind === 'none') return { ...all('failed', `${route.status} ${route.reason}`), reached: true };
    let last = 'no mail exchanger could be reached';
    for (const host of route.hosts) {
      for (const ip of host.addresses) {
        const remote = `${host.name}[${ip}]:${this.delivery.mxPort}`;
        const { results, reached } = await sendVia(this.pool(host.name, ip), envelope, message, remote, () => false);
        // The next host is tried only when this one never answered the transaction.
        if (reached) return { results, reached };
        last = `${remote}: ${results[0]!.response}`;
        this.lastError = last;
      }
    }
    return all('deferred', last);
  }

  private pool(name: string, ip: string): Mailer {
    const key = `${ip}|${name}`;
    let p = this.pools.get(key);
    if (!p) {
      const mailer = nodemailer.createTransport({
        pool: true,
        maxConnections: 2,
        maxMessages: 100,
        host: ip,
        port: this.delivery.mxPort,
        name: this.hostname,
        secure: false,
        // opportunistic STARTTLS, as MTAs do between each other: encrypted when offered
        tls: { ...(isIP(name) ? {} : { servername: name }), rejectUnauthorized: false, minVersion: 'TLSv1.2' },
        connectionTimeout: this.delivery.connectTimeoutMs,
        greetingTimeout: this.delivery.connectTimeoutMs,
        socketTimeout: 5 * 60_000,
        logger: false,
      } as Parameters<typeof nodemailer.createTransport>[0]);
      p = { mailer, used: Date.now() };
      this.pools.set(key, p);
    }
    p.used = Date.now();
    return p.mailer;
  }

  private sweep(): void {
    for (const [key, p] of this.pools) {
      if (Date.now() - p.used > 60_000) {
        p.mailer.close();
        this.pools.delete(key);
      }
    }
  }

  health(): { up: boolean | null; lastError: string | null } {
    return { up: null, lastError: this.lastError };
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const p of this.pools.values()) p.mailer.close();
    this.pools.clear();
    return Promise.resolve();
  }
}
