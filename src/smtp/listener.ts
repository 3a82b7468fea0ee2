// One SMTP listener: a socket, the smtp-server instance behind it, and the policy and TLS
// context new sessions get. Policy and certificate swap in place; only a changed
// port/address/TLS mode needs a new Listener, and the old one drains instead of cutting
// sessions (SMTPServer.close() would answer 421 to every open session).
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { ListenerSpec } from '../config/desired-state.js';
import type { Logger } from '../ops/logger.js';
import { Replies } from './replies.js';
import { SessionHandlers, type ListenerContext, type Session, type SessionDeps } from './session.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
const ID_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36)}`;
let nextConnection = 0;

// Open connections, swept once a second for clients that trickle bytes too slowly to ever trip
// the idle timeout (one byte per second keeps a socket "active" forever).
const live = new Set<MailplaneConnection>();
let sweeper: NodeJS.Timeout | null = null;
function sweep(): void {
  const now = Date.now();
  for (const c of live) c._checkProgress(now);
  if (!live.size && sweeper) {
    clearInterval(sweeper);
    sweeper = null;
  }
}

/** smtp-server's connection with mailplane's protocol decisions layered on top. */
class MailplaneConnection extends SMTPConnection {
  declare _server: MailplaneSMTPServer;
  private _progressAt = Date.now();

  // No pre-greeting delay: smtp-server waits 100 ms to catch early talkers.
  override init(): void {
    this.name = this._server.handlers.hostname(); // greeting and EHLO name the configured host
    live.add(this);
    sweeper ??= setInterval(sweep, 1000).unref();
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

class MailplaneSMTPServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    readonly handlers: SessionHandlers,
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

export type ListenerState = 'serving' | 'draining' | 'closed';

export type SharedSessionDeps = Omit<SessionDeps, 'listener' | 'current' | 'openSessions'>;

export class Listener {
  readonly server: MailplaneSMTPServer;
  readonly handlers: SessionHandlers;
  state: ListenerState = 'serving';
  private drained: Promise<void> | null = null;

  /**
   * @param spec the socket-level settings this instance was built for (port, address, TLS mode, PROXY)
   * @param context what new sessions pin; replaced on every applied generation
   */
  constructor(
    readonly spec: ListenerSpec,
    public context: ListenerContext,
    deps: SharedSessionDeps,
    tls: { cert: string; key: string; context: SecureContext } | null,
    idleTimeoutMs: number,
    private readonly log: Logger,
  ) {
    const handlers = new SessionHandlers({
      ...deps,
      listener: spec.name,
      current: () => this.context,
      openSessions: () => this.server.connections.size,
    });
    this.handlers = handlers;
    const implicit = spec.tls === 'implicit';
    const options: SMTPServerOptions = {
      secure: implicit,
      hideSTARTTLS: spec.tls !== 'starttls',
      disabledCommands: spec.tls === 'starttls' ? [] : ['STARTTLS'],
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true, // who must authenticate is policy, decided in onMailFrom
      allowInsecureAuth: false,
      hideENHANCEDSTATUSCODES: false,
      hideSize: true, // we advertise the pinned limit ourselves
      disableReverseLookup: true, // a PTR lookup per connection would stall the greeting
      useProxy: spec.proxyProtocol,
      socketTimeout: idleTimeoutMs,
      logger: false,
      banner: 'mailplane',
      name: handlers.hostname(), // replaced per connection; set so the library never asks the OS
      minVersion: 'TLSv1.2',
      ...(tls ? { key: tls.key, cert: tls.cert } : {}),
      onConnect: (s, cb) => handlers.onConnect(s as Session, cb),
      onSecure: (sock, s, cb) => handlers.onSecure(sock as import('node:tls').TLSSocket, s as Session, cb),
      onAuth: (a, s, cb) => handlers.onAuth(a, s as Session, cb),
      onMailFrom: (a, s, cb) => handlers.onMailFrom(a, s as Session, cb),
      onRcptTo: (a, s, cb) => handlers.onRcptTo(a, s as Session, cb),
      onData: (st, s, cb) => handlers.onData(st, s as Session, cb),
      onClose: (s) => handlers.onClose(s as Session),
    };
    this.server = new MailplaneSMTPServer(options, handlers);
    if (tls) this.setTlsContext(tls.context);
    this.server.on('error', (err: Error) => this.log.debug('smtp connection error', { listener: spec.name, error: err }));
  }

  get name(): string {
    return this.spec.name;
  }

  get openSessions(): number {
    return this.server.connections.size;
  }

  /** Takes a connection accepted by the Binding that targets this listener. */
  accept(socket: Socket): void {
    this.server.server.emit('connection', socket);
  }

  /** Swaps the certificate for new handshakes; the context was built (and so checked) by the caller. */
  setTlsContext(context: SecureContext): void {
    this.server.secureContext = new Map([['*', context]]);
  }

  /**
   * Stops accepting, lets open sessions finish on their own, and closes what is left after
   * graceMs. Resolves when every session is gone.
   */
  drain(graceMs: number): Promise<void> {
    if (this.drained) return this.drained;
    this.state = 'draining';
    this.drained = new Promise<void>((resolve) => {
      const deadline = Date.now() + graceMs;
      const tick = () => {
        if (this.server.connections.size > 0 && Date.now() < deadline) {
          setTimeout(tick, 25).unref();
          return;
        }
        if (this.server.connections.size > 0) {
          this.log.warn('drain grace over, closing remaining sessions', { listener: this.name, sessions: this.server.connections.size });
          for (const c of this.server.connections) {
            c.send(421, '4.3.2 Service shutting down, closing connection');
            c.close();
          }
        }
        this.state = 'closed';
        resolve();
      };
      tick();
    });
    return this.drained;
  }

  /** Settings read by smtp-server at command time, updated for new and open sessions alike. */
  setIdleTimeout(ms: number): void {
    this.server.options.socketTimeout = ms;
  }
}
