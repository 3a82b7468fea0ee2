// Local delivery over LMTP (RFC 2033), to Dovecot or any LMTP server, on a TCP port or a unix
// socket: mailboxes.store: lmtp. One connection and one transaction per message for all its
// local recipients; after DATA the server answers once per accepted recipient, and each reply
// is that recipient's result: 2xx delivered, 4xx deferred (retried with backoff), 5xx failed
// (bounced). A connection that fails or drops defers whatever got no reply yet, never what the
// server already took. The message is streamed from the queued file (nodemailer's
// SMTPConnection dot-stuffs it on the way); it is never read whole.
import { connect as netConnect, type Socket } from 'node:net';
import SMTPConnection, { type SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection';
import { formatLmtpTarget } from '../config/check-mailboxes.js';
import type { LmtpTarget } from '../config/desired-state.js';
import type { MailboxesSpec } from '../plan/specs.js';
import type { Envelope, MessageSource, Outcome, RecipientResult, Transport } from './transports.js';

interface LmtpError extends Error {
  code?: string;
  originalCode?: string;
  command?: string;
  responseCode?: number;
  response?: string;
  recipient?: string;
  rejectedErrors?: LmtpError[];
}

/** How long a delivery may go without any reply from the server (a large message being saved included). */
const SOCKET_TIMEOUT_MS = 5 * 60_000;

const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'refused the connection (nothing listens there: is the LMTP service running?)',
  ENOENT: 'does not exist (is the LMTP service running, and is this its socket?)',
  EACCES: 'may not be opened by mailplane (permission denied: the socket must be writable for mailplane’s user or group, see docs/dovecot.md)',
  ECONNRESET: 'reset the connection',
  EPIPE: 'closed the connection while we were writing',
  EHOSTUNREACH: 'cannot be reached (no route to the host)',
  ENETUNREACH: 'cannot be reached (no route to its network)',
  ENOTFOUND: 'does not resolve: no such host name',
  EAI_AGAIN: 'could not be resolved: the DNS lookup failed for now',
};

export class LmtpTransport implements Transport {
  readonly kind = 'lmtp' as const;
  readonly target: LmtpTarget;
  /** how errors and results name the server */
  readonly remote: string;
  private readonly name: string;
  private up: boolean | null = null;
  private lastError: string | null = null;
  private readonly open = new Set<SMTPConnection>();
  private closed = false;

  constructor(private readonly spec: MailboxesSpec) {
    if (!spec.lmtp) throw new Error('no LMTP server configured');
    this.target = spec.lmtp;
    this.remote = `lmtp:${formatLmtpTarget(spec.lmtp)}`;
    this.name = `the LMTP ${'path' in spec.lmtp ? 'socket' : 'server'} ${formatLmtpTarget(spec.lmtp)}`;
  }

  async send(envelope: Envelope, message: MessageSource, onResults: (r: RecipientResult[]) => Promise<void>, onHost?: (remote: string) => void): Promise<{ reached: boolean }> {
    onHost?.(this.remote);
    const paths = envelope.paths ?? envelope.to;
    const all = (outcome: Outcome, response: string): RecipientResult[] => envelope.to.map((address) => ({ address, outcome, response, remote: this.remote }));
    let conn: SMTPConnection;
    try {
      conn = await this.connect();
    } catch (e) {
      const response = this.explain(e as LmtpError);
      this.up = false;
      this.lastError = response;
      await onResults(all('deferred', response));
      return { reached: false };
    }
    // the reply after DATA for each recipient, as it arrives: what a dropped connection leaves decided stays decided
    const replies = new Map<string, string>();
    const internals = conn as unknown as { _actionLMTPStream?: (recipient: string, final: boolean, str: string, cb: unknown) => unknown };
    const original = internals._actionLMTPStream;
    if (typeof original === 'function') {
      internals._actionLMTPStream = function (this: unknown, recipient, final, str, cb) {
        replies.set(recipient, str);
        return original.call(this, recipient, final, str, cb);
      };
    }
    const raw = message.open();
    let results: RecipientResult[];
    let reached = true;
    try {
      const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) =>
        conn.send({ from: envelope.from || false, to: [...paths], use8BitMime: !!envelope.eightBitMime }, raw, (err, i) => (err ? reject(err) : resolve(i))),
      );
      const refused = new Map((info.rejectedErrors ?? []).map((x) => [(x as LmtpError).recipient ?? '', x as LmtpError]));
      const accepted = new Set(info.accepted);
      results = envelope.to.map((address, i): RecipientResult => {
        const path = paths[i]!;
        if (accepted.has(path)) return { address, outcome: 'delivered', response: firstLine(replies.get(path) ?? info.response), remote: this.remote };
        const x = refused.get(path);
        return x ? this.refusal(address, x) : { address, outcome: 'deferred', response: `${this.name} did not accept the recipient`, remote: this.remote };
      });
    } catch (err) {
      const e = err as LmtpError;
      const byPath = new Map((e.rejectedErrors ?? []).map((x) => [x.recipient ?? '', x]));
      reached = !!e.command && /^(MAIL FROM|RCPT TO|DATA)/.test(e.command);
      results = envelope.to.map((address, i): RecipientResult => {
        const path = paths[i]!;
        const reply = replies.get(path);
        if (reply !== undefined)
          return /^2/.test(reply)
            ? { address, outcome: 'delivered', response: firstLine(reply), remote: this.remote }
            : this.refusal(address, { ...e, response: reply, responseCode: Number(reply.slice(0, 3)), command: 'DATA' });
        const x = byPath.get(path);
        if (x) return this.refusal(address, x);
        // a reply to MAIL or DATA, or none at all (the connection failed): nothing was delivered
        return e.responseCode && /^(MAIL FROM|DATA)/.test(e.command ?? '') ? this.refusal(address, e) : { address, outcome: 'deferred', response: this.explain(e), remote: this.remote };
      });
    } finally {
      raw.destroy();
      this.release(conn);
    }
    this.up = reached;
    this.lastError = reached ? null : (results[0]?.response ?? null);
    await onResults(results);
    return { reached };
  }

  /** A reply refusing a recipient: 5xx fails it (bounced), anything else defers it. */
  private refusal(address: string, e: LmtpError): RecipientResult {
    const reply = e.response ? firstLine(e.response) : this.explain(e);
    const permanent = (e.responseCode ?? Number(reply.slice(0, 3))) >= 500;
    return { address, outcome: permanent ? 'failed' : 'deferred', response: reply, remote: this.remote };
  }

  /** A connection that has greeted and answered LHLO. */
  private async connect(): Promise<SMTPConnection> {
    if (this.closed) throw Object.assign(new Error('the LMTP client was replaced (a reload)'), { code: 'ECONNECTION' });
    const t = this.target;
    const timeout = this.spec.connectTimeoutMs;
    const options: SMTPConnectionOptions = {
      lmtp: true,
      name: this.spec.hostname,
      ignoreTLS: true,
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: SOCKET_TIMEOUT_MS,
      logger: false,
    };
    if ('path' in t) options.connection = await unixSocket(t.path, timeout);
    else Object.assign(options, { host: t.host, port: t.port });
    const conn = new SMTPConnection(options);
    this.open.add(conn);
    return new Promise((resolve, reject) => {
      let settled = false;
      conn.on('error', (e: Error) => {
        if (settled) return;
        settled = true;
        this.release(conn);
        reject(e);
      });
      conn.connect((err) => {
        if (settled) return;
        settled = true;
        if (err) {
          this.release(conn);
          return reject(err);
        }
        resolve(conn);
      });
    });
  }

  private release(conn: SMTPConnection): void {
    if (!this.open.delete(conn)) return;
    conn.quit(); // closes once the 221 arrives
    setTimeout(() => conn.close(), 5000).unref();
  }

  /** Why a connection or the session failed, as a sentence naming the server. */
  private explain(e: LmtpError): string {
    const reply = e.response ? firstLine(e.response) : null;
    const code = e.originalCode ?? e.code ?? '';
    if (SOCKET_ERRORS[code]) return `${this.name} ${SOCKET_ERRORS[code]}`;
    if (e.code === 'ETIMEDOUT') {
      if (/greeting|connection timeout/i.test(e.message)) return `${this.name} did not answer within ${Math.round(this.spec.connectTimeoutMs / 100) / 10} s`;
      return `${this.name} stopped answering in the middle of the session`;
    }
    if (reply && e.command) return `${this.name} refused ${e.command}: ${reply}`;
    if (e.code === 'ECONNECTION') return `${this.name} closed the connection${e.command && e.command !== 'CONN' ? ` after ${e.command}` : ''}${reply ? `: ${reply}` : ''}`;
    return `${this.name}: ${e.message.trim()}`.slice(0, 300);
  }

  health(): { up: boolean | null; lastError: string | null } {
    return { up: this.up, lastError: this.lastError };
  }

  close(): Promise<void> {
    this.closed = true;
    for (const c of this.open) c.close();
    this.open.clear();
    return Promise.resolve();
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

/** A connected unix socket, or the error of connecting (ENOENT, ECONNREFUSED, EACCES …). */
function unixSocket(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('connection timeout'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
