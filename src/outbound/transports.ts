// Sending queued mail: through the configured relay, or straight to each recipient domain's
// MX. The only importer of nodemailer. Results are per recipient: delivered, deferred (4xx,
// network, TLS unavailable, relay credentials refused) or failed (5xx).
//
// BODY=8BITMIME and SMTPUTF8 received are passed on (RFC 6152, RFC 6531). nodemailer declares
// them only when the next hop advertises them and otherwise sends the message anyway, so what a
// hop advertises is learned first (from its last EHLO, or a probe: connect, EHLO, QUIT) and a
// message that needs an extension the hop lacks is not sent to it: it fails with 5.6.3 (8-bit
// content; no MIME downgrade) or 5.6.7/5.6.9 (UTF-8 addresses/headers), and is bounced.
import { isAscii } from 'node:buffer';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import nodemailer from 'nodemailer';
import SMTPConnection, { type SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection';
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
  /** the message arrived with BODY=8BITMIME (absent: 7BIT) */
  readonly eightBitMime?: boolean;
  /** the message arrived with SMTPUTF8 */
  readonly smtputf8?: boolean;
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
  /** the EHLO reply's lines after the first, without codes */
  ehlo?: string[];
}

type Mailer = ReturnType<typeof nodemailer.createTransport>;

const addr = (a: string | { address: string }) => (typeof a === 'string' ? a : a.address).toLowerCase();

interface Attempt {
  readonly results: RecipientResult[];
  /** false when the remote end never answered the transaction (connection, TLS or greeting failure) */
  readonly reached: boolean;
}

/** How long what a hop advertised is trusted before it is learned again. */
const EXTENSIONS_TTL_MS = 10 * 60_000;
/** The most of a message read to find its header section. */
const HEAD_LIMIT = 256 * 1024;

/** The keywords of EHLO reply lines ('8BITMIME', 'SIZE 10240000' → 'SIZE'), upper case. */
function keywords(lines: readonly string[]): ReadonlySet<string> {
  return new Set(lines.map((l) => l.trim().split(/[\s=]/)[0]!.toUpperCase()).filter(Boolean));
}

/** Connects, reads the EHLO reply (after STARTTLS when the options call for it), quits. */
function probeExtensions(options: SMTPConnectionOptions): Promise<ReadonlySet<string>> {
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({ ...options, logger: false });
    let settled = false;
    conn.on('error', (e: Error) => {
      if (settled) return;
      settled = true;
      conn.close();
      reject(e);
    });
    conn.connect((err) => {
      if (settled) return;
      settled = true;
      if (err) {
        conn.close();
        return reject(err);
      }
      // after connect() the last reply is the EHLO (or HELO: no extensions) the session goes on with
      const reply = typeof conn.lastServerResponse === 'string' ? conn.lastServerResponse : '';
      conn.quit(); // closes once the 221 arrives; a hop that never answers is not waited for
      setTimeout(() => conn.close(), 10_000).unref();
      resolve(
        keywords(
          reply
            .split(/\r?\n/)
            .slice(1)
            .map((l) => l.replace(/^\d{3}[ -]/, '')),
        ),
      );
    });
  });
}

/** What one next hop (the relay, or one MX host) advertises: learned from each send, probed when unknown. */
class NextHop {
  private known: { readonly exts: ReadonlySet<string>; readonly at: number } | null = null;
  private probing: Promise<ReadonlySet<string>> | null = null;

  constructor(
    readonly mailer: Mailer,
    private readonly options: SMTPConnectionOptions,
  ) {}

  learn(ehlo: readonly string[] | undefined): void {
    if (ehlo?.length) this.known = { exts: keywords(ehlo), at: Date.now() };
  }

  extensions(): Promise<ReadonlySet<string>> {
    if (this.known && Date.now() - this.known.at < EXTENSIONS_TTL_MS) return Promise.resolve(this.known.exts);
    this.probing ??= probeExtensions(this.options)
      .then((exts) => {
        this.known = { exts, at: Date.now() };
        return exts;
      })
      .finally(() => (this.probing = null));
    return this.probing;
  }
}

/** An address that cannot go without SMTPUTF8: a non-ASCII local part (a domain goes as its A-label). */
function needsUtf8(address: string): boolean {
  const local = address.slice(0, Math.max(0, address.lastIndexOf('@')));
  return !isAscii(Buffer.from(local));
}

/** The header section of a message (latin1), read from its start. */
async function headOf(message: MessageSource): Promise<string> {
  const stream = message.open();
  let text = '';
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end >= 0) return text.slice(0, end);
      if (text.length > HEAD_LIMIT) break;
    }
  } finally {
    stream.destroy();
  }
  return text;
}

/** Whether a message holds any byte above 127. */
async function hasEightBit(message: MessageSource): Promise<boolean> {
  const stream = message.open();
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) if (!isAscii(chunk)) return true;
  } finally {
    stream.destroy();
  }
  return false;
}

/**
 * Why a message cannot go to a hop that lacks an extension it needs, or null. RFC 6152 §3 and
 * RFC 6531 §3.2: such a message is downgraded or returned; mailplane returns it. What turns out
 * not to need the extension (7-bit content under BODY=8BITMIME, SMTPUTF8 with ASCII addresses
 * and headers) goes without.
 */
async function refusalFor(envelope: Envelope, exts: ReadonlySet<string>, message: MessageSource, host: string): Promise<string | null> {
  if (!exts.has('SMTPUTF8')) {
    const address = [envelope.from, ...envelope.to].find(needsUtf8);
    if (address !== undefined) return `5.6.7 <${address}>: non-ASCII address, and ${host} does not support SMTPUTF8`;
    if (envelope.smtputf8 && !isAscii(Buffer.from(await headOf(message), 'latin1'))) return `5.6.9 UTF-8 header message cannot be transferred: ${host} does not support SMTPUTF8`;
  }
  if (envelope.eightBitMime && !exts.has('8BITMIME') && (await hasEightBit(message))) {
    return `5.6.3 conversion required but not supported: 8-bit message (BODY=8BITMIME), and ${host} does not support 8BITMIME`;
  }
  return null;
}

/** Turns one nodemailer send (success, partial or error) into per-recipient results. */
async function sendVia(hop: NextHop, envelope: Envelope, message: MessageSource, remote: string, treatAsTemporary: (e: MailError) => boolean): Promise<Attempt> {
  let use8BitMime = false;
  if (envelope.eightBitMime || envelope.smtputf8 || [envelope.from, ...envelope.to].some(needsUtf8)) {
    let exts: ReadonlySet<string>;
    try {
      exts = await hop.extensions();
    } catch (err) {
      const e = err as MailError;
      const outcome: Outcome = isPermanent(e, treatAsTemporary) ? 'failed' : 'deferred';
      return { results: envelope.to.map((to) => ({ address: to, outcome, response: errorText(e), remote })), reached: false };
    }
    const refusal = await refusalFor(envelope, exts, message, remote);
    if (refusal) return { results: envelope.to.map((to) => ({ address: to, outcome: 'failed', response: refusal, remote: null })), reached: true };
    use8BitMime = !!envelope.eightBitMime && exts.has('8BITMIME');
  }
  const raw = message.open();
  const results = await sendResults(hop, { from: envelope.from, to: [...envelope.to], use8BitMime }, envelope, raw, remote, treatAsTemporary);
  raw.destroy(); // unread when the transaction failed before DATA
  return { results: results.list, reached: results.reached };
}

async function sendResults(
  hop: NextHop,
  mailEnvelope: { from: string; to: string[]; use8BitMime: boolean },
  envelope: Envelope,
  raw: Readable,
  remote: string,
  treatAsTemporary: (e: MailError) => boolean,
): Promise<{ list: RecipientResult[]; reached: boolean }> {
  try {
    const info = (await hop.mailer.sendMail({ envelope: mailEnvelope, raw })) as SendInfo;
    hop.learn(info.ehlo);
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
  private readonly hop: NextHop;
  private up: boolean | null = null;
  private lastError: string | null = null;

  constructor(
    readonly relay: RelaySpec,
    delivery: TransportSpec['connect'],
    hostname: string,
  ) {
    const implicit = relay.implicitTls;
    const connect: SMTPConnectionOptions = {
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
      connectionTimeout: delivery.connectTimeoutMs,
      greetingTimeout: delivery.connectTimeoutMs,
      socketTimeout: 5 * 60_000,
      logger: false,
    };
    this.mailer = nodemailer.createTransport({
      ...connect,
      pool: true,
      maxConnections: Math.max(1, Math.min(delivery.concurrency, 10)),
      auth: relay.auth ? { user: relay.auth.username, pass: relay.auth.password.reveal() } : undefined,
    } as Parameters<typeof nodemailer.createTransport>[0]);
    this.hop = new NextHop(this.mailer, connect);
  }

  async send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>): Promise<{ reached: boolean }> {
    const remote = `${this.relay.host}:${this.relay.port}`;
    // Refused relay credentials keep the mail queued: fixing the password must deliver it.
    const { results, reached } = await sendVia(this.hop, envelope, message, remote, (e) => e.code === 'EAUTH');
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
  private readonly pools = new Map<string, { hop: NextHop; used: number }>();
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
      const r = await this.toDomain(domain, { ...envelope, to: rcpts }, message);
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

  private pool(name: string, ip: string): NextHop {
    const key = `${ip}|${name}`;
    let p = this.pools.get(key);
    if (!p) {
      const connect: SMTPConnectionOptions = {
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
      };
      const mailer = nodemailer.createTransport({ ...connect, pool: true, maxConnections: 2, maxMessages: 100 } as Parameters<typeof nodemailer.createTransport>[0]);
      p = { hop: new NextHop(mailer, connect), used: Date.now() };
      this.pools.set(key, p);
    }
    p.used = Date.now();
    return p.hop;
  }

  private sweep(): void {
    for (const [key, p] of this.pools) {
      if (Date.now() - p.used > 60_000) {
        p.hop.mailer.close();
        this.pools.delete(key);
      }
    }
  }

  health(): { up: boolean | null; lastError: string | null } {
    return { up: null, lastError: this.lastError };
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const p of this.pools.values()) p.hop.mailer.close();
    this.pools.clear();
    return Promise.resolve();
  }
}
