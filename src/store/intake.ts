// Makes an accepted message durable for every place it goes — each local recipient's Maildir
// and, for other domains, the outbound queue — before the SMTP reply is 250. A message is one
// file, written once whatever the number of places: one journal record names them all, so
// either every destination gets it (as hard links to that file) or none does.
import { isAscii } from 'node:buffer';
import { join } from 'node:path';
import { BodyWriter, MemoryBudget, type AuthResultsFilter, type BodyLimits, type StoredBody } from './body.js';
import type { Journal } from './journal.js';
import type { FileRecord } from './journal-format.js';
import { DEFAULT_MAILBOX_ACCESS, ensureMaildir, type MailboxAccess } from './mailbox-access.js';
import { maildirName } from './maildir.js';
import type { QueueEntry } from './queue-entry.js';

export interface LocalTarget {
  /** mailbox owner (Maildir name) */
  readonly user: string;
  /** the address the message was sent to, for Delivered-To */
  readonly address: string;
  /** a Maildir++ folder of the user's Maildir to file the message in (inbound.junkFolder), instead of the inbox */
  readonly folder?: string;
}

/** Where a local target's copy goes, relative to <dataDir>/mail: `alice`, or `alice/.Junk`. */
export function maildirOf(t: LocalTarget): string {
  return t.folder ? `${t.user}/.${t.folder}` : t.user;
}

export interface IncomingMessage {
  /** also the queue id, and the id in our Received header */
  readonly id: string;
  readonly sender: string; // '' for the null sender
  readonly local: readonly LocalTarget[];
  readonly remote: readonly string[];
  /** the stored file: our trace headers (see traceHead), then the message as received */
  readonly body: StoredBody;
  /** bytes at the start of the body that only Maildir copies carry (Return-Path, Delivered-To) */
  readonly queueOffset: number;
  /** the message as received, in bytes */
  readonly size: number;
  /** MAIL carried BODY=8BITMIME (RFC 6152): the queue entry remembers it for the next hop */
  readonly eightBitMime?: boolean;
  /** MAIL carried SMTPUTF8 (RFC 6531): likewise */
  readonly smtputf8?: boolean;
  /** the entry's DKIM header fields when already decided (a DSN to a remote sender, signed as it is built): QueueEntry.dkim */
  readonly dkim?: string;
  /** when the message first arrived, if before now: a message another replica handed over keeps its arrival (its lifetime runs from then) */
  readonly arrivedAt?: number;
}

export interface IntakeResult {
  readonly queueId: string | null;
  readonly mailboxes: readonly string[];
}

const EMPTY = new Uint8Array(0);

/**
 * The headers the stored file starts with. Maildir copies get Return-Path and, when the message
 * goes to one mailbox, Delivered-To (copies for several mailboxes share one file); the queue
 * skips those (queueOffset) and starts at our Received header. `authResults` (our
 * Authentication-Results field, CRLF-terminated) is for the Maildir copies only: it goes with them.
 */
export function traceHead(sender: string, local: readonly LocalTarget[], received: string, authResults = ''): { head: Buffer; queueOffset: number } {
  if (!local.length) return { head: Buffer.from(received), queueOffset: 0 };
  const mine = `${deliveryLines(sender, local)}${authResults}`;
  return { head: Buffer.from(mine + received), queueOffset: Buffer.byteLength(mine) };
}

/** The Return-Path and Delivered-To lines the head of a message to these local targets starts with (traceHead). */
function deliveryLines(sender: string, local: readonly LocalTarget[]): string {
  const users = new Set(local.map((t) => t.user));
  return `Return-Path: <${sender}>\r\n${users.size === 1 ? `Delivered-To: ${local[0]!.address}\r\n` : ''}`;
}

export class Intake {
  /** queue entries written but not yet checkpointed: delivery must not see them before */
  private readonly unreleased = new Map<string, QueueEntry>();
  private readonly maildirs = new Set<string>();
  /** body bytes held in memory by all sessions writing into this data dir */
  readonly budget: MemoryBudget;
  readonly spoolDir: string;
  /** the group and modes of the Maildir folders created here (storage.mailboxGroup/mailboxMode) */
  access: MailboxAccess = DEFAULT_MAILBOX_ACCESS;
  /**
   * Where local copies go (mailboxes.store): `maildir`, written here with the message; `lmtp`,
   * queued like remote recipients (the same journal record, the same 250 rule) and delivered
   * to the LMTP server by the outbound queue.
   */
  localStore: 'maildir' | 'lmtp' = 'maildir';

  constructor(
    private readonly journal: Journal,
    private readonly dataDir: string,
    memoryBudget: number,
    private readonly onQueued: (entry: QueueEntry) => void = () => {},
  ) {
    this.budget = new MemoryBudget(memoryBudget);
    this.spoolDir = join(dataDir, 'spool');
  }

  isUnreleased(id: string): boolean {
    return this.unreleased.has(id);
  }

  get unreleasedCount(): number {
    return this.unreleased.size;
  }

  /** A writer for the body of message `id`, starting with `head`. */
  openBody(id: string, head: Buffer, limits: BodyLimits, filter: AuthResultsFilter | null = null): BodyWriter {
    return new BodyWriter(head, { dir: this.spoolDir, file: id }, this.budget, limits, filter);
  }

  /**
   * Creates a user's Maildir before the message is journaled, so that a broken mailbox (a file
   * where its folder belongs, a permission problem) answers 451 instead of stalling the journal.
   */
  private async ensureMaildir(user: string): Promise<void> {
    // user: a Maildir under mail/ (maildirOf: `alice`, or the folder `alice/.Junk`)
    if (this.maildirs.has(user)) return;
    await ensureMaildir(join(this.dataDir, 'mail', user), this.access);
    this.maildirs.add(user);
  }

  /** Called by the journal once the files of these queue entries are in place and durable. */
  released(ids: readonly string[]): void {
    for (const id of ids) {
      const e = this.unreleased.get(id);
      this.unreleased.delete(id);
      if (e) this.onQueued(e);
    }
  }

  /** Resolves once every copy is durable (in the journal); rejects and stores nothing otherwise. */
  async accept(msg: IncomingMessage): Promise<IntakeResult> {
    // one copy per mailbox, however many of its addresses were used
    const lmtp = this.localStore === 'lmtp' ? lmtpTargets(msg.local) : [];
    const mailboxes = this.localStore === 'lmtp' ? [] : [...new Set(msg.local.map(maildirOf))];
    for (const user of mailboxes) await this.ensureMaildir(user);
    let entry: QueueEntry | null = null;
    if (msg.remote.length || lmtp.length) {
      const now = Date.now();
      entry = {
        version: 1,
        id: msg.id,
        sender: msg.sender,
        arrivedAt: Math.min(msg.arrivedAt ?? now, now),
        size: msg.size,
        ...(msg.queueOffset ? { bodyOffset: msg.queueOffset } : {}),
        ...(msg.eightBitMime ? { body: '8BITMIME' as const } : {}),
        ...(msg.smtputf8 ? { smtputf8: true as const } : {}),
        ...(msg.dkim !== undefined ? { dkim: msg.dkim } : {}),
        ...(lmtp.length ? { lmtpOffset: Buffer.byteLength(deliveryLines(msg.sender, msg.local)) } : {}),
        recipients: [
          ...msg.remote.map((address) => ({ address, state: 'pending' as const, attempts: 0, lastResponse: null, updatedAt: now })),
          ...lmtp.map((t) => ({
            address: t.address,
            lmtp: t.folder ? { user: t.user, folder: t.folder } : { user: t.user },
            state: 'pending' as const,
            attempts: 0,
            lastResponse: null,
            updatedAt: now,
          })),
        ],
        attempts: 0,
        nextAttemptAt: now,
        lastError: null,
        bounced: false,
      };
      this.unreleased.set(entry.id, entry);
    }
    const body = msg.body;
    const record: FileRecord = {
      k: 'f',
      name: maildirName(body.length),
      users: mailboxes,
      queue: entry ? { id: entry.id, json: JSON.stringify(entry) } : null,
      data: body.kind === 'memory' ? body.data : EMPTY,
      spool: body.kind === 'spool' ? body.file : null,
    };
    try {
      await this.journal.append([record], entry ? [entry.id] : []);
    } catch (e) {
      if (entry) this.unreleased.delete(entry.id);
      throw e;
    }
    return { queueId: entry?.id ?? null, mailboxes };
  }

  /** accept() for a message built in memory (bounces): `message` follows our Received header. */
  acceptBuffer(m: { id: string; sender: string; local: readonly LocalTarget[]; remote: readonly string[]; received: string; message: Buffer; dkim?: string }): Promise<IntakeResult> {
    const { head, queueOffset } = traceHead(m.sender, m.local, m.received);
    const data = Buffer.allocUnsafeSlow(head.length + m.message.length);
    head.copy(data, 0);
    m.message.copy(data, head.length);
    // a bounce quotes what failed: 8-bit when an address or a reply was
    const eightBitMime = !isAscii(m.message);
    const smtputf8 = [m.sender, ...m.remote].some((a) => !isAscii(Buffer.from(a)));
    return this.accept({
      id: m.id,
      sender: m.sender,
      local: m.local,
      remote: m.remote,
      body: { kind: 'memory', data, length: data.length },
      queueOffset,
      size: m.message.length,
      eightBitMime,
      smtputf8,
      ...(m.dkim !== undefined ? { dkim: m.dkim } : {}),
    });
  }
}

/** One LMTP recipient per mailbox (user and folder), named by the first address that reached it. */
function lmtpTargets(local: readonly LocalTarget[]): LocalTarget[] {
  const seen = new Map<string, LocalTarget>();
  for (const t of local) if (!seen.has(maildirOf(t))) seen.set(maildirOf(t), t);
  return [...seen.values()];
}
