// The SMTP policy, one handler per step of a session. A session pins the policy of the
// generation it connected under; every decision below reads that pinned snapshot.
import type { TLSSocket } from 'node:tls';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { ListenerSpec } from '../config/desired-state.js';
import { isNoSpace } from '../store/durable.js';
import type { Intake, LocalTarget } from '../store/intake.js';
import { newQueueId } from '../store/queue-entry.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { splitAddress } from '../mail/addresses.js';
import type { AuthLimiter, ClientConnections } from './limits.js';
import { isTrusted, type SessionPolicy } from './policy.js';
import { receivedHeader } from '../mail/received.js';
import { Replies, SmtpReply } from './replies.js';

/** What a new session pins: swapped by the controller when a generation is applied. */
export interface ListenerContext {
  readonly policy: SessionPolicy;
  readonly spec: ListenerSpec;
  readonly intake: Intake;
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
}

export interface SessionState {
  readonly policy: SessionPolicy;
  readonly intake: Intake;
  readonly spec: ListenerSpec;
  readonly trusted: boolean;
  readonly startedAt: number;
  tls: { version: string; cipher: string } | null;
  user: string | null;
  counted: boolean;
  accepted: number;
  /** ids of the messages accepted in this session, for the session's log line */
  ids: string[];
  rejected: Record<string, number>;
  local: Map<string, LocalTarget>;
  remote: Map<string, string>;
}

export type Session = SMTPServerSession & { mp?: SessionState };

export interface SessionDeps {
  readonly listener: string;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly authLimiter: AuthLimiter;
  readonly clients: ClientConnections;
  /** what new sessions pin: the context of the generation serving now */
  readonly current: () => ListenerContext;
  /** open sessions on this listener, the new one included */
  readonly openSessions: () => number;
}

type Cb = (err?: Error | null) => void;

export class SessionHandlers {
  constructor(private readonly d: SessionDeps) {}

  /** The host name new sessions greet with (the pinned generation's `hostname`). */
  hostname(): string {
    return this.d.current().policy.hostname;
  }

  onConnect(session: Session, cb: Cb): void {
    const ip = session.remoteAddress;
    const cur = this.d.current();
    this.d.metrics.smtpConnections.inc({ listener: this.d.listener });
    if (this.d.authLimiter.isLocked(ip)) return cb(this.refuse(Replies.tooManyFailures()));
    if (this.d.openSessions() > cur.maxConnections || !this.d.clients.acquire(ip, cur.maxConnectionsPerClient)) {
      return cb(this.refuse(Replies.tooManyConnections()));
    }
    session.mp = {
      policy: cur.policy,
      intake: cur.intake,
      spec: cur.spec,
      trusted: isTrusted(cur.policy, ip),
      startedAt: Date.now(),
      tls: null,
      user: null,
      counted: true,
      accepted: 0,
      ids: [],
      rejected: {},
      local: new Map(),
      remote: new Map(),
    };
    this.d.metrics.smtpSessionsActive.inc({ listener: this.d.listener });
    cb();
  }

  onSecure(socket: TLSSocket, session: Session, cb: Cb): void {
    const st = session.mp;
    if (st) st.tls = { version: socket.getProtocol() ?? 'TLS', cipher: socket.getCipher()?.name ?? 'unknown' };
    cb();
  }

  onAuth(auth: SMTPServerAuthentication, session: Session, cb: (err: Error | null | undefined, res?: SMTPServerAuthenticationResponse) => void): void {
    const st = session.mp;
    if (!st) return cb(Replies.authFailed());
    this.authenticate(st, auth, session.remoteAddress).then(
      (user) => {
        st.user = user;
        this.d.metrics.smtpAuth.inc({ listener: this.d.listener, result: 'success' });
        cb(null, { user });
      },
      (err: Error) => cb(this.reject(st, err)),
    );
  }

  private async authenticate(st: SessionState, auth: SMTPServerAuthentication, ip: string): Promise<string> {
    const { policy } = st;
    const limiter = this.d.authLimiter;
    if (limiter.isLocked(ip)) throw Replies.tooManyFailures();
    const login = (auth.username ?? '').trim();
    const authzid = (auth as { authzid?: string }).authzid ?? '';
    const authcid = (auth as { authcid?: string }).authcid ?? '';
    const fail = (reply: SmtpReply): never => {
      this.d.metrics.smtpAuth.inc({ listener: this.d.listener, result: 'failure' });
      const locked = limiter.recordFailure(ip, login, policy.auth);
      throw locked ? Replies.tooManyFailures() : reply;
    };
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') return fail(Replies.authFailed());
    if (authzid && authcid && authzid !== authcid) return fail(Replies.authIdentity());
    const delay = limiter.userDelayMs(login, policy.auth);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const { local, domain } = splitAddress(login);
    const name = login.includes('@') ? (policy.domains.has(domain) ? local : '') : login;
    const outcome = await policy.accounts.authenticate(name, auth.password ?? '');
    if (outcome.ok) return outcome.user;
    if (outcome.reason === 'unavailable') {
      this.d.metrics.smtpAuth.inc({ listener: this.d.listener, result: 'error' });
      this.d.log.warn('account backend unavailable during AUTH', { listener: this.d.listener, backend: policy.accounts.kind, detail: outcome.detail });
      throw Replies.authUnavailable();
    }
    return fail(Replies.authFailed());
  }

  onMailFrom(address: SMTPServerAddress, session: Session, cb: Cb): void {
    const st = session.mp;
    if (!st) return cb(Replies.storageError());
    this.mailFrom(st, address).then(
      () => cb(),
      (err: Error) => cb(this.reject(st, err)),
    );
  }

  private async mailFrom(st: SessionState, address: SMTPServerAddress): Promise<void> {
    const { policy } = st;
    st.local = new Map();
    st.remote = new Map();
    if (st.spec.role === 'submission' && policy.authRequired && !st.user && !st.trusted) throw Replies.authRequired();
    const args = address.args as Record<string, string> | false | undefined;
    const declared = Number((args && args.SIZE) || 0);
    if (declared > policy.maxMessageSize) throw Replies.tooBig(policy.maxMessageSize);
    if (st.user && address.address) {
      const { local, domain } = splitAddress(address.address);
      const owned = policy.domains.has(domain) && (await policy.accounts.senderLocalParts(st.user)).includes(local.toLowerCase());
      if (!owned) throw Replies.senderMismatch(address.address);
    }
  }

  onRcptTo(address: SMTPServerAddress, session: Session, cb: Cb): void {
    const st = session.mp;
    if (!st) return cb(Replies.storageError());
    this.rcptTo(st, address.address, session.envelope.rcptTo.length).then(
      () => cb(),
      (err: Error) => cb(this.reject(st, err)),
    );
  }

  private async rcptTo(st: SessionState, address: string, count: number): Promise<void> {
    const { policy } = st;
    const key = address.toLowerCase();
    if (count >= policy.maxRecipients && !st.local.has(key) && !st.remote.has(key)) throw Replies.tooManyRecipients();
    const { local, domain, literal } = splitAddress(address);
    if (!literal && policy.domains.has(domain)) {
      const found = await policy.accounts.findRecipient(local);
      if (found.found) {
        st.local.set(key, { user: found.user, address });
        return;
      }
      if (found.unavailable) {
        this.d.log.warn('account backend unavailable during RCPT', { listener: this.d.listener, backend: policy.accounts.kind, detail: found.detail });
        throw Replies.recipientUnavailable();
      }
      throw Replies.unknownRecipient(address);
    }
    if (st.user || st.trusted) {
      st.remote.set(key, address);
      return;
    }
    throw Replies.relayDenied(address);
  }

  onData(stream: SMTPServerDataStream, session: Session, cb: (err?: Error | null, message?: string) => void): void {
    const st = session.mp;
    if (!st) {
      stream.resume();
      return cb(Replies.storageError());
    }
    const limit = st.policy.maxMessageSize;
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
      else chunks.length = 0; // over the limit: keep reading, store nothing
    });
    stream.on('error', () => {}); // the client went away mid-message; the connection reports it
    stream.on('end', () => {
      if (size > limit || stream.sizeExceeded) {
        this.d.metrics.smtpMessages.inc({ listener: this.d.listener, result: 'rejected' });
        return cb(this.reject(st, Replies.tooBig(limit)));
      }
      this.store(st, session, chunks, size).then(
        (id) => cb(null, Replies.accepted(id)),
        (err: Error) => {
          this.d.metrics.smtpMessages.inc({ listener: this.d.listener, result: 'rejected' });
          if (!(err instanceof SmtpReply)) this.d.log.error('storing a message failed', { listener: this.d.listener, error: err });
          cb(this.reject(st, err instanceof SmtpReply ? err : isNoSpace(err) ? Replies.storageFull() : Replies.storageError()));
        },
      );
    });
  }

  private async store(st: SessionState, session: Session, body: Buffer[], size: number): Promise<string> {
    const id = newQueueId();
    const recipients = session.envelope.rcptTo.map((r) => r.address);
    const received = receivedHeader({
      helo: session.hostNameAppearsAs ?? '',
      clientAddress: session.remoteAddress,
      hostname: st.policy.hostname,
      esmtp: session.openingCommand === 'EHLO',
      tls: st.tls,
      authenticated: !!st.user,
      id,
      recipients,
      date: new Date(),
    });
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const result = await st.intake.accept({
      id,
      sender,
      local: [...st.local.values()],
      remote: [...st.remote.values()],
      received,
      body,
      size,
    });
    st.accepted++;
    const m = this.d.metrics;
    m.smtpMessages.inc({ listener: this.d.listener, result: 'accepted' });
    m.smtpMessageSize.observe({ listener: this.d.listener }, size);
    if (result.mailboxes.length) m.delivery.inc({ transport: 'local', result: 'delivered' }, result.mailboxes.length);
    st.ids.push(id);
    return id;
  }

  onClose(session: Session): void {
    const st = session.mp;
    if (!st?.counted) return;
    st.counted = false;
    this.d.clients.release(session.remoteAddress);
    this.d.metrics.smtpSessionsActive.dec({ listener: this.d.listener });
    this.d.log.info('session closed', {
      listener: this.d.listener,
      session: session.id,
      client: session.remoteAddress,
      helo: session.hostNameAppearsAs || undefined,
      tls: st.tls?.version,
      user: st.user ?? undefined,
      accepted: st.accepted,
      messages: st.ids.length ? st.ids : undefined,
      rejected: Object.keys(st.rejected).length ? st.rejected : undefined,
      durationMs: Date.now() - st.startedAt,
    });
  }

  /** Counts a refusal before the session exists (connection limits, lockout). */
  refuse(reply: SmtpReply): SmtpReply {
    if (reply.reason) this.d.metrics.smtpRejections.inc({ listener: this.d.listener, reason: reply.reason });
    return reply;
  }

  /** Counts and logs a refused command; unexpected errors become a temporary failure. */
  reject(st: SessionState, err: Error): SmtpReply {
    const reply = err instanceof SmtpReply ? err : Replies.storageError();
    if (!(err instanceof SmtpReply)) this.d.log.error('policy check failed', { listener: this.d.listener, error: err });
    if (reply.reason) {
      this.d.metrics.smtpRejections.inc({ listener: this.d.listener, reason: reply.reason });
      st.rejected[reply.reason] = (st.rejected[reply.reason] ?? 0) + 1;
    }
    return reply;
  }
}
