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
import { pipeline, Transform, type Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import nodemailer from 'nodemailer';
import SMTPConnection, { type SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection';
import type { RelaySpec, TransportSpec } from '../plan/specs.js';
import { MxResolver, TemporaryDnsError } from './dns.js';
import { MtaStsPolicies, type DomainPolicy } from './mta-sts.js';

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
  /** what RCPT TO names for each of `to`, in the same order (LMTP: the login, `alice` or `alice+Junk`); absent: the addresses */
  readonly paths?: readonly string[];
  /** when the message first arrived (ms since the epoch): what the hand-off to a peer passes on (outbound/peer.ts) */
  readonly arrivedAt?: number;
}

/** A queued message, read from disk anew for every attempt (never held whole in memory). */
export interface MessageSource {
  open(): Readable;
}

export interface Transport {
  /** handoff: to another replica's peer listener, while this one leaves (outbound/peer.ts) */
  readonly kind: 'relay' | 'mx' | 'lmtp' | 'handoff';
  /**
   * Sends; onResults is called as groups of recipients finish (persist them at once), onHost
   * each time a host is tried (for the deliveries in progress that `queue list` shows). Resolves
   * with reached: false when no host of the destination answered (connection, TLS, greeting, DNS).
   */
  send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>, onHost?: (remote: string) => void): Promise<{ reached: boolean }>;
  /** failures: attempts that did not reach the next hop, and failed checks of it, so far (relay only) */
  health(): { up: boolean | null; lastError: string | null; failures?: number };
  /** Checks reachability and credentials in the background (relay only). */
  verify?(): Promise<void>;
  close(): Promise<void>;
}

interface MailError extends Error {
  code?: string;
  /** the system or TLS error under nodemailer's own code (ECONNREFUSED, ERR_SSL_WRONG_VERSION_NUMBER …) */
  originalCode?: string;
  reason?: string;
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
  /** the relay refused our credentials (the mail stays queued: fixing the password delivers it) */
  readonly authRefused?: boolean;
}

/** The host a send talks to, as delivery errors name it. */
interface Peer {
  /** host[ip]:port or host:port, for results and bounces */
  readonly remote: string;
  /** how sentences name it: "the relay smtp.example.net:587", "mx1.example.net[192.0.2.1]:25" */
  readonly name: string;
  /** the relay's settings (hints name them); null for an MX host */
  readonly relay: RelaySpec | null;
  readonly connectTimeoutMs: number;
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
async function sendVia(hop: NextHop, envelope: Envelope, message: MessageSource, peer: Peer, treatAsTemporary: (e: MailError) => boolean): Promise<Attempt> {
  const { remote } = peer;
  let use8BitMime = false;
  if (envelope.eightBitMime || envelope.smtputf8 || [envelope.from, ...envelope.to].some(needsUtf8)) {
    let exts: ReadonlySet<string>;
    try {
      exts = await hop.extensions();
    } catch (err) {
      const e = err as MailError;
      const outcome: Outcome = isPermanent(e, treatAsTemporary) ? 'failed' : 'deferred';
      return { results: envelope.to.map((to) => ({ address: to, outcome, response: explain(e, peer), remote })), reached: false, authRefused: e.code === 'EAUTH' };
    }
    const refusal = await refusalFor(envelope, exts, message, remote);
    if (refusal) return { results: envelope.to.map((to) => ({ address: to, outcome: 'failed', response: refusal, remote: null })), reached: true };
    use8BitMime = !!envelope.eightBitMime && exts.has('8BITMIME');
  }
  const raw = message.open();
  const results = await sendResults(hop, { from: envelope.from, to: [...envelope.to], use8BitMime }, envelope, raw, peer, treatAsTemporary);
  raw.destroy(); // unread when the transaction failed before DATA
  return results;
}

async function sendResults(
  hop: NextHop,
  mailEnvelope: { from: string; to: string[]; use8BitMime: boolean },
  envelope: Envelope,
  raw: Readable,
  peer: Peer,
  treatAsTemporary: (e: MailError) => boolean,
): Promise<Attempt> {
  const { remote } = peer;
  try {
    const info = (await hop.mailer.sendMail({ envelope: mailEnvelope, raw })) as SendInfo;
    hop.learn(info.ehlo);
    const rejected = new Map((info.rejectedErrors ?? []).map((e) => [(e as { recipient?: string }).recipient?.toLowerCase() ?? '', e]));
    const accepted = new Set((info.accepted ?? []).map(addr));
    const results = envelope.to.map((to): RecipientResult => {
      if (accepted.has(to.toLowerCase())) return { address: to, outcome: 'delivered', response: info.response ?? '250 accepted', remote };
      const e = rejected.get(to.toLowerCase());
      return { address: to, outcome: e && isPermanent(e, treatAsTemporary) ? 'failed' : 'deferred', response: e ? explain(e, peer) : `${peer.name} did not accept the recipient`, remote };
    });
    return { results, reached: true };
  } catch (err) {
    const e = err as MailError;
    if (e.rejectedErrors?.length) {
      const byRcpt = new Map(e.rejectedErrors.map((x) => [(x as { recipient?: string }).recipient?.toLowerCase() ?? '', x]));
      const results = envelope.to.map((to): RecipientResult => {
        const x = byRcpt.get(to.toLowerCase()) ?? e;
        return { address: to, outcome: isPermanent(x, treatAsTemporary) ? 'failed' : 'deferred', response: explain(x, peer), remote };
      });
      return { results, reached: true };
    }
    const outcome: Outcome = isPermanent(e, treatAsTemporary) ? 'failed' : 'deferred';
    return { results: envelope.to.map((to) => ({ address: to, outcome, response: explain(e, peer), remote })), reached: inTransaction(e), authRefused: e.code === 'EAUTH' };
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

/** Why a connection or socket failed, by the system error under nodemailer's code. */
const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'refused the connection (nothing listens on that port)',
  ECONNRESET: 'reset the connection',
  EPIPE: 'closed the connection while we were writing',
  EHOSTUNREACH: 'cannot be reached (no route to the host)',
  ENETUNREACH: 'cannot be reached (no route to its network)',
  EADDRNOTAVAIL: 'cannot be reached from here (address not available)',
  ENOTFOUND: 'does not resolve: no such host name',
  EAI_AGAIN: 'could not be resolved: the DNS lookup failed for now',
};

/** Why a certificate was refused, in words (Node's codes of certificate verification). */
function certificateProblem(code: string, e: MailError): string | null {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `presented a certificate for another name (${e.reason ?? e.message})`;
  if (code === 'CERT_HAS_EXPIRED') return 'presented an expired certificate';
  if (code === 'CERT_NOT_YET_VALID') return 'presented a certificate that is not valid yet';
  if (/SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF|CERT_UNTRUSTED|CERT_CHAIN_TOO_LONG|INVALID_CA/.test(code)) return `presented a certificate that is not trusted (${e.message.trim()})`;
  return null;
}

/**
 * A delivery error as a sentence an operator (or a sender reading a bounce) can act on, naming
 * the host and, for the relay, the setting involved. A reply to MAIL, RCPT or DATA is the
 * remote's own words and is kept as it is (it goes into DSNs as the Diagnostic-Code).
 */
function explain(e: MailError, peer: Peer): string {
  const reply = e.response ? e.response.split('\n')[0]!.trim() : null;
  const command = e.command ?? '';
  const who = peer.name;
  const relay = peer.relay;
  if (reply && /^(MAIL FROM|RCPT TO|DATA)/.test(command)) return reply;
  if (e.code === 'EAUTH') {
    const account = relay?.auth ? ` (${relay.auth.username})` : '';
    return reply ? `${who} refused the credentials of relay.auth${account}: ${reply}` : `${who}: logging in failed (${e.message.trim()})`;
  }
  if (command === 'STARTTLS') {
    if (relay?.secure) return `${who} does not offer STARTTLS, and relay.secure requires it${reply ? ` (it answered STARTTLS with ${reply})` : ''}`;
    return `${who} offered STARTTLS but the upgrade failed${reply ? `: ${reply}` : ''}`;
  }
  const code = e.originalCode ?? '';
  const seconds = `${Math.round(peer.connectTimeoutMs / 100) / 10} s`;
  const cert = certificateProblem(code, e);
  if (cert) return `${who} ${cert}${relay ? '; give the CA that signed it in relay.caFile, or fix the certificate' : ''}`;
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|HTTP_REQUEST/.test(code) || /wrong version number|packet length too long/.test(e.message)) {
    return relay?.implicitTls
      ? `${who} does not speak TLS at once on port ${relay.port} (relay.implicitTls); on a STARTTLS port such as 587 set relay.implicitTls: false`
      : `the TLS handshake with ${who} failed: it does not speak TLS there`;
  }
  if (e.code === 'ETLS' || /^ERR_SSL_|^ERR_TLS_/.test(code)) return `the TLS handshake with ${who} failed: ${(e.reason ?? e.message).replace(/^Error initiating TLS - /, '').trim()}`;
  if (SOCKET_ERRORS[code]) return `${who} ${SOCKET_ERRORS[code]}`;
  if (e.code === 'ETIMEDOUT') {
    if (/greeting/i.test(e.message)) {
      const hint = relay && !relay.implicitTls ? '; if it expects TLS at once (as on port 465), set relay.implicitTls: true' : '';
      return `${who} did not answer within ${seconds} (no connection, or no greeting)${hint}`;
    }
    if (/connection timeout/i.test(e.message)) return `${who} did not accept the connection within ${seconds}`;
    return `${who} stopped answering in the middle of the session`;
  }
  if (e.code === 'EPROTOCOL' && command === 'CONN' && reply) return `${who} refused the connection: ${reply}`;
  if (e.code === 'ECONNECTION') return `${who} closed the connection${command === 'CONN' ? ' unexpectedly' : ` after ${command}`}${reply ? `: ${reply}` : ''}`;
  if (reply) return `${who} refused ${command || 'the session'}: ${reply}`;
  return `${who}: ${e.message.trim()}`.slice(0, 300);
}

export class RelayTransport implements Transport {
  /** How often a relay that is down is checked until it answers (tests shorten it). */
  static recheckMs = 60_000;
  readonly kind = 'relay' as const;
  private readonly mailer: Mailer;
  private readonly hop: NextHop;
  private readonly peer: Peer;
  private up: boolean | null = null;
  private lastError: string | null = null;
  /** sends in flight, and when the last of them last made progress (started, read message bytes, ended) */
  private sending = 0;
  private progressAt = 0;
  /** attempts and checks that found the relay down, so far; sends ended (a check's result yields to a newer send's) */
  private failures = 0;
  private sendsEnded = 0;
  private recheck: NodeJS.Timeout | null = null;
  private closed = false;

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
    const remote = `${relay.host}:${relay.port}`;
    this.peer = { remote, name: `the relay ${remote}`, relay, connectTimeoutMs: delivery.connectTimeoutMs };
  }

  async send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>, onHost?: (remote: string) => void): Promise<{ reached: boolean }> {
    onHost?.(this.peer.remote);
    this.sending++;
    this.progressAt = Date.now();
    const watched: MessageSource = {
      open: () => this.progressing(message.open()),
    };
    let attempt: Attempt;
    try {
      // Refused relay credentials keep the mail queued: fixing the password must deliver it.
      attempt = await sendVia(this.hop, envelope, watched, this.peer, (e) => e.code === 'EAUTH');
    } finally {
      this.sending--;
      this.progressAt = Date.now();
    }
    const { results, reached } = attempt;
    this.sendsEnded++;
    this.setUp(reached && !attempt.authRefused, results[0]?.response ?? null);
    await onResults(results);
    return { reached };
  }

  /** The message as the connection reads it, each chunk noted as progress of the send. */
  private progressing(stream: Readable): Readable {
    const noted = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.progressAt = Date.now();
        done(null, chunk);
      },
    });
    pipeline(stream, noted, () => {}); // destroying what is read destroys the file stream too
    return noted;
  }

  /**
   * Up when the last attempt reached the relay and was not refused its credentials — and not
   * while an attempt has waited longer than the connect timeout without any progress (a relay
   * that accepted the connection and then hangs is not up).
   */
  health(): { up: boolean | null; lastError: string | null; failures: number } {
    const silent = Date.now() - this.progressAt;
    if (this.sending > 0 && silent > this.peer.connectTimeoutMs) {
      return { up: false, lastError: `${this.peer.name} has not answered for ${Math.round(silent / 1000)} s: a delivery is waiting for its reply`, failures: this.failures };
    }
    return { up: this.up, lastError: this.lastError, failures: this.failures };
  }

  async verify(): Promise<void> {
    try {
      await this.mailer.verify();
      if (this.up === null) this.setUp(true, null);
    } catch (e) {
      if (this.up === null) this.setUp(false, explain(e as MailError, this.peer));
    }
  }

  /**
   * The relay's state after an attempt or a check. Down, it is checked every RECHECK_MS
   * (connect, TLS, login) until it answers: the state follows the relay, not the last message,
   * which on a quiet night may be hours old.
   */
  private setUp(up: boolean, error: string | null): void {
    this.up = up;
    this.lastError = up ? null : error;
    if (!up) this.failures++;
    if (up && this.recheck) {
      clearInterval(this.recheck);
      this.recheck = null;
    } else if (!up && !this.recheck && !this.closed) {
      this.recheck = setInterval(() => void this.check(), RelayTransport.recheckMs);
      this.recheck.unref();
    }
  }

  private async check(): Promise<void> {
    if (this.sending > 0 || this.closed) return; // an attempt in flight tells
    const ended = this.sendsEnded;
    let error: string | null = null;
    try {
      await this.mailer.verify();
    } catch (e) {
      error = explain(e as MailError, this.peer);
    }
    if (this.sendsEnded !== ended || this.sending > 0 || this.closed) return; // a newer attempt's result stands
    this.setUp(error === null, error);
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = null;
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
  /** recipient domains' MTA-STS policies (null: delivery.mtaSts off) */
  private readonly mtaSts: MtaStsPolicies | null;

  constructor(
    private readonly delivery: TransportSpec['connect'],
    private readonly hostname: string,
    /** counts MTA-STS outcomes (mailplane_mta_sts_total) */
    private readonly onMtaSts: (result: 'enforced' | 'deferred' | 'testing_ok' | 'testing_violation' | 'fetch_error') => void = () => {},
  ) {
    this.resolver = new MxResolver(delivery.dnsServers, delivery.dnsTimeoutMs);
    this.mtaSts = delivery.mtaSts ? new MtaStsPolicies(delivery.dnsServers, delivery.dnsTimeoutMs) : null;
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /** Recipients at several domains (entries queued before jobs were per domain) go to each in turn. */
  async send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>, onHost?: (remote: string) => void): Promise<{ reached: boolean }> {
    const byDomain = new Map<string, string[]>();
    for (const to of envelope.to) {
      const domain = to.slice(to.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(domain, [...(byDomain.get(domain) ?? []), to]);
    }
    let reached = false;
    for (const [domain, rcpts] of byDomain) {
      const r = await this.toDomain(domain, { ...envelope, to: rcpts }, message, onHost);
      reached ||= r.reached;
      await onResults(r.results);
    }
    return { reached };
  }

  private async toDomain(domain: string, envelope: Envelope, message: MessageSource, onHost?: (remote: string) => void): Promise<{ results: RecipientResult[]; reached: boolean }> {
    const all = (outcome: Outcome, response: string, remote: string | null = null) => ({
      results: envelope.to.map((address) => ({ address, outcome, response, remote })),
      reached: false,
    });
    let route;
    try {
      route = await this.resolver.route(domain);
    } catch (e) {
      this.lastError = (e as Error).message;
      return all('deferred', e instanceof TemporaryDnsError ? e.message : `the DNS lookup for ${domain} failed: ${(e as Error).message}`);
    }
    if (route.kind === 'none') return { ...all('failed', `${route.status} ${route.reason}`), reached: true };
    // RFC 8461: under an enforce policy only the MX hosts it names, only over TLS with a valid certificate
    const sts = await this.policyFor(domain);
    let hosts = route.hosts;
    if (sts) {
      const named = hosts.filter((h) => MtaStsPolicies.allows(sts, h.name));
      if (sts.mode === 'testing') this.onMtaSts(named.length === hosts.length ? 'testing_ok' : 'testing_violation');
      else if (!named.length) {
        this.onMtaSts('deferred');
        this.lastError = `MTA-STS: the enforce policy of ${domain} (id ${sts.id}) allows none of its MX hosts (${hosts.map((h) => h.name).join(', ')}); policy mx: ${sts.mx.join(', ') || 'none'}`;
        return all('deferred', this.lastError);
      } else hosts = named;
    }
    const enforce = sts?.mode === 'enforce';
    // every host tried, each with its own error: the deferral names them all
    const tried: string[] = [];
    for (const host of hosts) {
      for (const ip of host.addresses) {
        const remote = `${host.name}[${ip}]:${this.delivery.mxPort}`;
        onHost?.(remote);
        const peer: Peer = { remote, name: remote, relay: null, connectTimeoutMs: this.delivery.connectTimeoutMs };
        const { results, reached } = await sendVia(this.pool(host.name, ip, enforce), envelope, message, peer, () => false);
        // The next host is tried only when this one never answered the transaction.
        if (reached) {
          if (enforce) this.onMtaSts('enforced');
          return { results, reached };
        }
        tried.push(enforce ? `MTA-STS enforce (TLS with a valid certificate required): ${results[0]!.response}` : results[0]!.response);
      }
    }
    if (enforce) this.onMtaSts('deferred');
    const last = !tried.length
      ? `no mail exchanger of ${domain} has an address to connect to`
      : tried.length === 1
        ? `the mail exchanger of ${domain} could not be reached: ${tried[0]}`
        : `none of the ${tried.length} mail exchangers of ${domain} could be reached: ${tried.map((t, i) => `(${i + 1}) ${t}`).join('; ')}`;
    this.lastError = last;
    return all('deferred', last);
  }

  /** The domain's MTA-STS policy in force (testing or enforce), or null. */
  private async policyFor(domain: string): Promise<DomainPolicy | null> {
    if (!this.mtaSts || domain.startsWith('[')) return null;
    const { policy, error } = await this.mtaSts.policyFor(domain);
    if (error && !policy) this.onMtaSts('fetch_error');
    return policy;
  }

  /** A pool per address and name; `strict` (MTA-STS enforce): STARTTLS required, certificate verified for the MX name. */
  private pool(name: string, ip: string, strict = false): NextHop {
    const key = `${ip}|${name}${strict ? '|sts' : ''}`;
    let p = this.pools.get(key);
    if (!p) {
      const connect: SMTPConnectionOptions = {
        host: ip,
        port: this.delivery.mxPort,
        name: this.hostname,
        secure: false,
        ...(strict ? { requireTLS: true } : {}),
        // opportunistic STARTTLS, as MTAs do between each other: encrypted when offered
        tls: strict ? { servername: name, rejectUnauthorized: true, minVersion: 'TLSv1.2' } : { ...(isIP(name) ? {} : { servername: name }), rejectUnauthorized: false, minVersion: 'TLSv1.2' },
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
