// The SMTP policy, one handler per step of a session. A session pins the policy of the
// generation it connected under; every decision below reads that pinned snapshot.
import type { TLSSocket } from 'node:tls';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { ListenerSpec } from '../config/desired-state.js';
import { isNoSpace } from '../store/durable.js';
import type { StoredBody } from '../store/body.js';
import { traceHead, type Intake, type LocalTarget } from '../store/intake.js';
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

  /**
   * The message streams into a BodyWriter (memory up to a threshold and a global budget, a
   * spool file beyond); the stream pauses while a spool file catches up, so a fast client never
   * fills memory. Over a limit, the rest is read and dropped, and the reply says why.
   */
  onData(stream: SMTPServerDataStream, session: Session, cb: (err?: Error | null, message?: string) => void): void {
    const st = session.mp;
    if (!st) {
      stream.resume();
      return cb(Replies.storageError());
    }
    const { policy } = st;
    const id = newQueueId();
    const local = [...st.local.values()];
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const received = receivedHeader({
      helo: session.hostNameAppearsAs ?? '',
      clientAddress: session.remoteAddress,
      hostname: policy.hostname,
      esmtp: session.openingCommand === 'EHLO',
      tls: st.tls,
      authenticated: !!st.user,
      id,
      recipients: session.envelope.rcptTo.map((r) => r.address),
      date: new Date(),
    });
    const { head, queueOffset } = traceHead(sender, local, received);
    const body = st.intake.openBody(id, head, { maxSize: policy.maxMessageSize, maxLineLength: policy.maxLineLength });
    let over = false;
    stream.on('data', (c: Buffer) => {
      if (body.write(c)) return;
      stream.pause();
      body.drained(() => stream.resume());
    });
    // the client went away mid-message: the connection reports it; what was spooled goes
    stream.on('error', () => {
      over = true;
      body.abort();
    });
    stream.on('end', () => {
      if (over) return;
      const refused = body.tooBig || stream.sizeExceeded ? Replies.tooBig(policy.maxMessageSize) : body.lineTooLong ? Replies.lineTooLong(policy.maxLineLength) : null;
      if (refused) {
        body.abort();
        this.d.metrics.smtpMessages.inc({ listener: this.d.listener, result: 'rejected' });
        return cb(this.reject(st, refused));
      }
      if (body.spooled) this.d.metrics.bodiesSpooled.inc();
      body
        .finish()
        .then((stored) => this.store(st, id, sender, local, { body: stored, queueOffset, size: body.size }))
        .then(
          (accepted) => {
            body.release();
            cb(null, Replies.accepted(accepted));
          },
          (err: Error) => {
            body.abort();
            this.d.metrics.smtpMessages.inc({ listener: this.d.listener, result: 'rejected' });
            if (!(err instanceof SmtpReply)) this.d.log.error('storing a message failed', { listener: this.d.listener, error: err });
            cb(this.reject(st, err instanceof SmtpReply ? err : isNoSpace(err) ? Replies.storageFull() : Replies.storageError()));
          },
        );
    });
  }

  private async store(st: SessionState, id: string, sender: string, local: LocalTarget[], m: { body: StoredBody; queueOffset: number; size: number }): Promise<string> {
    const result = await st.intake.accept({ id, sender, local, remote: [...st.remote.values()], ...m });
    st.accepted++;
    const metrics = this.d.metrics;
    metrics.smtpMessages.inc({ listener: this.d.listener, result: 'accepted' });
    metrics.smtpMessageSize.observe({ listener: this.d.listener }, m.size);
    if (result.mailboxes.length) metrics.delivery.inc({ transport: 'local', result: 'delivered' }, result.mailboxes.length);
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
