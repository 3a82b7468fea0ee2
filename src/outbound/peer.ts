// The hand-off client: while a replica leaves (`mailplane queue handoff`), its queue is delivered
// to another replica's peer listener instead of to the relay, MX hosts or LMTP server. It speaks
// plain SMTP over one connection kept open from message to message:
//   * STARTTLS when offered. With cluster.peers.secretFile the secret is sent (AUTH PLAIN, login
//     `peer`) only inside TLS whose certificate is our own (the replicas share the config, so the
//     same certificate) or verifies for our host name; otherwise the attempt waits.
//   * The peer must advertise X-MAILPLANE-HANDOFF (a peer listener): anything else is no peer, and
//     the mail waits rather than being refused there.
//   * MAIL carries the original envelope: BODY=8BITMIME and SMTPUTF8 as the message arrived with,
//     and X-MAILPLANE-ARRIVED=<ms>, its arrival time, which the peer keeps (session.ts).
//   * Each recipient's result is its RCPT reply, then the reply to the message: 2xx delivered,
//     4xx deferred, 5xx failed (the peer applies the same config; a refused MAIL or a connection
//     that fails defers everything: only a peer's verdict on a recipient or the message bounces).
// The bytes are streamed from the queued file, dot-stuffed on the way; never read whole.
import { X509Certificate } from 'node:crypto';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Secret } from '../config/secret.js';
import type { Envelope, MessageSource, RecipientResult, Transport } from './transports.js';

/** The EHLO keyword of a peer listener (smtp/engine.ts advertises it). */
const HANDOFF_EXTENSION = 'X-MAILPLANE-HANDOFF';
const ARRIVED_PARAMETER = 'X-MAILPLANE-ARRIVED';
/** How long a transaction may go without any reply from the peer. */
const REPLY_TIMEOUT_MS = 5 * 60_000;

export interface HandoffSpec {
  /** cluster.peers.handoff */
  readonly host: string;
  readonly port: number;
  /** cluster.peers.secretFile (null: we must be one of the peer's exempt clients) */
  readonly secret: Secret | null;
  /** our host name: the EHLO name, and a name the peer's certificate may be valid for */
  readonly hostname: string;
  /** the SHA-256 fingerprint of our own certificate (smtp.tls): a peer presenting it is one of us */
  readonly fingerprint256: string | null;
  readonly connectTimeoutMs: number;
}

interface Reply {
  readonly code: number;
  readonly text: string;
}

/** A failure of the connection or the session: everything not decided yet is deferred with this sentence. */
class PeerError extends Error {
  constructor(
    message: string,
    /** false: the peer never answered a transaction (connection, TLS, greeting, AUTH) */
    readonly reached: boolean,
  ) {
    super(message);
  }
}

export class PeerTransport implements Transport {
  readonly kind = 'handoff' as const;
  private conn: PeerConnection | null = null;
  private busy: Promise<unknown> = Promise.resolve();
  private up: boolean | null = null;
  private lastError: string | null = null;
  private closed = false;
  /** how results and errors name the peer */
  readonly remote: string;

  constructor(readonly spec: HandoffSpec) {
    this.remote = `${isIP(spec.host) === 6 ? `[${spec.host}]` : spec.host}:${spec.port}`;
  }

  send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>, onHost?: (remote: string) => void): Promise<{ reached: boolean }> {
    // one transaction at a time on the one connection
    const run = this.busy.then(() => this.sendNow(envelope, message, onResults, onHost));
    this.busy = run.catch(() => {});
    return run;
  }

  private async sendNow(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>, onHost?: (remote: string) => void): Promise<{ reached: boolean }> {
    onHost?.(`peer ${this.remote}`);
    const all = (outcome: 'deferred', response: string): RecipientResult[] => envelope.to.map((address) => ({ address, outcome, response, remote: `peer ${this.remote}` }));
    let results: RecipientResult[];
    let reached = true;
    try {
      if (this.closed) throw new PeerError('the hand-off was stopped', false);
      if (!this.conn || this.conn.closed) {
        this.conn?.destroy();
        this.conn = await PeerConnection.open(this.spec, this.remote);
      }
      results = await this.conn.transaction(envelope, message);
      this.up = true;
      this.lastError = null;
    } catch (e) {
      const err = e instanceof PeerError ? e : new PeerError(`the hand-off peer ${this.remote}: ${(e as Error).message}`, false);
      this.conn?.destroy();
      this.conn = null;
      reached = err.reached;
      this.up = reached;
      this.lastError = err.message;
      results = all('deferred', err.message);
    }
    await onResults(results);
    return { reached };
  }

  health(): { up: boolean | null; lastError: string | null } {
    return { up: this.up, lastError: this.lastError };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.conn?.quit();
    this.conn = null;
  }
}

/** One SMTP session with the peer, from greeting to QUIT. */
class PeerConnection {
  private buffer = '';
  private lines: string[] = [];
  private waiting: ((r: Reply | Error) => void) | null = null;
  private pending: (Reply | Error)[] = [];
  closed = false;
  private extensions = new Set<string>();

  private constructor(
    private socket: Socket | TLSSocket,
    private readonly spec: HandoffSpec,
    private readonly remote: string,
  ) {
    this.attach(socket);
  }

  /** Connects, greets, STARTTLS when offered, logs in with the secret when there is one; checks that this is a peer listener. */
  static async open(spec: HandoffSpec, remote: string): Promise<PeerConnection> {
    const name = `the hand-off peer ${remote}`;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect({ host: spec.host, port: spec.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new PeerError(`${name} did not accept a connection within ${spec.connectTimeoutMs / 1000} s`, false));
      }, spec.connectTimeoutMs);
      // commands, the message and its final dot go out as written: with Nagle's algorithm the
      // last small write of each transaction would wait for the peer's delayed ACK (~40 ms)
      s.setNoDelay(true);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new PeerError(
            `${name} ${e.code === 'ECONNREFUSED' ? 'refused the connection (no peer listener there, or it is leaving too)' : e.code === 'ENOTFOUND' ? 'does not resolve' : `cannot be reached (${e.code ?? e.message})`}`,
            false,
          ),
        );
      });
    });
    const c = new PeerConnection(socket, spec, remote);
    try {
      await c.greet(name);
      return c;
    } catch (e) {
      c.destroy();
      throw e instanceof PeerError ? e : new PeerError(`${name}: ${(e as Error).message}`, false);
    }
  }

  private async greet(name: string): Promise<void> {
    const fail = (what: string): never => {
      throw new PeerError(`${name} ${what}`, false);
    };
    const greeting = await this.read(this.spec.connectTimeoutMs).catch(() => fail(`sent no greeting within ${this.spec.connectTimeoutMs / 1000} s`));
    if (greeting.code !== 220) fail(`greeted with ${greeting.code} ${greeting.text}`);
    await this.ehlo(name);
    let verified = false;
    if (this.extensions.has('STARTTLS')) {
      const r = await this.cmd('STARTTLS');
      if (r.code !== 220) fail(`refused STARTTLS: ${r.code} ${r.text}`);
      const tls = await this.upgrade();
      verified = this.verify(tls);
      await this.ehlo(name);
    }
    if (this.spec.secret) {
      if (!(this.socket as TLSSocket).encrypted) fail('offers no STARTTLS, and the peer secret is sent only inside TLS (give the peer listener tls: starttls)');
      if (!verified) fail(`presented a certificate that is neither this server's own (smtp.tls) nor valid for ${this.spec.hostname}: the peer secret was not sent`);
      const r = await this.cmd(`AUTH PLAIN ${Buffer.from(`\0peer\0${this.spec.secret.reveal()}`).toString('base64')}`);
      if (r.code !== 235) fail(`refused the peer secret (cluster.peers.secretFile): ${r.code} ${r.text}`);
    }
    if (!this.extensions.has(HANDOFF_EXTENSION))
      fail(`is not a peer listener of mailplane (its EHLO lacks ${HANDOFF_EXTENSION}): cluster.peers.handoff must name the role: peer listener of the other replicas`);
  }

  private async ehlo(name: string): Promise<void> {
    const r = await this.cmd(`EHLO ${this.spec.hostname}`);
    if (r.code !== 250) throw new PeerError(`${name} refused EHLO: ${r.code} ${r.text}`, false);
    this.extensions = new Set(
      r.text
        .split('\n')
        .slice(1)
        .map((l) => l.trim().split(/[\s=]/)[0]!.toUpperCase()),
    );
  }

  /** Whether the peer's certificate is ours, or one valid for our host name. */
  private verify(tls: TLSSocket): boolean {
    const cert = tls.getPeerCertificate();
    if (!cert || !cert.raw) return false;
    const fp = new X509Certificate(cert.raw).fingerprint256;
    if (this.spec.fingerprint256 && fp === this.spec.fingerprint256) return true;
    return tls.authorized && checkServerIdentity(this.spec.hostname, cert) === undefined;
  }

  private upgrade(): Promise<TLSSocket> {
    const plain = this.socket;
    for (const ev of ['data', 'error', 'close', 'end']) plain.removeAllListeners(ev);
    return new Promise((resolve, reject) => {
      const tls = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: isIP(this.spec.host) ? undefined : this.spec.host, minVersion: 'TLSv1.2' });
      tls.once('secureConnect', () => {
        tls.removeAllListeners('error');
        this.socket = tls;
        this.attach(tls);
        resolve(tls);
      });
      tls.once('error', (e: Error) => reject(new PeerError(`the hand-off peer ${this.remote}: TLS failed (${e.message})`, false)));
    });
  }

  /** One message: its recipients' results (a failure of the session throws a PeerError). */
  async transaction(envelope: Envelope, message: MessageSource): Promise<RecipientResult[]> {
    const remote = `peer ${this.remote}`;
    const name = `the hand-off peer ${this.remote}`;
    const params = [
      ...(envelope.eightBitMime ? ['BODY=8BITMIME'] : []),
      ...(envelope.smtputf8 ? ['SMTPUTF8'] : []),
      ...(envelope.arrivedAt !== undefined ? [`${ARRIVED_PARAMETER}=${Math.floor(envelope.arrivedAt)}`] : []),
    ];
    const mail = await this.cmd(`MAIL FROM:<${envelope.from}>${params.length ? ` ${params.join(' ')}` : ''}`);
    if (mail.code !== 250) {
      await this.cmd('RSET').catch(() => {});
      throw new PeerError(`${name} refused MAIL: ${mail.code} ${mail.text}`, true);
    }
    const replies = new Map<string, Reply>();
    for (const to of envelope.to) replies.set(to, await this.cmd(`RCPT TO:<${to}>`));
    const accepted = envelope.to.filter((to) => replies.get(to)!.code < 300);
    const refused = (to: string): RecipientResult => {
      const r = replies.get(to)!;
      return { address: to, outcome: r.code >= 500 ? 'failed' : 'deferred', response: `${r.code} ${r.text}`, remote };
    };
    if (!accepted.length) {
      await this.cmd('RSET');
      return envelope.to.map(refused);
    }
    const go = await this.cmd('DATA');
    if (go.code !== 354) {
      await this.cmd('RSET').catch(() => {});
      throw new PeerError(`${name} refused DATA: ${go.code} ${go.text}`, true);
    }
    await this.stream(message.open());
    const done = await this.read(REPLY_TIMEOUT_MS);
    const outcome = done.code < 300 ? 'delivered' : done.code >= 500 ? 'failed' : 'deferred';
    return envelope.to.map((to) => (accepted.includes(to) ? { address: to, outcome, response: `${done.code} ${done.text}`, remote } : refused(to)));
  }

  /** The message, dot-stuffed, then the end-of-data line; with backpressure. */
  private async stream(source: Readable): Promise<void> {
    const stuffer = new DotStuffer();
    const body = source.pipe(stuffer);
    source.on('error', (e) => stuffer.destroy(e));
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) await this.write(chunk);
    } catch (e) {
      source.destroy();
      throw new PeerError(`cannot read the queued message: ${(e as Error).message}`, true);
    }
    await this.write(Buffer.from(stuffer.endsWithCrlf ? '.\r\n' : '\r\n.\r\n'));
  }

  private write(chunk: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new PeerError(`the hand-off peer ${this.remote} closed the connection`, true));
    return new Promise((resolve, reject) => {
      const gone = () => reject(new PeerError(`the hand-off peer ${this.remote} closed the connection while the message was sent`, true));
      const ok = this.socket.write(chunk, (e) => (e ? reject(new PeerError(`the hand-off peer ${this.remote}: ${e.message}`, true)) : undefined));
      if (ok) return resolve();
      this.socket.once('close', gone);
      this.socket.once('drain', () => {
        this.socket.removeListener('close', gone);
        resolve();
      });
    });
  }

  private async cmd(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.read(REPLY_TIMEOUT_MS);
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('utf8');
      this.parse();
    });
    socket.on('error', (e: Error) => this.fail(e));
    socket.on('close', () => {
      this.closed = true;
      this.fail(new Error('the connection closed'));
    });
  }

  private parse(): void {
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl < 0) return;
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      this.lines.push(line);
      if (line[3] !== '-') {
        const code = Number(line.slice(0, 3));
        const text = this.lines.map((l) => l.slice(4)).join('\n');
        this.lines = [];
        this.deliver({ code: Number.isInteger(code) ? code : 0, text });
      }
    }
  }

  private deliver(r: Reply | Error): void {
    const w = this.waiting;
    this.waiting = null;
    if (w) w(r);
    else this.pending.push(r);
  }

  private fail(e: Error): void {
    this.closed = true;
    this.deliver(e);
  }

  private read(timeoutMs: number): Promise<Reply> {
    const next = this.pending.shift();
    if (next) return next instanceof Error ? Promise.reject(new PeerError(`the hand-off peer ${this.remote}: ${next.message}`, true)) : Promise.resolve(next);
    if (this.closed) return Promise.reject(new PeerError(`the hand-off peer ${this.remote} closed the connection`, true));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        this.destroy();
        reject(new PeerError(`the hand-off peer ${this.remote} did not answer within ${Math.round(timeoutMs / 1000)} s`, true));
      }, timeoutMs);
      this.waiting = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(new PeerError(`the hand-off peer ${this.remote}: ${r.message}`, true));
        else resolve(r);
      };
    });
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    const t = setTimeout(() => this.destroy(), 2000);
    await this.cmd('QUIT').catch(() => {});
    clearTimeout(t);
    this.destroy();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }
}

/**
 * SMTP's transparency (RFC 5321 §4.5.2): a line starting with '.' gets one more. The queued
 * bytes have CRLF line ends only (smtp/session.ts stores them so); remembers whether they end in one.
 */
export class DotStuffer extends Transform {
  private lineStart = true;
  private last2 = '';

  get endsWithCrlf(): boolean {
    return this.last2 === '\r\n';
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!chunk.length) return cb();
    const parts: Buffer[] = [];
    let from = 0;
    for (let i = 0; i < chunk.length; i++) {
      if (this.lineStart && chunk[i] === 0x2e) {
        parts.push(chunk.subarray(from, i), DOT);
        from = i;
      }
      this.lineStart = chunk[i] === 0x0a;
    }
    parts.push(chunk.subarray(from));
    this.last2 = (this.last2 + chunk.subarray(Math.max(0, chunk.length - 2)).toString('latin1')).slice(-2);
    cb(null, parts.length === 1 ? chunk : Buffer.concat(parts));
  }
}

const DOT = Buffer.from('.');
