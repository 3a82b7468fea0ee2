// One SMTP listener: a socket, the smtp-server instance behind it, and the policy and TLS
// context new sessions get. Policy and certificate swap in place; only a changed
// port/address/TLS mode needs a new Listener, and the old one drains instead of cutting
// sessions (SMTPServer.close() would answer 421 to every open session). The smtp-server
// instance and everything that reaches into the library live in engine.ts.
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { ListenerSpec } from '../config/desired-state.js';
import type { Logger } from '../ops/logger.js';
import { SmtpEngine } from './engine.js';
import { SessionHandlers, type ListenerContext, type SessionDeps } from './session.js';

export type ListenerState = 'serving' | 'draining' | 'closed';

export type SharedSessionDeps = Omit<SessionDeps, 'listener' | 'current' | 'openSessions'>;

export class Listener {
  readonly engine: SmtpEngine;
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
      openSessions: () => this.engine.openSessions,
    });
    this.handlers = handlers;
    this.engine = new SmtpEngine({ spec, handlers, tls, idleTimeoutMs });
    this.engine.onError((err: Error) => this.log.debug('smtp connection error', { listener: spec.name, error: err }));
  }

  get name(): string {
    return this.spec.name;
  }

  get openSessions(): number {
    return this.engine.openSessions;
  }

  /** Takes a connection accepted by the Binding that targets this listener. */
  accept(socket: Socket): void {
    this.engine.accept(socket);
  }

  /** Swaps the certificate for new handshakes; the context was built (and so checked) by the caller. */
  setTlsContext(context: SecureContext): void {
    this.engine.setTlsContext(context);
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
        if (this.engine.openSessions > 0 && Date.now() < deadline) {
          setTimeout(tick, 25).unref();
          return;
        }
        if (this.engine.openSessions > 0) {
          this.log.warn('drain grace over, closing remaining sessions', { listener: this.name, sessions: this.engine.openSessions });
          this.engine.closeSessions(421, '4.3.2 Service shutting down, closing connection');
        }
        this.state = 'closed';
        resolve();
      };
      tick();
    });
    return this.drained;
  }

  /** The idle timeout: new sessions get it at once; open ones when their timer is next armed. */
  setIdleTimeout(ms: number): void {
    this.engine.setIdleTimeout(ms);
  }
}
