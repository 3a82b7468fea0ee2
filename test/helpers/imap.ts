// Minimal IMAP and POP3 clients for the tests that read mail back from Dovecot: raw bytes
// (latin1), over TLS (IMAPS, POP3S) or plain TCP, read up to a pattern.
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

/** A connection read up to a pattern. */
export class Wire {
  private buf = '';
  private wake: (() => void) | null = null;
  private constructor(readonly socket: Socket | TLSSocket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    socket.on('close', () => this.wake?.());
    socket.on('error', () => this.wake?.());
  }

  /** TLS unless `tls: false` (the certificate is not checked: the tests' own). */
  static async connect(port: number, o: { tls?: boolean; servername?: string } = {}): Promise<Wire> {
    if (o.tls === false) {
      const socket = netConnect({ port, host: '127.0.0.1' });
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      return new Wire(socket);
    }
    const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: o.servername ?? 'mail.example.com' });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    return new Wire(socket);
  }

  write(s: string): void {
    this.socket.write(Buffer.from(s, 'latin1'));
  }

  /** Everything up to and including the first match of `re` (consumed). */
  async until(re: RegExp, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.buf);
      if (m) {
        const out = this.buf.slice(0, m.index + m[0].length);
        this.buf = this.buf.slice(m.index + m[0].length);
        return out;
      }
      if (this.socket.destroyed || Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(this.buf.slice(0, 2000))}`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
  }

  close(): void {
    this.socket.end();
  }
}

/** IMAP: one tagged command at a time, its whole response as text. */
export class Imap {
  private n = 0;
  private constructor(private readonly w: Wire) {}

  static async connect(port: number, o: { tls?: boolean; servername?: string } = {}): Promise<Imap> {
    const w = await Wire.connect(port, o);
    await w.until(/^\* OK .*\r\n/m);
    return new Imap(w);
  }

  /** A command; its whole response up to the tagged reply, and whether that was OK. */
  async run(line: string): Promise<{ ok: boolean; text: string }> {
    const tag = `t${++this.n}`;
    this.w.write(`${tag} ${line}\r\n`);
    const text = await this.w.until(new RegExp(`^${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n`, 'm'));
    return { ok: new RegExp(`^${tag} OK`, 'm').test(text), text };
  }

  /** A command that must succeed: its whole response. */
  async cmd(line: string): Promise<string> {
    const r = await this.run(line);
    assert.ok(r.ok, `${line}:\n${r.text}`);
    return r.text;
  }

  /** BODY[] of message n, exactly as the server has it. */
  async fetch(n: number, mailbox = 'INBOX'): Promise<Buffer> {
    await this.cmd(`EXAMINE ${mailbox}`);
    const text = await this.cmd(`FETCH ${n} BODY.PEEK[]`);
    const m = /BODY\[\] \{(\d+)\}\r\n/.exec(text);
    assert.ok(m, text.slice(0, 500));
    const start = m.index + m[0].length;
    return Buffer.from(text.slice(start, start + Number(m[1])), 'latin1');
  }

  async count(mailbox = 'INBOX'): Promise<number> {
    const t = await this.cmd(`EXAMINE ${mailbox}`);
    return Number(/^\* (\d+) EXISTS/m.exec(t)![1]);
  }

  close(): void {
    this.w.write('z LOGOUT\r\n');
    this.w.close();
  }
}

/** An IMAP session logged in as `user`, or null when the login is refused. */
export async function imapLogin(port: number, user: string, password: string, o: { tls?: boolean; servername?: string } = {}): Promise<Imap | null> {
  const c = await Imap.connect(port, o);
  const r = await c.run(`LOGIN ${user} "${password}"`);
  if (r.ok) return c;
  c.close();
  return null;
}

/** POP3 over TLS: USER/PASS, then RETR 1, dot-unstuffed. */
export async function pop3Retr(port: number, user: string, password: string, o: { servername?: string } = {}): Promise<Buffer> {
  const w = await Wire.connect(port, o);
  try {
    await w.until(/^\+OK.*\r\n/m);
    w.write(`USER ${user}\r\n`);
    await w.until(/^\+OK.*\r\n/m);
    w.write(`PASS ${password}\r\n`);
    await w.until(/^\+OK.*\r\n/m);
    w.write('RETR 1\r\n');
    await w.until(/^\+OK.*\r\n/m);
    const data = await w.until(/\r\n\.\r\n/);
    w.write('QUIT\r\n');
    return Buffer.from(data.slice(0, -3).replace(/(^|\r\n)\.\./g, '$1.'), 'latin1');
  } finally {
    w.close();
  }
}
