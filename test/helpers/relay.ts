// A second real SMTP server for delivery tests: a smarthost with STARTTLS and AUTH (587-style)
// or implicit TLS (465-style), or a plain MX. It records what it receives and answers
// recipients by their local part: fail-* 550, defer-* 451, otherwise 250.
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { serverCert } from './tls.js';

export interface Received {
  readonly from: string;
  readonly to: string[];
  readonly raw: Buffer;
  readonly secure: boolean;
  readonly user: string | null;
  /** when it arrived (ms since the epoch) */
  readonly at: number;
}

export interface RelayOptions {
  readonly port: number;
  readonly mode: 'starttls' | 'implicit' | 'plain';
  /** require AUTH with this account */
  readonly account?: { user: string; pass: string };
  readonly name?: string;
  /** the loopback address to listen on (127.0.0.1 unless given) */
  readonly host?: string;
}

export class TestRelay {
  readonly messages: Received[] = [];
  readonly authFailures: string[] = [];
  /** RCPT attempts seen, per address (retries show up here, deliveries in messages) */
  readonly rcptSeen: string[] = [];
  /** while true, defer-* recipients get 451 */
  deferring = true;
  private server: SMTPServer | null = null;

  constructor(readonly o: RelayOptions) {}

  async start(): Promise<this> {
    const cert = serverCert(this.o.name ?? 'relay.test');
    const options: SMTPServerOptions = {
      secure: this.o.mode === 'implicit',
      key: cert.keyPem,
      cert: cert.certPem,
      disabledCommands: this.o.mode === 'plain' ? ['STARTTLS', 'AUTH'] : this.o.account ? [] : ['AUTH'],
      authOptional: !this.o.account,
      disableReverseLookup: true,
      logger: false,
      onAuth: (auth, _s, cb) => {
        const a = this.o.account;
        if (a && auth.username === a.user && auth.password === a.pass) return cb(null, { user: a.user });
        this.authFailures.push(auth.username ?? '');
        const err = new Error('5.7.8 Authentication credentials invalid') as Error & { responseCode: number };
        err.responseCode = 535;
        cb(err);
      },
      onRcptTo: (addr, _s, cb) => {
        const local = addr.address.split('@')[0]!;
        this.rcptSeen.push(addr.address);
        if (local.startsWith('fail')) return cb(Object.assign(new Error('5.1.1 <' + addr.address + '>: no such user here'), { responseCode: 550 }));
        if (local.startsWith('defer') && this.deferring) return cb(Object.assign(new Error('4.2.0 <' + addr.address + '>: mailbox busy, try later'), { responseCode: 451 }));
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          this.messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks),
            secure: session.secure,
            user: (session.user as string | undefined) ?? null,
            at: Date.now(),
          });
          cb(null, 'queued at the test relay');
        });
      },
    };
    this.server = new SMTPServer(options);
    this.server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      this.server!.server.once('error', reject);
      this.server!.listen(this.o.port, this.o.host ?? '127.0.0.1', () => resolve());
    });
    return this;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    for (const c of s.connections) c.close();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Messages received for an address (every copy: duplicates show up as more than one). */
  for(address: string): Received[] {
    return this.messages.filter((m) => m.to.some((t) => t.toLowerCase() === address.toLowerCase()));
  }
}
