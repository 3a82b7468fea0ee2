// Rspamd's HTTP protocol (POST /checkv2): the message streamed as the request body, the
// envelope and session facts as request headers, the verdict as JSON. One request per message,
// bounded by the configured timeout; anything but a usable verdict is a ScanError.
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import type { SpamFilterState } from '../config/desired-state.js';

export const RSPAMD_ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'] as const;
export type RspamdAction = (typeof RSPAMD_ACTIONS)[number];

export interface ScanInput {
  /** the message as received (without our trace headers) */
  readonly message: Readable;
  readonly length: number;
  readonly ip: string;
  readonly helo: string;
  /** MAIL FROM; '' for the null sender */
  readonly from: string;
  readonly rcpt: readonly string[];
  readonly user: string | null;
  readonly queueId: string;
  readonly hostname: string;
  readonly tls: { readonly version: string; readonly cipher: string } | null;
  /** an exempt or LAN client: sent as `MTA-Tag: trusted` */
  readonly trusted: boolean;
}

export interface ScanResult {
  readonly action: RspamdAction;
  readonly score: number;
  readonly required: number;
  /** `NAME(score)` of every symbol, highest score first */
  readonly symbols: readonly string[];
  /** Rspamd's SMTP message for a refusal, one printable line */
  readonly message: string | null;
  /** the subject for `rewrite subject` */
  readonly subject: string | null;
  /** header fields Rspamd asks to add (milter protocol) */
  readonly addHeaders: readonly { readonly name: string; readonly value: string }[];
  /** header fields Rspamd asks to remove: index 0 = all of them */
  readonly removeHeaders: readonly { readonly name: string; readonly index: number }[];
}

export class ScanError extends Error {}

/** What a scan needs of the configuration (the password a Secret). */
export type RspamdSpec = Pick<SpamFilterState, 'url' | 'password' | 'timeoutMs'>;

const FIELD_NAME = /^[!-9;-~]{1,76}$/;

export class RspamdClient {
  private readonly agent: http.Agent;

  constructor(private readonly spec: RspamdSpec) {
    const secure = spec.url.startsWith('https:');
    this.agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  /** The verdict for one message; a ScanError when Rspamd cannot give one within the timeout. */
  scan(input: ScanInput): Promise<ScanResult> {
    const headers: http.OutgoingHttpHeaders = {
      'Content-Length': String(input.length),
      IP: input.ip,
      Helo: input.helo || 'unknown',
      From: input.from ? input.from : '<>',
      Rcpt: [...input.rcpt],
      'Queue-Id': input.queueId,
      'MTA-Name': input.hostname,
    };
    if (input.user) headers.User = input.user;
    if (input.tls) {
      headers['TLS-Version'] = input.tls.version;
      headers['TLS-Cipher'] = input.tls.cipher;
    }
    if (input.trusted) headers['MTA-Tag'] = 'trusted';
    if (this.spec.password) headers.Password = this.spec.password.reveal();
    return this.request('/checkv2', 'POST', headers, input.message).then(parseVerdict);
  }

  /** Whether Rspamd answers its /ping (for the health probe while no mail arrives). */
  async ping(): Promise<void> {
    const body = await this.request('/ping', 'GET', this.spec.password ? { Password: this.spec.password.reveal() } : {}, null);
    if (!/pong/i.test(body)) throw new ScanError('unexpected answer to /ping');
  }

  close(): void {
    this.agent.destroy();
  }

  private request(path: string, method: string, headers: http.OutgoingHttpHeaders, body: Readable | null): Promise<string> {
    const url = new URL(`${this.spec.url}${path}`);
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<string>((resolve, reject) => {
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        body?.destroy();
        reject(new ScanError(why));
      };
      const timer = setTimeout(() => fail(`no answer within ${this.spec.timeoutMs} ms`), this.spec.timeoutMs);
      const req = lib.request(url, { method, headers, agent: this.agent }, (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 4 * 1024 * 1024) return fail('answer too large');
          parts.push(c);
        });
        res.on('error', (e) => fail(e.message));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const text = Buffer.concat(parts).toString('utf8');
          if (res.statusCode !== 200) return reject(new ScanError(`HTTP ${res.statusCode}${text ? `: ${oneLine(text).slice(0, 200)}` : ''}`));
          resolve(text);
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => fail(e.code ? `${e.code} ${url.host}` : e.message));
      if (!body) return void req.end();
      body.on('error', (e) => fail(`reading the message: ${e.message}`));
      body.pipe(req);
    });
  }
}

function parseVerdict(text: string): ScanResult {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new ScanError('the answer is not JSON');
  }
  const action = j.action;
  if (typeof action !== 'string' || !(RSPAMD_ACTIONS as readonly string[]).includes(action)) throw new ScanError(`unknown action ${JSON.stringify(action)}`);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const symbols = Object.values((j.symbols ?? {}) as Record<string, { name?: unknown; score?: unknown; options?: unknown }>)
    .filter((s) => s && typeof s.name === 'string')
    .sort((a, b) => num(b.score) - num(a.score))
    .map((s) => `${safeToken(String(s.name))}(${num(s.score).toFixed(2)})`);
  const messages = (j.messages ?? {}) as Record<string, unknown>;
  const milter = (j.milter ?? {}) as { add_headers?: Record<string, unknown>; remove_headers?: Record<string, unknown> };
  const addHeaders: { name: string; value: string }[] = [];
  for (const [name, v] of Object.entries(milter.add_headers ?? {})) {
    if (!FIELD_NAME.test(name)) continue;
    for (const one of Array.isArray(v) ? v : [v]) {
      const value = typeof one === 'string' ? one : typeof one === 'object' && one && typeof (one as { value?: unknown }).value === 'string' ? (one as { value: string }).value : null;
      if (value !== null) addHeaders.push({ name, value: oneLine(value) });
    }
  }
  const removeHeaders = Object.entries(milter.remove_headers ?? {})
    .filter(([name, v]) => FIELD_NAME.test(name) && typeof v === 'number' && Number.isInteger(v))
    .map(([name, v]) => ({ name, index: v as number }));
  return {
    action: action as RspamdAction,
    score: num(j.score),
    required: num(j.required_score),
    symbols,
    message: typeof messages.smtp_message === 'string' && messages.smtp_message.trim() ? printable(messages.smtp_message).slice(0, 200) : null,
    subject: typeof j.subject === 'string' ? j.subject : null,
    addHeaders,
    removeHeaders,
  };
}

function oneLine(s: string): string {
  return s.replace(/\r?\n[ \t]*/g, ' ').replace(/\p{Cc}/gu, ' ');
}

/** For an SMTP reply: printable ASCII only. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]+/g, ' ').trim();
}

function safeToken(s: string): string {
  return s.replace(/[^\w.-]/g, '_').slice(0, 64);
}
