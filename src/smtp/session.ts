// The SMTP policy, one handler per step of a session. A session pins the policy of the
// generation it connected under; every decision below reads that pinned snapshot.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { ListenerSpec } from '../config/desired-state.js';
import { isNoSpace } from '../store/durable.js';
import { maildirOf, traceHead, type Intake, type IncomingMessage, type LocalTarget } from '../store/intake.js';
import { AuthResultsFilter, type BodyWriter, type StoredBody } from '../store/body.js';
import type { AuthInput, AuthVerdict, InboundAuth } from './inbound-auth.js';
import type { ScanInput } from '../filter/rspamd.js';
import type { ScanOutcome } from '../filter/spam-filter.js';
import type { SpamFilterState } from '../config/desired-state.js';
import { foldAscii, isEmptyEdit, type HeaderEdit } from '../mail/header-edit.js';
import { newQueueId } from '../store/queue-entry.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { splitAddress } from '../mail/addresses.js';
import type { ConnectionToken, SharedLimits } from '../cluster/shared-limits.js';
import type { MailLog } from '../ops/mail-log.js';
import type { SpamFilter } from '../filter/spam-filter.js';
import { unmapV4 } from '../config/cidr.js';
import { formatDuration } from '../config/units.js';
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
  /** the client's address (IPv4-mapped IPv6 as IPv4) */
  readonly client: string;
  /** exempt or LAN-bypassed (on a peer listener: exempt only) */
  readonly trusted: boolean;
  /**
   * Another replica on a peer listener (an exempt client, or logged in with the peer secret): it
   * may relay anywhere and use the peer-only MAIL parameter, with no sending rate, harvest count or
   * spam scan (its mail was judged where it first arrived).
   */
  peer: boolean;
  /** what counts this connection against its address's limit (released when it closes) */
  readonly connection: ConnectionToken;
  /** this transaction's original arrival time (the peer-only MAIL parameter X-MAILPLANE-ARRIVED), else null */
  arrivedAt: number | null;
  readonly startedAt: number;
  tls: { version: string; cipher: string } | null;
  user: string | null;
  counted: boolean;
  accepted: number;
  /** ids of the messages accepted in this session, for the session's log line */
  ids: string[];
  rejected: Record<string, number>;
  /** RCPTs refused in this session (directory-harvest defence) */
  rejectedRecipients: number;
  local: Map<string, LocalTarget>;
  remote: Map<string, string>;
}

export type Session = SMTPServerSession & { mp?: SessionState; mpClosed?: boolean };

export interface SessionDeps {
  readonly listener: string;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** the abuse limits: lockouts, sending rates, connections per client, harvest (shared across replicas with cluster.redis) */
  readonly limits: SharedLimits;
  readonly mailLog: MailLog;
  readonly spamFilter: SpamFilter;
  /** what new sessions pin: the context of the generation serving now */
  readonly current: () => ListenerContext;
  /** open sessions on this listener, the new one included */
  readonly openSessions: () => number;
}

type Cb = (err?: Error | null) => void;

/** The mailbox of postmaster@ when no user or alias claims it (no user can be named so then). */
const POSTMASTER_MAILBOX = 'postmaster';

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
    // on a peer listener only exempt clients are trusted: LAN bypass does not reach there
    const peerListener = cur.spec.role === 'peer';
    const trusted = peerListener ? cur.policy.exemptClients.has(ip) : isTrusted(cur.policy, ip);
    if (this.d.openSessions() > cur.maxConnections) return cb(this.refuse(Replies.tooManyConnections()));
    // a locked-out address may still bring mail to our users (mx); submission and peer listeners are closed to it
    this.d.limits.connect(ip, { checkLock: cur.spec.role !== 'mx' && !trusted, maxPerClient: cur.maxConnectionsPerClient }).then(
      (d) => {
        if (d.refused === 'locked') {
          this.d.log.warn('connection refused: client locked out after failed AUTH', { listener: this.d.listener, client: unmapV4(ip) });
          return cb(this.refuse(Replies.tooManyFailures()));
        }
        if (d.refused) return cb(this.refuse(Replies.tooManyConnections()));
        if (session.mpClosed) return this.d.limits.release(d.token); // gone while it was counted
        this.opened(session, cur, trusted, peerListener && trusted, d.token);
        cb();
      },
      (err: Error) => cb(err),
    );
  }

  private opened(session: Session, cur: ListenerContext, trusted: boolean, peer: boolean, connection: ConnectionToken): void {
    session.mp = {
      policy: cur.policy,
      intake: cur.intake,
      spec: cur.spec,
      client: unmapV4(session.remoteAddress),
      trusted,
      peer,
      connection,
      arrivedAt: null,
      startedAt: Date.now(),
      tls: null,
      user: null,
      counted: true,
      accepted: 0,
      ids: [],
      rejected: {},
      rejectedRecipients: 0,
      local: new Map(),
      remote: new Map(),
    };
    this.d.metrics.smtpSessionsActive.inc({ listener: this.d.listener });
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
      (who) => {
        if (who.peer) st.peer = true;
        else st.user = who.user;
        this.d.metrics.smtpAuth.inc({ listener: this.d.listener, result: 'success' });
        cb(null, { user: who.user ?? PEER_LOGIN });
      },
      (err: Error) => cb(this.reject(st, err)),
    );
  }

  /** The user logged in, or (on a peer listener, with the peer secret) a peer. */
  private async authenticate(st: SessionState, auth: SMTPServerAuthentication, ip: string): Promise<{ user: string | null; peer: boolean }> {
    const { policy } = st;
    const limits = this.d.limits;
    // on mx the session stays open after a refused AUTH: mail to our users goes on
    const lockedReply = () => (st.spec.role === 'mx' ? Replies.authLockedOut() : Replies.tooManyFailures());
    const login = (auth.username ?? '').trim();
    const check = await limits.authCheck(ip, login, policy.auth);
    if (!st.trusted && check.lockout) {
      this.d.log.warn('AUTH refused: client locked out after failed AUTH', { listener: this.d.listener, client: st.client });
      throw lockedReply();
    }
    const authzid = (auth as { authzid?: string }).authzid ?? '';
    const authcid = (auth as { authcid?: string }).authcid ?? '';
    const fail = async (reply: SmtpReply): Promise<never> => {
      this.d.metrics.smtpAuth.inc({ listener: this.d.listener, result: 'failure' });
      this.d.log.warn('AUTH failed', { listener: this.d.listener, client: st.client, method: auth.method });
      const lockout = await limits.recordFailure(ip, login, policy.auth, st.trusted);
      if (!lockout) throw reply;
      this.d.log.warn('AUTH lockout started', { listener: this.d.listener, client: st.client, failures: lockout.failures, lockoutSeconds: Math.round(policy.auth.lockoutMs / 1000) });
      throw lockedReply();
    };
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') return fail(Replies.authFailed());
    if (authzid && authcid && authzid !== authcid) return fail(Replies.authIdentity());
    if (check.userDelayMs) await new Promise((r) => setTimeout(r, check.userDelayMs));
    // a peer listener knows one login: the peer secret (our users log in on submission listeners)
    if (st.spec.role === 'peer') {
      if (policy.peerSecret && login === PEER_LOGIN && sameSecret(auth.password ?? '', policy.peerSecret.reveal())) return { user: null, peer: true };
      return fail(Replies.authFailed());
    }
    const { local, domain } = splitAddress(login);
    const name = login.includes('@') ? (policy.domains.has(domain) ? local : '') : login;
    const outcome = await policy.accounts.authenticate(name, auth.password ?? '');
    if (outcome.ok) return { user: outcome.user, peer: false };
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
    const refused = (err: Error) => this.reject(st, err, { command: 'MAIL', address: address.address });
    this.overRate(st, 1)
      .then((overRate) => {
        if (overRate) throw overRate;
        return this.mailFrom(st, address);
      })
      .then(
        () => cb(),
        (err: Error) => cb(refused(err)),
      );
  }

  private async mailFrom(st: SessionState, address: SMTPServerAddress): Promise<void> {
    const { policy } = st;
    st.local = new Map();
    st.remote = new Map();
    st.arrivedAt = null;
    if (st.spec.role === 'submission' && policy.authRequired && !st.user && !st.trusted) throw Replies.authRequired();
    // a peer listener takes mail from the other replicas only
    if (st.spec.role === 'peer' && !st.peer) throw Replies.peerOnly();
    const args = address.args as Record<string, string> | false | undefined;
    const arrived = args ? args[ARRIVED_PARAMETER] : undefined;
    if (arrived !== undefined) {
      if (!st.peer) throw Replies.parameterNotSupported(ARRIVED_PARAMETER); // commands.ts refuses it first
      if (!/^\d{1,15}$/.test(arrived)) throw Replies.badParameter(ARRIVED_PARAMETER);
      st.arrivedAt = Math.min(Number(arrived), Date.now());
    }
    const declared = Number((args && args.SIZE) || 0);
    if (declared > policy.maxMessageSize) throw Replies.tooBig(policy.maxMessageSize);
    if (st.user && address.address) {
      const { local, domain } = splitAddress(address.address);
      if (!policy.domains.has(domain)) throw Replies.senderMismatch(address.address);
      const part = local.toLowerCase();
      // their own name needs no lookup (and none to fail); an alias asks the account backend
      if (part !== st.user) {
        const own = await policy.accounts.senderLocalParts(st.user);
        if (!own.available) {
          this.d.log.warn('account backend unavailable during MAIL', { listener: this.d.listener, backend: policy.accounts.kind, detail: own.detail });
          throw Replies.senderUnavailable();
        }
        if (!own.localParts.includes(part)) throw Replies.senderMismatch(address.address);
      }
    }
  }

  onRcptTo(address: SMTPServerAddress, session: Session, cb: Cb): void {
    const st = session.mp;
    if (!st) return cb(Replies.storageError());
    const refused = (err: Error) => this.reject(st, err, { command: 'RCPT', address: address.address });
    this.overRate(st, st.local.size + st.remote.size + 1).then((overRate) => {
      if (overRate) return cb(refused(overRate));
      this.rcptTo(st, address.address, session.envelope.rcptTo.length).then(
        () => cb(),
        (err: Error) => this.refuseRecipient(st, refused(err), cb, address.address),
      );
    }, cb);
  }

  /**
   * Directory-harvest defence: refused RCPTs beyond `delayAfter` are answered after a delay
   * (the server's time: the command timeout does not run), and the one that reaches
   * `disconnectAfter` gets 421 and closes the session. With cluster.redis the count is the larger
   * of the session's and its address's across sessions and replicas (within the window).
   */
  private refuseRecipient(st: SessionState, reply: SmtpReply, cb: Cb, address: string): void {
    if (reply.reason !== 'unknown_recipient' && reply.reason !== 'relay_denied') return cb(reply);
    if (st.peer) return cb(reply); // another replica handing over: its refusals are no harvest
    const limits = st.policy.rejectedRecipients;
    const own = ++st.rejectedRecipients;
    this.d.limits.harvest(st.client, limits.windowMs).then((shared) => {
      const n = Math.max(own, shared ?? 0);
      if (limits.disconnectAfter > 0 && n >= limits.disconnectAfter) {
        this.d.log.warn('session closed: too many rejected recipients', { listener: this.d.listener, client: st.client, rejected: n });
        return cb(this.reject(st, Replies.tooManyRejectedRecipients(), { command: 'RCPT', address }));
      }
      if (n > limits.delayAfter && limits.delayMs > 0) setTimeout(() => cb(reply), limits.delayMs);
      else cb(reply);
    }, cb);
  }

  /**
   * The sending rate of an authenticated user, or of a trusted address without AUTH: whether
   * one more message with `recipients` recipients would exceed it (the reply, logged), or null.
   */
  private async overRate(st: SessionState, recipients: number): Promise<SmtpReply | null> {
    const key = rateKey(st);
    if (key === null) return null;
    const rate = st.policy.sendRate;
    const over = await this.d.limits.rateExceeds(key, rate, recipients);
    if (!over) return null;
    const limit = over === 'messages' ? rate.messages : rate.recipients;
    this.d.log.warn('sending rate limit reached', { listener: this.d.listener, client: st.client, user: st.user ?? undefined, limit: `${limit} ${over} per ${formatDuration(rate.windowMs)}` });
    return Replies.sendRate(over, limit, formatDuration(rate.windowMs));
  }

  private async rcptTo(st: SessionState, address: string, count: number): Promise<void> {
    const { policy } = st;
    const key = address.toLowerCase();
    if (count >= policy.maxRecipients && !st.local.has(key) && !st.remote.has(key)) throw Replies.tooManyRecipients();
    const { local, domain, literal } = splitAddress(address);
    // RFC 5321 §4.5.1: postmaster@ each of our domains is always deliverable. Without a user or
    // alias of that name (validate warns), it goes to a mailbox of its own: <dataDir>/mail/postmaster.
    if (!literal && policy.domains.has(domain) && local.toLowerCase() === 'postmaster') {
      const found = await policy.accounts.findRecipient(local);
      if (found.found || !found.unavailable) {
        st.local.set(key, { user: found.found ? found.user : POSTMASTER_MAILBOX, address });
        return;
      }
      this.d.log.warn('account backend unavailable during RCPT', { listener: this.d.listener, backend: policy.accounts.kind, detail: found.detail });
      throw Replies.recipientUnavailable();
    }
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
    if (st.user || st.trusted || st.peer) {
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
    const startedAt = Date.now();
    const local = [...st.local.values()];
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const received = receivedHeader({
      helo: session.hostNameAppearsAs ?? '',
      clientAddress: session.remoteAddress,
      hostname: policy.hostname,
      esmtp: session.openingCommand === 'EHLO',
      utf8: !!session.envelope.smtpUtf8,
      tls: st.tls,
      authenticated: !!st.user,
      id,
      recipients: session.envelope.rcptTo.map((r) => r.address),
      date: new Date(),
    });
    const { head, queueOffset } = traceHead(sender, local, received);
    // RFC 8601 §5: results claiming our host name are ours to add; from outside they are forged
    const filter = st.trusted || st.peer ? null : new AuthResultsFilter(policy.hostname);
    const body = st.intake.openBody(id, head, { maxSize: policy.maxMessageSize, maxLineLength: policy.maxLineLength }, filter);
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
      const refused =
        body.tooBig || stream.sizeExceeded
          ? Replies.tooBig(policy.maxMessageSize)
          : body.lineTooLong
            ? Replies.lineTooLong(policy.maxLineLength)
            : // a loop: with ours, more Received headers than allowed (as the queue counts them)
              local.length && body.headers.count >= policy.maxReceivedHeaders
              ? Replies.mailLoop(policy.maxReceivedHeaders)
              : null;
      if (refused) {
        body.abort();
        this.d.metrics.smtpMessages.inc({ listener: this.d.listener, result: 'rejected' });
        return cb(this.reject(st, refused));
      }
      if (body.spooled) this.d.metrics.bodiesSpooled.inc();
      if (body.forgedAuthResults) this.d.metrics.inboundAuthForged.inc(body.forgedAuthResults);
      this.checkedBody(st, session, body, { id, sender, local, received, queueOffset })
        .then(({ stored, offset, targets }) =>
          this.store(st, id, sender, targets, startedAt, {
            body: stored,
            queueOffset: offset,
            size: body.size,
            eightBitMime: session.envelope.bodyType === '8bitmime',
            smtputf8: !!session.envelope.smtpUtf8,
          }),
        )
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

  /**
   * The finished body, inspected when inspection is due: inbound.checks (mail to local mailboxes
   * from an mx client neither authenticated nor trusted) and the spam filter (inbound.spamFilter:
   * every mx message, and authenticated users' with scanSubmissions), run side by side. Their
   * verdicts may refuse the message (an SmtpReply: nothing is stored), file it in the junk folder
   * (the targets returned), edit its header section (Rspamd's subject, headers it removes), and
   * add fields to the Maildir copies (our Authentication-Results, the spam headers), above our
   * Received. A body in memory is inspected before it is stored; one in a spool file (over
   * 1 MiB, or the memory budget spent) from the file, which is then rewritten with the fields.
   */
  private async checkedBody(
    st: SessionState,
    session: Session,
    body: BodyWriter,
    m: { id: string; sender: string; local: LocalTarget[]; received: string; queueOffset: number },
  ): Promise<{ stored: StoredBody; offset: number; targets: LocalTarget[] }> {
    const { policy } = st;
    const auth = policy.inboundAuth && m.local.length && st.spec.role === 'mx' && st.user === null && !st.trusted ? policy.inboundAuth : null;
    // mail a peer hands over was scanned where it first arrived
    const spam = policy.spamFilter && !st.peer && (st.user === null || policy.spamFilter.scanSubmissions) ? policy.spamFilter : null;
    if (!auth && !spam) return { stored: await body.finish(), offset: m.queueOffset, targets: m.local };
    const authInput = { ip: st.client, helo: session.hostNameAppearsAs ?? '', sender: m.sender };
    const scanInput = (message: Readable, length: number): ScanInput => ({
      message,
      length,
      ip: st.client,
      helo: session.hostNameAppearsAs ?? '',
      from: m.sender,
      rcpt: [...m.local.map((t) => t.address), ...st.remote.values()],
      user: st.user,
      queueId: m.id,
      hostname: policy.hostname,
      tls: st.tls,
      trusted: st.trusted,
    });
    const tooBig = spam !== null && body.size > spam.maxSize;
    if (body.message()) {
      const length = body.messageLength();
      const [v, s] = await Promise.all([auth ? this.runChecks(st, auth, body.message()!, authInput) : null, spam && !tooBig ? this.d.spamFilter.scan(scanInput(body.message()!, length)) : null]);
      const out = this.applyVerdicts(st, { auth: auth ? v : undefined, spam: spam ? { spec: spam, tooBig, outcome: s } : null }, m);
      return { stored: await body.finish(out.head, out.edit), offset: out.queueOffset, targets: out.targets };
    }
    const stored = await body.finish();
    const length = stored.length - body.headLength;
    const [v, s] = await Promise.all([
      auth ? this.runChecks(st, auth, body.spooledMessage(stored)!, authInput) : null,
      spam && !tooBig ? this.d.spamFilter.scan(scanInput(body.spooledMessage(stored)!, length)) : null,
    ]);
    const out = this.applyVerdicts(st, { auth: auth ? v : undefined, spam: spam ? { spec: spam, tooBig, outcome: s } : null }, m);
    if (!out.head && isEmptyEdit(out.edit)) return { stored, offset: m.queueOffset, targets: m.local };
    return { stored: await body.rehead(stored as StoredBody & { kind: 'spool' }, out.head ?? body.originalHead, out.edit), offset: out.queueOffset, targets: out.targets };
  }

  /** The checks' verdict, counted; null when the checker itself failed (logged: the message goes on unchecked). */
  private async runChecks(st: SessionState, auth: InboundAuth, message: Readable, input: AuthInput): Promise<AuthVerdict | null> {
    try {
      const v = await auth.check(message, input);
      for (const r of v.results) this.d.metrics.inboundAuth.inc(r);
      return v;
    } catch (e) {
      message.destroy();
      this.d.metrics.inboundAuthSkipped.inc({ reason: 'error' });
      this.d.log.warn('inbound authentication checks failed', { listener: this.d.listener, client: st.client, error: e as Error });
      return null;
    }
  }

  /**
   * Where the message goes after its inspection, the trace head that carries the fields for the
   * Maildir copies, and the edits of its header section; throws the reply when a verdict
   * refuses or defers it. `auth` undefined: not checked; null: the checker failed.
   */
  private applyVerdicts(
    st: SessionState,
    v: { auth: AuthVerdict | null | undefined; spam: { spec: SpamFilterState; tooBig: boolean; outcome: ScanOutcome | null } | null },
    m: { sender: string; local: LocalTarget[]; received: string; queueOffset: number },
  ): { targets: LocalTarget[]; head: Buffer | undefined; queueOffset: number; edit: HeaderEdit | undefined } {
    const refuse = (reply: SmtpReply, extra: Record<string, unknown> = {}): never => {
      this.d.mailLog.refused({ listener: this.d.listener, client: st.client, command: 'DATA', address: m.sender, reason: reply.reason ?? 'error', reply: `${reply.responseCode} ${reply.message}` });
      if (Object.keys(extra).length) this.d.log.warn('message refused by the spam filter', { listener: this.d.listener, client: st.client, user: st.user ?? undefined, ...extra });
      throw reply;
    };
    let junk = false;
    let fields = '';
    // authentication: a refusal or deferral first (nothing else matters then)
    const d = v.auth?.decision;
    if (d) {
      const about = { listener: this.d.listener, client: st.client, from: m.sender, domain: d.domain ?? undefined, rule: d.rule ?? undefined };
      if (d.arcOverride) {
        this.d.metrics.inboundActions.inc({ rule: d.rule!, action: 'arc_override' });
        this.d.log.info('inbound rule overridden by a trusted ARC sealer', { ...about, sealer: d.arcOverride });
      } else if (d.rule) {
        this.d.metrics.inboundActions.inc({ rule: d.rule, action: d.action });
      }
      if (d.action === 'reject' || d.action === 'tempfail') {
        refuse(d.action === 'tempfail' ? Replies.authChecksUnavailable() : d.rule === 'dmarc' ? Replies.dmarcReject(d.domain ?? '') : Replies.spoofedOwnDomain(d.domain ?? ''));
      }
      if (d.action === 'junk') {
        junk = true;
        this.d.log.info('message filed as junk', { ...about, folder: st.policy.junkFolder });
      }
    }
    if (v.auth) fields += v.auth.header;
    // the spam filter: outsiders (untrusted, unauthenticated) get every action; our own users
    // and trusted clients only the refusals, and their mail is never edited
    let edit: HeaderEdit | undefined;
    const sp = v.spam;
    if (sp) {
      const outsider = st.user === null && !st.trusted;
      if (sp.tooBig) {
        this.d.metrics.spamScans.inc({ action: 'too_big' });
        fields += `X-Spam-Unscanned: larger than the spam filter's maxSize (${sp.spec.maxSize} bytes)\r\n`;
      } else if (sp.outcome && !sp.outcome.ok) {
        if (sp.spec.onError === 'tempfail') refuse(Replies.spamFilterUnavailable());
        fields += `X-Spam-Unscanned: ${foldAscii(`spam filter unavailable (${sp.outcome.error})`, 18)}\r\n`;
      } else if (sp.outcome?.ok) {
        const r = sp.outcome.result;
        const who = { from: m.sender, score: r.score, symbols: r.symbols.slice(0, 10).join(' ') };
        if (r.action === 'reject') refuse(Replies.spamReject(r.message), who);
        if (r.action === 'soft reject' || (r.action === 'greylist' && outsider)) refuse(Replies.spamSoftReject(r.message, r.action === 'greylist'));
        const spammy = outsider && (r.action === 'add header' || r.action === 'rewrite subject');
        if (spammy && r.action === 'add header') junk = true;
        const own = new Set(r.addHeaders.map((h) => h.name.toLowerCase()));
        if (spammy && !own.has('x-spam')) fields += 'X-Spam: Yes\r\n';
        if (!own.has('x-spamd-result'))
          fields += `X-Spamd-Result: ${foldAscii(`default: ${spammy ? 'True' : 'False'} [${r.score.toFixed(2)} / ${r.required.toFixed(2)}];${r.symbols.length ? ` ${r.symbols.join('; ')}` : ''}`, 16)}\r\n`;
        if (!own.has('x-spam-score')) fields += `X-Spam-Score: ${r.score.toFixed(2)}\r\n`;
        for (const h of r.addHeaders) fields += `${h.name}: ${foldAscii(h.value, h.name.length + 2)}\r\n`;
        if (outsider) {
          const remove = r.removeHeaders;
          const subject = r.action === 'rewrite subject' && r.subject !== null ? r.subject : undefined;
          if (remove.length || subject !== undefined) edit = { ...(subject !== undefined ? { subject } : {}), ...(remove.length ? { remove } : {}) };
        }
      }
    }
    const targets = junk ? m.local.map((t) => ({ ...t, folder: st.policy.junkFolder })) : m.local;
    // the fields are for Maildir copies: without local recipients there is nothing to add them to
    if ((!fields || !m.local.length) && !junk) return { targets, head: undefined, queueOffset: m.queueOffset, edit };
    const { head, queueOffset } = traceHead(m.sender, targets, m.received, fields);
    return { targets, head, queueOffset, edit };
  }

  private async store(
    st: SessionState,
    id: string,
    sender: string,
    local: LocalTarget[],
    startedAt: number,
    m: Pick<IncomingMessage, 'body' | 'queueOffset' | 'size' | 'eightBitMime' | 'smtputf8'>,
  ): Promise<string> {
    // handed over by a peer: its original arrival, and its DKIM signature (if any) already in the bytes
    const handedOver = st.arrivedAt !== null ? { arrivedAt: st.arrivedAt, dkim: '' } : {};
    const result = await st.intake.accept({ id, sender, local, remote: [...st.remote.values()], ...m, ...handedOver });
    const key = rateKey(st);
    if (key !== null) this.d.limits.rateRecord(key, st.policy.sendRate, local.length + st.remote.size);
    st.accepted++;
    const metrics = this.d.metrics;
    metrics.smtpMessages.inc({ listener: this.d.listener, result: 'accepted' });
    metrics.smtpMessageSize.observe({ listener: this.d.listener }, m.size);
    if (result.mailboxes.length) metrics.delivery.inc({ transport: 'local', result: 'delivered' }, result.mailboxes.length);
    st.ids.push(id);
    const log = this.d.mailLog;
    log.accepted({ listener: this.d.listener, id, from: sender, size: m.size, recipients: local.length + st.remote.size, client: st.client, user: st.user });
    const delay = (Date.now() - startedAt) / 1000;
    // none written (mailboxes.store: lmtp): the local copies are queued, their outcome is logged on delivery
    for (const t of result.mailboxes.length ? local : []) {
      const to = `${t.user}@${splitAddress(t.address).domain}`;
      log.recipient({
        id,
        from: sender,
        to,
        origTo: to === t.address.toLowerCase() ? undefined : t.address,
        transport: 'local',
        relay: `maildir ${maildirOf(t)}`,
        delay,
        dsn: '2.0.0',
        status: 'delivered',
      });
    }
    return id;
  }

  onClose(session: Session): void {
    const st = session.mp;
    if (!st) session.mpClosed = true; // its connection may still be being counted (onConnect)
    if (!st?.counted) return;
    st.counted = false;
    this.d.limits.release(st.connection);
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

  /**
   * Counts a refused command, and logs it with the client and the address refused when there is
   * one (MAIL, RCPT); unexpected errors become a temporary failure.
   */
  reject(st: SessionState, err: Error, about?: { command: 'MAIL' | 'RCPT'; address: string }): SmtpReply {
    const reply = err instanceof SmtpReply ? err : Replies.storageError();
    if (!(err instanceof SmtpReply)) this.d.log.error('policy check failed', { listener: this.d.listener, error: err });
    if (reply.reason) {
      this.d.metrics.smtpRejections.inc({ listener: this.d.listener, reason: reply.reason });
      st.rejected[reply.reason] = (st.rejected[reply.reason] ?? 0) + 1;
    }
    if (about) this.d.mailLog.refused({ listener: this.d.listener, client: st.client, ...about, reason: reply.reason ?? 'error', reply: `${reply.responseCode} ${reply.message}` });
    return reply;
  }
}

/** Whose sending rate a session counts against: its user, else a trusted client's address (a peer: none). */
function rateKey(st: SessionState): string | null {
  if (st.peer) return null;
  return st.user !== null ? `user ${st.user}` : st.trusted ? `client ${st.client}` : null;
}

/** The login of the peer secret on peer listeners. */
export const PEER_LOGIN = 'peer';

/** The MAIL parameter only peers may use: the message's original arrival (ms since the epoch). */
export const ARRIVED_PARAMETER = 'X-MAILPLANE-ARRIVED';

/** Compares a password with the peer secret in constant time. */
function sameSecret(given: string, secret: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}
