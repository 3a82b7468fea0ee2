// Contract tests for the smtp-server internals mailplane relies on (src/smtp/engine.ts, whose
// header lists them). One test per member, named after it, in-process against the real
// library on 127.0.0.1. A failure here after an upgrade means the library changed something
// the engine depends on: read its CHANGELOG for that member before changing anything else
// (docs/smtp-server.md).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, Server, Socket, type AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import type { ListenerTls } from '../src/config/desired-state.js';
import type { IssuedCert } from '../src/tls/devcert.js';
import { MailplaneConnection, MailplaneSMTPServer, SMTP_SERVER_REVIEWED, SmtpEngine, inSweep, type EngineHandlers } from '../src/smtp/engine.js';
import { Replies, type SmtpReply } from '../src/smtp/replies.js';
import type { Session, SessionState } from '../src/smtp/session.js';
import type { Reply } from './helpers/smtp.js';
import { SmtpClient, upgradeToTls } from './helpers/smtp.js';
import { serverCert } from './helpers/tls.js';

const IDLE_MS = 30_000;
const HOST = 'mail.example.com';
const POLICY = { commandTimeoutMs: 30_000, dataTimeoutMs: 300_000, maxMessageSize: 1_234_567 };
const FAR = 1e9; // ms: a `now` past every progress limit

/** The assertion message for a broken contract: which member, what changed. */
function broken(member: string, what: string): string {
  return `smtp-server contract broken: ${member}: ${what}. See src/smtp/engine.ts and docs/smtp-server.md.`;
}

async function until(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let certs: { a: IssuedCert; b: IssuedCert } | undefined;
function cert(which: 'a' | 'b'): IssuedCert {
  certs ??= { a: serverCert(HOST), b: serverCert('swap.example.net') };
  return certs[which];
}
function contextOf(c: IssuedCert): SecureContext {
  return createSecureContext({ cert: c.certPem, key: c.keyPem, minVersion: 'TLSv1.2' });
}

/** What the fake session handlers saw, and switches to hold a command or a message. */
interface Probe {
  hostname: string;
  sessions: Session[];
  states: SessionState[];
  rejected: string[];
  secured: number;
  auths: string[];
  closed: string[];
  refuse: SmtpReply | null;
  holdRcpt: boolean;
  heldRcpt: (() => void) | null;
  holdData: boolean;
  heldData: (() => void) | null;
}

interface Harness {
  engine: SmtpEngine;
  probe: Probe;
  port: number;
  /** sockets the test's accept loop handed to the engine */
  accepted: Socket[];
  errors: Error[];
  client(implicitTls?: boolean): Promise<{ client: SmtpClient; greeting: Reply }>;
  wire(o?: { allowHalfOpen?: boolean; first?: string }): Promise<Wire>;
  /** the one open connection */
  only(): MailplaneConnection;
}

/** An engine built the way Listener builds it, fed by a loopback accept loop; stopped after the test. */
async function start(t: TestContext, o: { tls?: ListenerTls; proxy?: boolean } = {}): Promise<Harness> {
  const probe: Probe = { hostname: HOST, sessions: [], states: [], rejected: [], secured: 0, auths: [], closed: [], refuse: null, holdRcpt: false, heldRcpt: null, holdData: false, heldData: null };
  const handlers: EngineHandlers = {
    hostname: () => probe.hostname,
    reject: (_st, err) => {
      probe.rejected.push(err.message);
      return err as SmtpReply;
    },
    onConnect: (session, cb) => {
      probe.sessions.push(session);
      if (probe.refuse) return cb(probe.refuse);
      const st = { policy: { ...POLICY } } as unknown as SessionState;
      probe.states.push(st);
      session.mp = st;
      cb();
    },
    onSecure: (_socket, _session, cb) => {
      probe.secured++;
      cb();
    },
    onAuth: (auth, _session, cb) => {
      if (auth.password !== 'secret') return cb(Replies.authFailed());
      probe.auths.push(auth.username ?? '');
      cb(null, { user: auth.username });
    },
    onMailFrom: (_address, _session, cb) => cb(),
    onRcptTo: (address, _session, cb) => {
      if (address.address.startsWith('nobody@')) return cb(Replies.unknownRecipient(address.address));
      if (probe.holdRcpt) probe.heldRcpt = () => cb();
      else cb();
    },
    onData: (stream, _session, cb) => {
      stream.on('data', () => {});
      stream.on('end', () => {
        const finish = () => cb(null, '2.0.0 Ok: queued as TEST');
        if (probe.holdData) probe.heldData = finish;
        else finish();
      });
    },
    onClose: (session) => {
      probe.closed.push(session.id);
    },
  };
  const tlsMode = o.tls ?? 'starttls';
  const a = cert('a');
  const engine = new SmtpEngine({
    spec: { name: 'contract', port: 0, address: '127.0.0.1', role: 'mx', tls: tlsMode, proxyProtocol: o.proxy ?? false },
    handlers,
    tls: tlsMode === 'none' ? null : { cert: a.certPem, key: a.keyPem, context: contextOf(a) },
    idleTimeoutMs: IDLE_MS,
  });
  const errors: Error[] = [];
  engine.onError((err) => errors.push(err));
  const accepted: Socket[] = [];
  const loop = createServer((socket) => {
    accepted.push(socket);
    engine.accept(socket);
  });
  loop.on('error', () => {});
  await new Promise<void>((resolve) => loop.listen(0, '127.0.0.1', resolve));
  const port = (loop.address() as AddressInfo).port;
  const opened: { destroy(): void }[] = [];
  t.after(async () => {
    for (const c of opened) c.destroy();
    engine.closeSessions(421, '4.3.2 test over');
    for (const s of accepted) s.destroy();
    await new Promise<void>((resolve) => loop.close(() => resolve()));
  });
  return {
    engine,
    probe,
    port,
    accepted,
    errors,
    async client(implicitTls = false) {
      const c = await SmtpClient.connect({ port, implicitTls, timeoutMs: 5000 });
      opened.push(c.client);
      return c;
    },
    async wire(w = {}) {
      const c = await Wire.open(port, w);
      opened.push(c);
      return c;
    },
    only() {
      const all = [...engine.server.connections];
      assert.equal(all.length, 1, 'the test expects exactly one open connection');
      return all[0] as MailplaneConnection;
    },
  };
}

/**
 * A bare client for what SmtpClient does not do: talk before the greeting, send a PROXY
 * header, keep its side open after the server's FIN, pause between STARTTLS's 220 and the
 * handshake.
 */
class Wire {
  private buffer = '';
  private pending: string[] = [];
  private readonly replies: Reply[] = [];
  private readonly waiters: ((r: Reply | null) => void)[] = [];
  ended = false;
  closed = false;

  private constructor(public socket: Socket | TLSSocket) {
    this.attach(socket);
  }

  static open(port: number, o: { allowHalfOpen?: boolean; first?: string }): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port, allowHalfOpen: o.allowHalfOpen ?? false });
      s.once('error', reject);
      s.once('connect', () => {
        if (o.first) s.write(o.first);
        resolve(new Wire(s));
      });
    });
  }

  private attach(s: Socket | TLSSocket): void {
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      this.buffer += d;
      for (let nl = this.buffer.indexOf('\r\n'); nl >= 0; nl = this.buffer.indexOf('\r\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 2);
        this.pending.push(line);
        if (line[3] === '-') continue;
        const lines = this.pending;
        this.pending = [];
        const r: Reply = { code: Number(line.slice(0, 3)), lines, text: lines.map((l) => l.slice(4)).join('\n') };
        const w = this.waiters.shift();
        if (w) w(r);
        else this.replies.push(r);
      }
    });
    s.on('end', () => (this.ended = true));
    s.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
    s.on('error', () => {});
  }

  async reply(what: string): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return queued;
    if (this.closed) throw new Error(`connection closed before the reply to ${what}`);
    let timer: NodeJS.Timeout | undefined;
    const r = await new Promise<Reply | null>((resolve) => {
      this.waiters.push(resolve);
      timer = setTimeout(() => resolve(null), 5000);
    });
    clearTimeout(timer);
    if (!r) throw new Error(`no reply to ${what}`);
    return r;
  }

  cmd(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.reply(line);
  }

  /** The TLS handshake after a 220 to STARTTLS. */
  async handshake(): Promise<void> {
    this.socket = await upgradeToTls(this.socket);
    this.attach(this.socket);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Replaces conn.send with a recorder that still sends; returns what was sent. */
function recordSends(conn: MailplaneConnection): { code: number; data: unknown }[] {
  const sent: { code: number; data: unknown }[] = [];
  const real = conn.send.bind(conn);
  conn.send = (code, data, context) => {
    sent.push({ code, data });
    real(code, data, context);
  };
  return sent;
}

const features = (ehlo: Reply): string[] => ehlo.lines.slice(1).map((l) => l.slice(4));

// ---------------------------------------------------------------------------------------------

test('package.json pins smtp-server exactly, to the version engine.ts was reviewed against', () => {
  const ours = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  const installed = (JSON.parse(readFileSync(fileURLToPath(import.meta.resolve('smtp-server/package.json')), 'utf8')) as { version: string }).version;
  assert.match(ours.dependencies['smtp-server'] ?? '', /^\d+\.\d+\.\d+$/, 'smtp-server must be pinned to an exact version (no ^ or ~): engine.ts depends on its internals');
  assert.equal(installed, ours.dependencies['smtp-server'], 'the installed smtp-server is not the pinned one: run npm install');
  assert.equal(
    installed,
    SMTP_SERVER_REVIEWED,
    `smtp-server ${installed} is installed but src/smtp/engine.ts was reviewed against ${SMTP_SERVER_REVIEWED}: follow docs/smtp-server.md, then update SMTP_SERVER_REVIEWED`,
  );
});

test("import 'smtp-server/lib/smtp-connection.js'", () => {
  const root = import.meta.resolve('smtp-server');
  assert.equal(
    import.meta.resolve('smtp-server/lib/smtp-connection.js'),
    new URL('smtp-connection.js', root).href,
    broken('lib/smtp-connection.js', 'the subpath no longer resolves to the module the server itself uses'),
  );
  assert.equal(typeof SMTPConnection, 'function', broken('lib/smtp-connection.js', 'SMTPConnection is no longer exported'));
  assert.equal(Object.getPrototypeOf(MailplaneConnection), SMTPConnection);
  assert.equal(Object.getPrototypeOf(MailplaneSMTPServer), SMTPServer);
});

test('SMTPConnection#init()', async (t) => {
  assert.equal(typeof SMTPConnection.prototype.init, 'function', broken('init', 'no longer a method'));
  const h = await start(t);
  // A client that talks before the greeting: the library's own init() waits 100 ms and answers
  // "421 You talk too soon"; ours greets at once, so the EHLO is simply answered.
  const w = await h.wire({ first: 'EHLO early.test\r\n' });
  const greeting = await w.reply('the greeting');
  assert.equal(greeting.lines[0], `220 ${HOST} ESMTP mailplane`, broken('init', 'the override no longer produces the greeting'));
  const ehlo = await w.reply('EHLO');
  assert.equal(ehlo.code, 250, broken('init', `an early EHLO got ${ehlo.lines[0]}: is the connection ready when init() returns?`));
  assert.equal(h.only()._ready, true);
});

test('SMTPConnection#_setListeners(callback)', async (t) => {
  assert.equal(typeof SMTPConnection.prototype._setListeners, 'function', broken('_setListeners', 'no longer a method'));
  const h = await start(t);
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const got = new Promise<Socket>((resolve) => srv.once('connection', resolve));
  const peer = netConnect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port });
  const socket = await got;
  srv.close();
  t.after(() => {
    peer.destroy();
    socket.destroy();
  });
  const conn = new MailplaneConnection(h.engine.server, socket, { id: 'probe' });
  let calls = 0;
  conn._setListeners(() => calls++);
  assert.equal(calls, 1, broken('_setListeners', 'the callback is no longer called synchronously on a plain socket'));
  assert.equal(socket.timeout, IDLE_MS, broken('_setListeners', 'the idle timeout is no longer armed from options.socketTimeout'));
  conn.connectionReady();
  peer.setEncoding('latin1');
  let seen = '';
  peer.on('data', (d: string) => (seen += d));
  peer.write('NOOP\r\n');
  await until('the NOOP reply', () => /\r\n250 /.test(seen));
  assert.match(seen, /^220 /, broken('_setListeners', 'the socket is not piped into the command parser'));
  peer.destroy();
  await until('the close handler', () => conn._closed, 2000);
});

test('SMTPConnection#connectionReady()', async (t) => {
  assert.equal(typeof SMTPConnection.prototype.connectionReady, 'function', broken('connectionReady', 'no longer a method'));
  const h = await start(t);
  const { greeting } = await h.client();
  const conn = h.only();
  assert.equal(greeting.lines[0], `220 ${HOST} ESMTP mailplane`);
  assert.equal(h.probe.sessions[0], conn.session, broken('connectionReady', 'onConnect no longer gets the connection session'));
  assert.equal(conn.session.clientHostname, '[127.0.0.1]', broken('connectionReady', 'disableReverseLookup no longer skips the PTR lookup'));
  assert.equal(conn._ready, true);

  // implicit TLS: onSecure runs before the greeting
  const tls = await start(t, { tls: 'implicit' });
  await tls.client(true);
  assert.equal(tls.probe.secured, 1, broken('connectionReady', 'onSecure was not called before the greeting on implicit TLS'));

  // a refusal from onConnect is the only reply, and closes the connection
  const refused = await start(t);
  refused.probe.refuse = Replies.tooManyConnections();
  const r = await refused.client();
  assert.equal(r.greeting.lines[0], '421 4.7.0 Too many connections, try again later', broken('connectionReady', 'an onConnect error is not sent as the reply'));
  await r.client.waitClosed();
});

test('SMTPConnection#name', async (t) => {
  const h = await start(t);
  const first = await h.client();
  h.probe.hostname = 'mx2.example.net';
  const second = await h.client();
  assert.equal(second.greeting.lines[0], '220 mx2.example.net ESMTP mailplane', broken('name', 'the greeting no longer uses the per-connection name'));
  assert.match((await second.client.ehlo()).lines[0]!, /^250-mx2\.example\.net /, broken('name', 'the EHLO reply no longer uses the per-connection name'));
  assert.match((await first.client.ehlo()).lines[0]!, new RegExp(`^250-${HOST.replaceAll('.', '\\.')} `), 'a session keeps the name it connected with');
});

test('SMTPConnection#_server', async (t) => {
  const h = await start(t);
  await h.client();
  const conn = h.only();
  assert.equal(conn._server, h.engine.server, broken('_server', 'no longer the server that created the connection'));
  assert.equal(typeof conn._server.handlers.hostname, 'function');
});

test('SMTPConnection#_socket', async (t) => {
  const h = await start(t);
  const { client } = await h.client();
  const conn = h.only();
  assert.equal(conn._socket, h.accepted[0], broken('_socket', 'not the accepted socket on a plain connection'));
  await client.ehlo();
  await client.starttls();
  await client.ehlo();
  assert.notEqual(conn._socket, h.accepted[0], broken('_socket', 'still the plain socket after STARTTLS'));
  assert.equal((conn._socket as TLSSocket).encrypted, true, broken('_socket', 'not the TLS socket after STARTTLS'));

  const tls = await start(t, { tls: 'implicit' });
  await tls.client(true);
  assert.equal((tls.only()._socket as TLSSocket).encrypted, true, broken('_socket', 'not a TLS socket on an implicit TLS connection'));
});

test('SMTPConnection#_onCommand(command, callback)', async (t) => {
  assert.equal(typeof SMTPConnection.prototype._onCommand, 'function', broken('_onCommand', 'no longer a method'));
  const h = await start(t);
  const { client } = await h.client();
  const conn = h.only();
  assert.ok(conn._parser, broken('_parser', 'no parser on an open connection'));
  assert.equal(typeof conn._parser.oncommand, 'function', broken('_onCommand', 'the parser has no oncommand hook'));
  await client.ehlo();
  await client.cmd('MAIL FROM:<a@example.net>');
  h.probe.holdRcpt = true;
  conn['_progressAt'] = 0;
  const rcpt = client.cmd('RCPT TO:<b@example.com>');
  await until('onRcptTo', () => !!h.probe.heldRcpt);
  // no reply was sent, so only _onCommand can have stamped the progress clock
  assert.ok(conn['_progressAt'] > 0, broken('_onCommand', 'a complete command line no longer passes through this._onCommand'));
  h.probe.heldRcpt!();
  assert.equal((await rcpt).code, 250);
});

test('SMTPConnection#send(code, data, context)', async (t) => {
  assert.equal(typeof SMTPConnection.prototype.send, 'function', broken('send', 'no longer a method'));
  const h = await start(t);
  const { client } = await h.client();
  const plain = features(await client.ehlo());
  assert.ok(plain.includes('STARTTLS'), 'STARTTLS is offered in plain text');
  assert.ok(!plain.some((l) => l.startsWith('AUTH')), broken('send', `AUTH is offered outside TLS: ${plain.join(', ')}`));
  assert.deepEqual(
    plain.filter((l) => /^SIZE\b/.test(l)),
    [`SIZE ${POLICY.maxMessageSize}`],
    broken('send', 'the EHLO features no longer arrive as send(250, lines[]), or SIZE changed'),
  );
  assert.ok(plain.includes('ENHANCEDSTATUSCODES'));
  await client.starttls();
  const secure = features(await client.ehlo());
  assert.ok(secure.includes('AUTH PLAIN LOGIN'), broken('send', `the AUTH feature line changed: ${secure.join(', ')}`));

  assert.equal((await client.cmd('NOOP')).lines[0], '250 2.0.0 OK', broken('send', 'library replies no longer get an enhanced status code'));
  await client.cmd('MAIL FROM:<a@example.net>');
  const unknown = await client.cmd('RCPT TO:<nobody@example.com>');
  assert.equal(unknown.lines[0], '550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown', broken('send', 'context false no longer suppresses the library enhanced code'));

  const conn = h.only();
  conn.send(421, '4.4.2 probe');
  assert.equal((await client.read()).lines[0], '421 4.4.2 probe');
  assert.equal(conn._closing, true, broken('send', 'send(421, …) no longer closes the connection'));
  await client.waitClosed();
});

test('SMTPConnection#session', async (t) => {
  const h = await start(t);
  const { client } = await h.client();
  const conn = h.only();
  const session = conn.session as Session;
  const st = h.probe.states[0];
  assert.equal(session.mp, st);
  await client.ehlo();
  await client.cmd('RSET');
  const sent = await client.send('a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nhi\r\n');
  assert.equal(sent.data?.code, 250);
  await client.starttls();
  await client.ehlo();
  assert.equal(conn.session, session, broken('session', 'the session object was replaced (EHLO, RSET, a transaction or STARTTLS)'));
  assert.equal(conn.session.mp, st, broken('session', 'application data on the session (mp) did not survive _resetSession'));
});

test('SMTPConnection#_closing and #_closed', async (t) => {
  const h = await start(t);
  const { client } = await h.client();
  const conn = h.only();
  assert.equal(conn._closing, false);
  assert.equal(conn._closed, false);
  const sent = recordSends(conn);
  conn.close();
  assert.equal(conn._closing, true, broken('_closing', 'close() no longer sets it'));
  conn._checkProgress(Date.now() + FAR);
  await client.waitClosed();
  await until('_closed', () => conn._closed);
  conn._checkProgress(Date.now() + FAR);
  assert.deepEqual(sent, [], 'the progress check must not reply on a closing or closed connection');
});

test('SMTPConnection#_handlerPending', async (t) => {
  const h = await start(t);
  const { client } = await h.client();
  const conn = h.only();
  await client.ehlo();
  await client.cmd('MAIL FROM:<a@example.net>');
  assert.equal(conn._handlerPending, false);
  h.probe.holdRcpt = true;
  const rcpt = client.cmd('RCPT TO:<b@example.com>');
  await until('onRcptTo', () => !!h.probe.heldRcpt);
  assert.equal(conn._handlerPending, true, broken('_handlerPending', 'not set while a command handler has not called back'));
  const sent = recordSends(conn);
  conn._checkProgress(Date.now() + FAR);
  assert.deepEqual(sent, [], 'a command waiting for the server must not time out');
  h.probe.heldRcpt!();
  assert.equal((await rcpt).code, 250);
  assert.equal(conn._handlerPending, false, broken('_handlerPending', 'still set after the handler called back'));
  conn._checkProgress(Date.now() + POLICY.commandTimeoutMs + 1000);
  assert.match((await client.read()).lines[0]!, /^421 4\.4\.2 Command not completed in time/);
});

test('SMTPConnection#_dataStream and SMTPStream#_dataMode (via #_parser)', async (t) => {
  const parser = new SMTPStream();
  assert.equal(parser._dataMode, false, broken('SMTPStream#_dataMode', 'not false on a new parser'));
  parser.startDataMode(0);
  assert.equal(parser._dataMode, true, broken('SMTPStream#_dataMode', 'startDataMode() no longer sets it'));
  const h = await start(t);

  // the body is arriving: the data timeout applies, not the command timeout
  const one = await h.client();
  const conn = h.only();
  await one.client.ehlo();
  await one.client.cmd('MAIL FROM:<a@example.net>');
  await one.client.cmd('RCPT TO:<b@example.com>');
  assert.equal((await one.client.cmd('DATA')).code, 354);
  assert.ok(conn._parser && conn._parser._dataMode, broken('_parser._dataMode', 'not true while the message body is being received'));
  assert.ok(conn._dataStream, broken('_dataStream', 'not set while the message body is being received'));
  assert.equal(conn._handlerPending, false, 'DATA answers 354 and calls back at once');
  const sent = recordSends(conn);
  conn._checkProgress(Date.now() + POLICY.commandTimeoutMs + 1000);
  assert.deepEqual(sent, [], 'the command timeout must not apply inside DATA');
  conn._checkProgress(Date.now() + POLICY.dataTimeoutMs + 1000);
  assert.match((await one.client.read()).lines[0]!, /^421 4\.4\.2 Message not completed in time/);
  await one.client.waitClosed();
  await until('the first connection to go', () => h.engine.openSessions === 0);

  // the body is in and onData has not answered: not the client's time
  const two = await h.client();
  const conn2 = h.only();
  await two.client.ehlo();
  await two.client.cmd('MAIL FROM:<a@example.net>');
  await two.client.cmd('RCPT TO:<b@example.com>');
  h.probe.holdData = true;
  const data = two.client.data('Subject: x\r\n\r\nhi\r\n');
  await until('onData to have the whole message', () => !!h.probe.heldData);
  assert.ok(conn2._parser, 'the connection still has its parser');
  assert.equal(conn2._parser._dataMode, false, broken('_parser._dataMode', 'still true after the end-of-data dot'));
  assert.ok(conn2._dataStream, broken('_dataStream', 'cleared before onData called back'));
  const sent2 = recordSends(conn2);
  conn2._checkProgress(Date.now() + FAR);
  assert.deepEqual(sent2, [], 'a message being stored must not time out');
  h.probe.heldData!();
  const [, final] = await data;
  assert.equal(final.lines[0], '250 2.0.0 Ok: queued as TEST');
  assert.equal(conn2._dataStream, false, broken('_dataStream', 'not cleared after onData called back'));
});

test('SMTPConnection#secure', async (t) => {
  const h = await start(t);
  const { client } = await h.client();
  const conn = h.only();
  assert.equal(conn.secure, false, broken('secure', 'true on a plain connection'));
  await client.ehlo();
  await client.starttls();
  await client.ehlo();
  assert.equal(conn.secure, true, broken('secure', 'not true after STARTTLS'));
  assert.equal(conn.session.secure, true);

  const tls = await start(t, { tls: 'implicit' });
  await tls.client(true);
  assert.equal(tls.only().secure, true, broken('secure', 'not true on an implicit TLS connection'));
});

test('a connection that did STARTTLS leaves the progress sweep once it closes (upgrade() drops our close hook)', async (t) => {
  const h = await start(t);
  const { client } = await h.client();
  await client.ehlo();
  await client.starttls();
  await client.ehlo();
  const conn = h.only();
  assert.ok(inSweep(conn));
  await client.quit();
  await until('the closed connection to leave the sweep', () => !inSweep(conn), 5000);
});

test('SMTPConnection#_upgrading', async (t) => {
  const h = await start(t);
  const w = await h.wire();
  await w.reply('the greeting');
  await w.cmd('EHLO client.test');
  const conn = h.only();
  assert.equal(conn._upgrading, false);
  assert.equal((await w.cmd('STARTTLS')).code, 220);
  assert.equal(conn._upgrading, true, broken('_upgrading', 'not set between the 220 to STARTTLS and the end of the handshake'));
  await w.handshake();
  await until('the server side of the handshake', () => conn.secure);
  assert.equal(conn._upgrading, false, broken('_upgrading', 'still set after the handshake'));
  assert.equal((await w.cmd('EHLO client.test')).code, 250);
});

test('SMTPConnection#handler_QUIT(command, callback)', async (t) => {
  assert.equal(typeof SMTPConnection.prototype.handler_QUIT, 'function', broken('handler_QUIT', 'no longer a method'));
  const h = await start(t, { tls: 'none' });
  // the client never closes its side: the library would wait for its FIN (up to 5 s)
  const w = await h.wire({ allowHalfOpen: true });
  await w.reply('the greeting');
  const conn = h.only();
  assert.equal((await w.cmd('QUIT')).lines[0], '221 2.0.0 Bye');
  await until('the server to close the socket', () => conn._closed, 2000).catch(() => {
    assert.fail(broken('handler_QUIT', 'QUIT is no longer dispatched to the override (the connection was half-closed)'));
  });
  await until('the client to see the end', () => w.ended);

  // TLS keeps the library's orderly close
  const tls = await start(t, { tls: 'implicit' });
  const { client } = await tls.client(true);
  assert.equal((await client.cmd('QUIT')).lines[0], '221 2.0.0 Bye');
  await client.waitClosed();
});

test('SMTPConnection#handler_AUTH(command, callback)', async (t) => {
  assert.equal(typeof SMTPConnection.prototype.handler_AUTH, 'function', broken('handler_AUTH', 'no longer a method'));
  const refusal = '538 5.7.11 Encryption required for requested authentication mechanism';
  // no STARTTLS on the listener: the library itself would accept AUTH in plain text
  const none = await start(t, { tls: 'none' });
  const a = await none.client();
  await a.client.ehlo();
  assert.equal((await a.client.authPlain('alice', 'secret')).lines[0], refusal, broken('handler_AUTH', 'AUTH is no longer dispatched to the override'));
  assert.deepEqual(none.probe.rejected, ['5.7.11 Encryption required for requested authentication mechanism']);
  assert.deepEqual(none.probe.auths, []);

  const h = await start(t);
  const { client } = await h.client();
  await client.ehlo();
  assert.equal((await client.authPlain('alice', 'secret')).lines[0], refusal);
  await client.starttls();
  await client.ehlo();
  assert.equal((await client.authPlain('alice', 'secret')).code, 235, broken('handler_AUTH', 'super.handler_AUTH no longer runs SASL PLAIN into onAuth'));
  assert.deepEqual(h.probe.auths, ['alice']);
});

test('SMTPConnection#handler_EHLO(command, callback) and #handler_HELO(command, callback)', async (t) => {
  for (const verb of ['EHLO', 'HELO'] as const) assert.equal(typeof SMTPConnection.prototype[`handler_${verb}`], 'function', broken(`handler_${verb}`, 'no longer a method'));
  const h = await start(t);
  const { client } = await h.client();
  assert.equal((await client.cmd('EHLO')).lines[0], '501 5.5.4 Syntax: EHLO hostname', broken('handler_EHLO', 'EHLO is no longer dispatched to the override'));
  assert.equal((await client.cmd('HELO')).lines[0], '501 5.5.4 Syntax: HELO hostname', broken('handler_HELO', 'HELO is no longer dispatched to the override'));
  assert.equal((await client.cmd('EHLO a b')).lines[0], '501 5.5.4 Syntax: EHLO hostname');
  assert.equal((await client.cmd(`HELO ${'a'.repeat(256)}`)).lines[0], '501 5.5.4 Bad hostname syntax');
  const session = h.probe.sessions[0]!;
  assert.equal((await client.cmd('HELO helo.example')).code, 250, broken('handler_HELO', 'super.handler_HELO no longer greets'));
  assert.equal(session.hostNameAppearsAs, 'helo.example');
  const ehlo = await client.cmd('EHLO Client.Example');
  assert.equal(ehlo.code, 250, broken('handler_EHLO', 'super.handler_EHLO no longer greets'));
  assert.equal(session.hostNameAppearsAs, 'client.example', broken('handler_EHLO', 'super.handler_EHLO no longer records the name'));
  assert.equal(session.openingCommand, 'EHLO', broken('handler_EHLO', 'session.openingCommand no longer tells EHLO from HELO'));
  // the parameters smtp/commands.ts lets through are those of the extensions advertised here
  const f = features(ehlo);
  assert.ok(f.includes('8BITMIME') && f.includes('SMTPUTF8'), broken('handler_EHLO', `8BITMIME or SMTPUTF8 no longer advertised: ${f.join(', ')}`));
  assert.ok(!f.includes('DSN') && !f.includes('REQUIRETLS'), broken('handler_EHLO', `DSN or REQUIRETLS advertised: ${f.join(', ')}`));
});

test('SMTPConnection#handler_MAIL(command, callback) and #handler_RCPT(command, callback)', async (t) => {
  for (const verb of ['MAIL', 'RCPT'] as const) assert.equal(typeof SMTPConnection.prototype[`handler_${verb}`], 'function', broken(`handler_${verb}`, 'no longer a method'));
  const h = await start(t);
  const { client } = await h.client();
  await client.ehlo();
  const session = h.probe.sessions[0]!;
  assert.equal((await client.cmd('MAIL FROM:<a@b.example> FOO=bar')).lines[0], '555 5.5.4 Parameter not supported: FOO', broken('handler_MAIL', 'MAIL is no longer dispatched to the override'));
  assert.equal((await client.cmd('MAIL FROM:<"alice"@b.example> SMTPUTF8 BODY=8BITMIME')).code, 250);
  const from = session.envelope.mailFrom;
  assert.equal(from && from.address, 'alice@b.example', broken('handler_MAIL', 'super.handler_MAIL no longer parses the canonical line into the envelope'));
  assert.equal(session.envelope.smtpUtf8, true, broken('handler_MAIL', 'envelope.smtpUtf8 no longer set by SMTPUTF8'));
  assert.equal(session.envelope.bodyType, '8bitmime', broken('handler_MAIL', 'envelope.bodyType no longer set by BODY=8BITMIME'));
  assert.equal((await client.cmd('MAIL FROM:<a@b.example> FOO=bar')).lines[0], '503 5.5.1 Error: nested MAIL command', 'out of sequence: the library answers first');
  assert.equal((await client.cmd('RCPT TO:<x@y.example> NOTIFY=NEVER')).lines[0], '555 5.5.4 Parameter not supported: NOTIFY', broken('handler_RCPT', 'RCPT is no longer dispatched to the override'));
  assert.equal((await client.cmd('RCPT TO:<"jörg"@y.example>')).code, 250);
  assert.deepEqual(
    session.envelope.rcptTo.map((r) => r.address),
    ['jörg@y.example'],
    broken('handler_RCPT', 'super.handler_RCPT no longer parses the canonical line into the envelope'),
  );
  await client.cmd('RSET');
  assert.equal((await client.cmd('RCPT TO:<x@y.example> NOTIFY=NEVER')).lines[0], '503 5.5.1 Error: need MAIL command');
});

test('SMTPConnection#close()', async (t) => {
  assert.equal(typeof SMTPConnection.prototype.close, 'function', broken('close', 'no longer a method'));
  const h = await start(t);
  const a = await h.client();
  const b = await h.client();
  assert.equal(h.engine.openSessions, 2);
  h.engine.closeSessions(421, '4.3.2 Service shutting down, closing connection');
  assert.equal(h.engine.openSessions, 0, broken('close', 'no longer removes the connection from server.connections'));
  for (const c of [a, b]) {
    assert.equal((await c.client.read()).lines[0], '421 4.3.2 Service shutting down, closing connection');
    await c.client.waitClosed();
  }
});

test('SMTPServer#_handleProxy(socket, callback)', async (t) => {
  assert.equal(typeof SMTPServer.prototype._handleProxy, 'function', broken('_handleProxy', 'no longer a method'));
  const h = await start(t);
  await h.client();
  await h.client();
  const ids = h.probe.sessions.map((s) => s.id);
  const prefix = process.pid.toString(36);
  assert.ok(ids.every((id) => id.startsWith(prefix)) && ids[0] !== ids[1], broken('_handleProxy', `the override's ids were not used: ${ids.join(', ')}`));

  // with PROXY protocol the library's header parsing runs
  const proxied = await start(t, { proxy: true });
  const w = await proxied.wire({ first: 'PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n' });
  assert.equal((await w.reply('the greeting')).code, 220);
  const session = proxied.probe.sessions[0]!;
  assert.equal(session.remoteAddress, '192.0.2.10', broken('_handleProxy', 'the PROXY header no longer sets the client address'));
  assert.equal(session.remotePort, 40000);
});

test('SMTPServer#_expectsProxyHeader(socket)', async (t) => {
  assert.equal(typeof SMTPServer.prototype._expectsProxyHeader, 'function', broken('_expectsProxyHeader', 'no longer a method'));
  const peer = { remoteAddress: '127.0.0.1' } as Socket;
  const plain = await start(t);
  assert.equal(plain.engine.server._expectsProxyHeader(peer), false, broken('_expectsProxyHeader', 'true without useProxy'));
  const proxied = await start(t, { proxy: true });
  assert.equal(proxied.engine.server._expectsProxyHeader(peer), true, broken('_expectsProxyHeader', 'false with useProxy: true'));
});

test('SMTPServer#connect(socket, socketOptions)', async (t) => {
  assert.equal(typeof SMTPServer.prototype.connect, 'function', broken('connect', 'no longer a method'));
  const h = await start(t);
  const connected: { id: string; remoteAddress: string }[] = [];
  h.engine.server.on('connect', (info: { id: string; remoteAddress: string }) => connected.push(info));
  await h.client();
  const conn = h.only();
  assert.ok(conn instanceof MailplaneConnection, broken('connect', 'the server no longer builds connections through connect()'));
  assert.deepEqual(
    connected.map((c) => [c.id, c.remoteAddress]),
    [[conn.id, '127.0.0.1']],
    broken('connect', "the connection's 'connect' event is no longer emitted"),
  );
  const probe = new Error('probe');
  conn.emit('error', probe);
  assert.deepEqual(h.errors, [probe]);

  const tls = await start(t, { tls: 'implicit' });
  await tls.client(true);
  assert.ok(tls.only() instanceof MailplaneConnection, broken('connect', 'implicit TLS connections bypass connect()'));
});

test('SMTPServer#connections', async (t) => {
  const h = await start(t);
  assert.ok(h.engine.server.connections instanceof Set, broken('connections', 'no longer a Set'));
  const a = await h.client();
  await h.client();
  assert.equal(h.engine.openSessions, 2, broken('connections', 'does not hold every open connection'));
  assert.ok([...h.engine.server.connections].every((c) => c instanceof MailplaneConnection));
  await a.client.quit();
  await until('the connection to leave the set', () => h.engine.openSessions === 1);
});

test('SMTPServer#secureContext', async (t) => {
  const cn = (c: SmtpClient) => c.tlsSocket?.getPeerCertificate().subject?.CN;
  const h = await start(t);
  assert.ok(h.engine.server.secureContext instanceof Map, broken('secureContext', 'no longer a Map'));
  const one = await h.client();
  await one.client.starttls();
  assert.equal(cn(one.client), HOST);
  const swapped = contextOf(cert('b'));
  h.engine.setTlsContext(swapped);
  assert.equal(h.engine.server.secureContext.get('*'), swapped);
  const two = await h.client();
  await two.client.starttls();
  assert.equal(cn(two.client), 'swap.example.net', broken('secureContext', "STARTTLS no longer reads the '*' context at handshake time"));
  assert.equal((await one.client.ehlo()).code, 250, 'an established session is not affected');

  const tls = await start(t, { tls: 'implicit' });
  tls.engine.setTlsContext(swapped);
  const three = await tls.client(true);
  assert.equal(cn(three.client), 'swap.example.net', broken('secureContext', "implicit TLS no longer reads the '*' context at handshake time"));
});

test('SMTPServer#server', async (t) => {
  const h = await start(t);
  const net = h.engine.server.server;
  assert.ok(net instanceof Server, broken('server', 'no longer a net.Server'));
  assert.equal(net.listening, false, 'the engine never listens itself');
  assert.equal(net.listenerCount('connection'), 1, broken('server', "its 'connection' listener is how a session starts"));
  const { greeting } = await h.client();
  assert.equal(greeting.code, 220, broken('server', "a socket emitted as 'connection' did not start a session"));
});

test('SMTPServer#options.socketTimeout', async (t) => {
  const h = await start(t);
  h.engine.setIdleTimeout(250);
  assert.equal(h.engine.server.options.socketTimeout, 250);
  const { client } = await h.client();
  assert.equal(h.only()._socket.timeout, 250, broken('options.socketTimeout', 'a new connection does not arm its idle timeout from the live options object'));
  assert.match((await client.read()).lines[0]!, /^421 4\.4\.2 Timeout/, broken('options.socketTimeout', 'the idle timeout no longer ends the session'));
  await client.waitClosed();
});

test('names mailplane adds (handlers, _progressAt, _checkProgress, _ehloFeatures) are not library members', () => {
  const server = new SMTPServer({ logger: false, disableReverseLookup: true, hideSTARTTLS: true, disabledCommands: ['STARTTLS'] });
  const conn = new SMTPConnection(server, new Socket(), { id: 'probe' });
  assert.ok(!('handlers' in server), broken('SMTPServer', 'now has a member named handlers, which MailplaneSMTPServer shadows'));
  for (const name of ['_progressAt', '_checkProgress', '_ehloFeatures']) {
    assert.ok(!(name in conn), broken('SMTPConnection', `now has a member named ${name}, which MailplaneConnection shadows`));
  }
});
