// The SMTP engine: mailplane's subclasses of smtp-server's SMTPServer and SMTPConnection, and
// every place mailplane reaches into the library past its documented API. Nothing else in
// src/ touches smtp-server internals (listener.ts drives a listener through SmtpEngine alone),
// which is why smtp-server is pinned to an exact version in package.json. Each row below has a
// contract test named after it in test/smtp-engine.test.ts; docs/smtp-server.md has the
// upgrade procedure. SMTP_SERVER_REVIEWED below is the version this table was checked against.
//
// Library member (smtp-server 3.21.6)   | how     | why mailplane depends on it
// --------------------------------------+---------+------------------------------------------------------------
// 'smtp-server/lib/smtp-connection.js'  | import  | SMTPConnection is not exported from the package root
// SMTPConnection#init()                 | override| greet at once (no 100 ms early-talker delay), set `name`, join the progress sweep
// SMTPConnection#_setListeners(cb)      | call    | wires socket close/error, arms the idle timeout, pipes the parser, then cb()
// SMTPConnection#connectionReady()      | call    | reverse lookup (disabled), onConnect, onSecure, 220 greeting, sets _ready
// SMTPConnection#name                   | write   | host name in the greeting and EHLO, from the generation serving now
// SMTPConnection#_server                | read    | the owning MailplaneSMTPServer, for its handlers
// SMTPConnection#_socket                | read    | the connection's live socket: close hook, QUIT's immediate close
// SMTPConnection#_onCommand(cmd, cb)    | override| every complete command line passes here: stamps progress
// SMTPConnection#send(code, data, ctx)  | override| single reply write site: EHLO features arrive as send(250, lines[]); ctx false = no
//                                       |         | enhanced code added; send(421, …) closes the connection
// SMTPConnection#session                | read    | one object for the connection's life (reset in place), carries our `mp` state
// SMTPConnection#_closing, #_closed     | read    | the progress check skips connections on their way out
// SMTPConnection#_handlerPending        | read    | true while a command handler has not answered: the server's time, not the client's
// SMTPConnection#_dataStream            | read    | set from DATA until onData answered
// SMTPStream#_dataMode (via #_parser)   | read    | true while the message body arrives; with _dataStream set and this false, the
//                                       |         | message is in and being stored
// SMTPConnection#secure                 | read    | TLS active (implicit, or after STARTTLS): AUTH offered and accepted only then
// SMTPConnection#_upgrading             | read    | STARTTLS handshake in flight: QUIT keeps the library's orderly close
// SMTPConnection#handler_QUIT(cmd, cb)  | override| commands dispatch to this['handler_' + VERB]: plain sockets close right after 221
// SMTPConnection#handler_AUTH(cmd, cb)  | override| same dispatch: AUTH outside TLS is 538 5.7.11 on every listener, even without STARTTLS
// SMTPConnection#handler_EHLO, _HELO    | override| same dispatch: no argument (or two, or no possible host name) is 501 5.5.4, with the
//                                       |         | enhanced code the library's 501 lacks; a valid one goes to super (features, reset)
// SMTPConnection#handler_MAIL, _RCPT    | override| same dispatch: the line is checked (smtp/commands.ts: parameters, text after the path,
//                                       |         | non-ASCII) and handed to super in canonical form, which the library parses into
//                                       |         | onMailFrom/onRcptTo and the envelope; envelope.mailFrom set = MAIL accepted
// SMTPConnection#close()                | call    | ends the socket and drops the connection from server.connections (drain)
// SMTPServer#_handleProxy(socket, cb)   | override| runs for each accepted socket: without PROXY a counter id, not 10 random bytes
// SMTPServer#_expectsProxyHeader(socket)| call    | whether this socket must start with a PROXY header
// SMTPServer#connect(socket, opts)      | override| the only place a connection is constructed: makes it a MailplaneConnection
// SMTPServer#connections                | read/add| Set of open connections: session counts, drain
// SMTPServer#secureContext              | write   | Map read at every STARTTLS and implicit-TLS handshake: certificate swap in place
// SMTPServer#server                     | call    | the net.Server whose 'connection' listener starts a session (sockets come from Bindings)
// SMTPServer#options.socketTimeout      | write   | options object kept by reference, read each time an idle timeout is armed
// (names we add: handlers,              | own     | must stay free in the library's classes, or an upgrade would silently shadow
//  _progressAt, _checkProgress,         |         | or be shadowed by a library member
//  _ehloFeatures)                       |         |
import type { Socket } from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { ListenerSpec } from '../config/desired-state.js';
import { checkAddressCommand } from './commands.js';
import { Replies, type SmtpReply } from './replies.js';
import type { Session, SessionHandlers } from './session.js';

/** What the engine calls into mailplane for: the session handlers (SessionHandlers in production). */
export type EngineHandlers = Pick<SessionHandlers, 'hostname' | 'reject' | 'onConnect' | 'onSecure' | 'onAuth' | 'onMailFrom' | 'onRcptTo' | 'onData' | 'onClose'>;

/** The smtp-server version the table above was reviewed against (the one pinned in package.json). */
export const SMTP_SERVER_REVIEWED = '3.21.6';

export interface EngineOptions {
  /** the socket-level settings: TLS mode, PROXY protocol */
  readonly spec: ListenerSpec;
  readonly handlers: EngineHandlers;
  readonly tls: { cert: string; key: string; context: SecureContext } | null;
  readonly idleTimeoutMs: number;
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
/** The EHLO keyword of peer listeners: the hand-off client (outbound/peer.ts) requires it. */
export const HANDOFF_EXTENSION = 'X-MAILPLANE-HANDOFF';
const ID_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36)}`;
let nextConnection = 0;

// Open connections, swept once a second for clients that trickle bytes too slowly to ever trip
// the idle timeout (one byte per second keeps a socket "active" forever).
const live = new Set<MailplaneConnection>();
let sweeper: NodeJS.Timeout | null = null;
function sweep(): void {
  const now = Date.now();
  for (const c of live) {
    if (c._closed)
      live.delete(c); // closed after STARTTLS, whose upgrade dropped our close hook
    else c._checkProgress(now);
  }
  if (!live.size && sweeper) {
    clearInterval(sweeper);
    sweeper = null;
  }
}

/** Whether the progress sweep watches a connection (for tests: a closed one must leave it). */
export function inSweep(c: MailplaneConnection): boolean {
  return live.has(c);
}

/** smtp-server's connection with mailplane's protocol decisions layered on top. */
export class MailplaneConnection extends SMTPConnection {
  declare _server: MailplaneSMTPServer;
  private _progressAt = Date.now();

  // No pre-greeting delay: smtp-server waits 100 ms to catch early talkers.
  override init(): void {
    this.name = this._server.handlers.hostname(); // greeting and EHLO name the configured host
    live.add(this);
    sweeper ??= setInterval(sweep, 1000).unref();
    // NB: STARTTLS (the library's upgrade()) strips this listener from the plain socket, so a
    // connection that upgraded leaves `live` at the next sweep instead (_closed is set).
    this._socket.once('close', () => live.delete(this));
    this._setListeners(() => this.connectionReady());
  }

  override _onCommand(command: Buffer, callback: () => void): void {
    this._progressAt = Date.now();
    super._onCommand(command, callback);
  }

  /**
   * Too long since our last reply without a complete command (or, in DATA, without the end of
   * the message): 421. Time the server spends on a command or a message is not counted.
   */
  _checkProgress(now: number): void {
    const st = (this.session as Session).mp;
    if (!st || this._closing || this._closed || this._handlerPending) return;
    if (this._dataStream && this._parser && !this._parser._dataMode) return; // message being stored
    const inData = !!(this._parser && this._parser._dataMode);
    const limit = inData ? st.policy.dataTimeoutMs : st.policy.commandTimeoutMs;
    if (now - this._progressAt <= limit) return;
    live.delete(this);
    this.send(421, `4.4.2 ${inData ? 'Message' : 'Command'} not completed in time, closing connection`);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    this._progressAt = Date.now();
    if (code === 250 && Array.isArray(data)) data = this._ehloFeatures(data);
    // Our replies carry their own enhanced status code; do not let the library add another.
    if (typeof data === 'string' && ENHANCED.test(data)) return super.send(code, data, false);
    super.send(code, data, context);
  }

  // AUTH is offered only inside TLS, with the pinned size limit advertised.
  private _ehloFeatures(lines: string[]): string[] {
    const st = (this.session as Session).mp;
    const out = lines.filter((l) => !l.startsWith('AUTH ') || this.secure).filter((l) => !/^SIZE\b/.test(l));
    if (st) out.push(`SIZE ${st.policy.maxMessageSize}`);
    // a peer listener says it takes the hand-off of other replicas (their arrival times with MAIL)
    if (st?.spec?.role === 'peer') out.push(HANDOFF_EXTENSION);
    return out;
  }

  // After the 221 a plain connection is closed at once instead of half-closed: the client has
  // nothing more to say, and a half-close only waits for its FIN (or, from clients that close
  // abortively, a reset that costs an error object per connection). TLS keeps the orderly close.
  override handler_QUIT(command: Buffer, callback: () => void): void {
    const sock = this._socket;
    if (this.secure || this._upgrading) return super.handler_QUIT(command, callback);
    this.send(221, 'Bye');
    if (sock.writableLength === 0) sock.destroy();
    this.close();
    callback();
  }

  // EHLO/HELO with no argument, more than one, or one that no host name can be: 501 with an
  // enhanced code (the library's own 501 to a greeting carries none).
  override handler_EHLO(command: Buffer, callback: () => void): void {
    if (refuse(this, greetingError('EHLO', command))) return callback();
    super.handler_EHLO(command, callback);
  }

  override handler_HELO(command: Buffer, callback: () => void): void {
    if (refuse(this, greetingError('HELO', command))) return callback();
    super.handler_HELO(command, callback);
  }

  // MAIL and RCPT lines are checked (parameters we did not advertise, text after the path,
  // non-ASCII without SMTPUTF8) and put in canonical form (quoted local part, domainless
  // postmaster) before the library parses them: src/smtp/commands.ts. Out of sequence (a
  // second MAIL, RCPT before MAIL), the library's 503 comes first.
  override handler_MAIL(command: Buffer, callback: () => void): void {
    const session = this.session as Session;
    if (session.envelope.mailFrom) return super.handler_MAIL(command, callback);
    const line = command.toString();
    const checked = checkAddressCommand('MAIL', line, { esmtp: session.openingCommand === 'EHLO', secure: this.secure, smtputf8: false, primaryDomain: null, peer: session.mp?.peer === true });
    if (!checked.ok) {
      refuse(this, checked.reply);
      return callback();
    }
    super.handler_MAIL(checked.line === line ? command : Buffer.from(checked.line), callback);
  }

  override handler_RCPT(command: Buffer, callback: () => void): void {
    const session = this.session as Session;
    if (!session.envelope.mailFrom) return super.handler_RCPT(command, callback);
    const domains = session.mp?.policy.domains;
    const line = command.toString();
    const checked = checkAddressCommand('RCPT', line, {
      esmtp: session.openingCommand === 'EHLO',
      secure: this.secure,
      smtputf8: !!session.envelope.smtpUtf8,
      primaryDomain: domains?.values().next().value ?? null,
    });
    if (!checked.ok) {
      refuse(this, checked.reply);
      return callback();
    }
    super.handler_RCPT(checked.line === line ? command : Buffer.from(checked.line), callback);
  }

  override handler_AUTH(command: Buffer, callback: () => void): void {
    if (!this.secure) {
      const st = (this.session as Session).mp;
      const reply = Replies.encryptionRequired();
      if (st) this._server.handlers.reject(st, reply);
      this.send(reply.responseCode, reply.message);
      return callback();
    }
    super.handler_AUTH(command, callback);
  }
}

/** The reply to a greeting whose argument is missing, doubled, or no host name at all, or null. */
function greetingError(verb: 'EHLO' | 'HELO', command: Buffer): SmtpReply | null {
  const parts = command.toString().trim().split(/\s+/);
  if (parts.length !== 2) return Replies.heloSyntax(verb);
  // RFC 5321 §4.5.3.1.2: a domain is at most 255 octets (an address literal is shorter)
  return parts[1]!.length > 255 || /\p{Cc}/u.test(parts[1]!) ? Replies.heloName() : null;
}

/** Sends a refusal of ours (counted like every other); true when there was one. */
function refuse(c: MailplaneConnection, reply: SmtpReply | null): boolean {
  if (!reply) return false;
  const st = (c.session as Session).mp;
  if (st) c._server.handlers.reject(st, reply);
  c.send(reply.responseCode, reply.message);
  return true;
}

export class MailplaneSMTPServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    readonly handlers: EngineHandlers,
  ) {
    super(options);
  }

  // Without PROXY protocol the library draws 10 random bytes per connection for an id; a
  // counter does as well for logs and costs nothing.
  override _handleProxy(socket: Socket, callback: Parameters<SMTPServer['_handleProxy']>[1]): void {
    if (this._expectsProxyHeader(socket)) return super._handleProxy(socket, callback);
    const id = `${ID_PREFIX}${(nextConnection++).toString(36)}`;
    setImmediate(() => callback(null, { id }));
  }

  override connect(socket: Socket, socketOptions?: ConstructorParameters<typeof SMTPConnection>[2]): void {
    const connection = new MailplaneConnection(this, socket, socketOptions ?? {});
    this.connections.add(connection);
    connection.on('error', (err: Error) => this.emit('error', err));
    connection.on('connect', (data: unknown) => this.emit('connect', data));
    connection.init();
  }
}

/**
 * One smtp-server instance configured the mailplane way, behind the few operations a Listener
 * needs. It never listens itself: sockets accepted elsewhere are handed in with accept().
 */
export class SmtpEngine {
  readonly server: MailplaneSMTPServer;

  constructor(o: EngineOptions) {
    const { spec, handlers, tls } = o;
    const implicit = spec.tls === 'implicit';
    const options: SMTPServerOptions = {
      secure: implicit,
      hideSTARTTLS: spec.tls !== 'starttls',
      disabledCommands: spec.tls === 'starttls' ? [] : ['STARTTLS'],
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true, // who must authenticate is policy, decided in onMailFrom
      allowInsecureAuth: false,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true, // not implemented (NOTIFY, RET, ENVID): not advertised, refused as 555 (commands.ts)
      hideREQUIRETLS: true, // likewise: MX delivery cannot promise it
      hideSize: true, // we advertise the pinned limit ourselves
      disableReverseLookup: true, // a PTR lookup per connection would stall the greeting
      useProxy: spec.proxyProtocol,
      socketTimeout: o.idleTimeoutMs,
      logger: false,
      banner: 'mailplane',
      name: handlers.hostname(), // replaced per connection; set so the library never asks the OS
      minVersion: 'TLSv1.2',
      ...(tls ? { key: tls.key, cert: tls.cert } : {}),
      onConnect: (s, cb) => handlers.onConnect(s, cb),
      onSecure: (sock, s, cb) => handlers.onSecure(sock as TLSSocket, s, cb),
      onAuth: (a, s, cb) => handlers.onAuth(a, s, cb),
      onMailFrom: (a, s, cb) => handlers.onMailFrom(a, s, cb),
      onRcptTo: (a, s, cb) => handlers.onRcptTo(a, s, cb),
      onData: (st, s, cb) => handlers.onData(st, s, cb),
      onClose: (s) => handlers.onClose(s),
    };
    this.server = new MailplaneSMTPServer(options, handlers);
    if (tls) this.setTlsContext(tls.context);
  }

  /** Errors of the server and its connections (the library's 'error' event). */
  onError(listener: (err: Error) => void): void {
    this.server.on('error', listener);
  }

  /** Open connections (sessions), from accept until their socket is closed or closing. */
  get openSessions(): number {
    return this.server.connections.size;
  }

  /** Starts a session on a socket accepted elsewhere. */
  accept(socket: Socket): void {
    this.server.server.emit('connection', socket);
  }

  /** Swaps the certificate for new handshakes (STARTTLS and implicit TLS alike). */
  setTlsContext(context: SecureContext): void {
    this.server.secureContext = new Map([['*', context]]);
  }

  /**
   * Read by smtp-server each time it arms a connection's idle timeout: new sessions get it at
   * once, open ones when the library next re-arms theirs (after STARTTLS, or at their timeout).
   */
  setIdleTimeout(ms: number): void {
    this.server.options.socketTimeout = ms;
  }

  /** Answers every open session with `code text` and closes it. */
  closeSessions(code: number, text: string): void {
    for (const c of this.server.connections) {
      c.send(code, text);
      c.close();
    }
  }
}
