// A raw SMTP client for exact replies and protocol edge cases (nodemailer hides both).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface Reply {
  code: number;
  lines: string[];
  /** all lines joined, without the code prefixes */
  text: string;
}

export interface ClientOptions {
  host?: string;
  port: number;
  /** bind the client to this loopback address to play a different client IP */
  localAddress?: string;
  implicitTls?: boolean;
  timeoutMs?: number;
}

export class SmtpClient {
  private buffer = '';
  private waiters: ((r: Reply | Error) => void)[] = [];
  private replies: (Reply | Error)[] = [];
  closed = false;

  private constructor(private socket: Socket | TLSSocket) {
    this.attach(socket);
  }

  static async connect(o: ClientOptions): Promise<{ client: SmtpClient; greeting: Reply }> {
    const host = o.host ?? '127.0.0.1';
    const raw = netConnect({ host, port: o.port, localAddress: o.localAddress });
    const socket: Socket = o.implicitTls ? tlsConnect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' }) : raw;
    socket.setTimeout(o.timeoutMs ?? 10_000, () => socket.destroy(new Error('client timeout')));
    const client = new SmtpClient(socket);
    const greeting = await client.read();
    return { client, greeting };
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.parse();
    });
    socket.on('error', (e) => this.push(e));
    socket.on('close', () => {
      this.closed = true;
      this.push(new Error('connection closed'));
    });
  }

  private parse(): void {
    let lines: string[] = [];
    for (;;) {
      const nl = this.buffer.indexOf('\r\n');
      if (nl < 0) return;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 2);
      lines.push(line);
      if (line[3] !== '-') {
        this.push({ code: Number(line.slice(0, 3)), lines, text: lines.map((l) => l.slice(4)).join('\n') });
        lines = [];
      }
    }
  }

  private push(r: Reply | Error): void {
    const w = this.waiters.shift();
    if (w) w(r);
    else if (!(r instanceof Error) || this.replies.length === 0) this.replies.push(r);
  }

  /** The next reply (rejects when the connection closes first). */
  read(): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => this.waiters.push((x) => (x instanceof Error ? reject(x) : resolve(x))));
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async cmd(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  async ehlo(name = 'client.test'): Promise<Reply> {
    return this.cmd(`EHLO ${name}`);
  }

  async starttls(): Promise<Reply> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) return r;
    this.socket = await upgradeToTls(this.socket);
    this.attach(this.socket);
    return r;
  }

  get tlsSocket(): TLSSocket | null {
    return 'getPeerCertificate' in this.socket ? this.socket : null;
  }

  async authPlain(user: string, pass: string): Promise<Reply> {
    return this.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`);
  }

  /** DATA with the body dot-stuffed and terminated; returns [354 reply, final reply]. */
  async data(body: string | Buffer): Promise<[Reply, Reply]> {
    const go = await this.cmd('DATA');
    if (go.code !== 354) return [go, go];
    const text = Buffer.isBuffer(body) ? body.toString('latin1') : body;
    const stuffed = text.replace(/(^|\r\n)\./g, '$1..');
    this.socket.write(Buffer.from(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`, 'latin1'));
    return [go, await this.read()];
  }

  /** MAIL, RCPT… and DATA in one go; returns every reply. */
  async send(from: string, to: string[], body: string): Promise<{ mail: Reply; rcpt: Reply[]; data?: Reply }> {
    const mail = await this.cmd(`MAIL FROM:<${from}>`);
    const rcpt: Reply[] = [];
    for (const t of to) rcpt.push(await this.cmd(`RCPT TO:<${t}>`));
    if (mail.code !== 250 || !rcpt.some((r) => r.code === 250)) {
      await this.cmd('RSET');
      return { mail, rcpt };
    }
    const [, data] = await this.data(body);
    return { mail, rcpt, data };
  }

  /** Resolves once the server has closed the connection. */
  waitClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    try {
      await this.cmd('QUIT');
    } catch {}
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The client side of STARTTLS after the 220: the plain socket's listeners go, TLS takes over. */
export async function upgradeToTls(plain: Socket): Promise<TLSSocket> {
  for (const ev of ['data', 'end', 'close', 'error']) plain.removeAllListeners(ev);
  const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
  });
  return secure;
}

export function message(subject: string, body = 'Hello.\r\n', extra = ''): string {
  return `From: sender@example.net\r\nTo: someone@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@test>\r\n${extra}\r\n${body}`;
}
