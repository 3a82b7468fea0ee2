// Makes an accepted message durable for every place it goes — each local recipient's Maildir
// and, for other domains, the outbound queue — before the SMTP reply is 250: all its copies
// are one journal append, so either every destination gets the message or none does.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Journal } from './journal.js';
import type { JournalRecord } from './journal-format.js';
import { maildirName } from './maildir.js';
import type { QueueEntry } from './queue-entry.js';

/** Above this size a message is written straight to its files instead of through the journal. */
const DIRECT_WRITE_BYTES = 64 * 1024;

export interface LocalTarget {
  /** mailbox owner (Maildir name) */
  readonly user: string;
  /** the address the message was sent to, for Delivered-To */
  readonly address: string;
}

export interface IncomingMessage {
  /** also the queue id, and the id in our Received header */
  readonly id: string;
  readonly sender: string; // '' for the null sender
  readonly local: readonly LocalTarget[];
  readonly remote: readonly string[];
  /** our Received header, CRLF-terminated */
  readonly received: string;
  /** the message exactly as the client sent it (dot-unstuffed, CRLF line ends) */
  readonly body: readonly Buffer[];
  readonly size: number;
}

export interface IntakeResult {
  readonly queueId: string | null;
  readonly mailboxes: readonly string[];
}

export class Intake {
  /** queue entries written but not yet checkpointed: delivery must not see them before */
  private readonly unreleased = new Map<string, QueueEntry>();

  private readonly maildirs = new Set<string>();

  constructor(
    private readonly journal: Journal,
    private readonly dataDir: string,
    private readonly onQueued: (entry: QueueEntry) => void = () => {},
  ) {}

  isUnreleased(id: string): boolean {
    return this.unreleased.has(id);
  }

  get unreleasedCount(): number {
    return this.unreleased.size;
  }

  /**
   * Creates a user's Maildir before the message is journaled, so that a broken mailbox (a file
   * where its folder belongs, a permission problem) answers 451 instead of stalling the journal.
   */
  private async ensureMaildir(user: string): Promise<void> {
    if (this.maildirs.has(user)) return;
    const dir = join(this.dataDir, 'mail', user);
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
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
    const records: JournalRecord[] = [];
    const mailboxes: string[] = [];
    const seen = new Set<string>();
    for (const t of msg.local) {
      if (seen.has(t.user)) continue; // one copy per mailbox, however many of its addresses were used
      seen.add(t.user);
      await this.ensureMaildir(t.user);
      const data = standalone([Buffer.from(`Return-Path: <${msg.sender}>\r\nDelivered-To: ${t.address}\r\n${msg.received}`), ...msg.body]);
      records.push({ k: 'm', user: t.user, name: maildirName(data.length), data });
      mailboxes.push(t.user);
    }
    let entry: QueueEntry | null = null;
    if (msg.remote.length) {
      const now = Date.now();
      entry = {
        version: 1,
        id: msg.id,
        sender: msg.sender,
        arrivedAt: now,
        size: msg.size,
        recipients: msg.remote.map((address) => ({ address, state: 'pending', attempts: 0, lastResponse: null, updatedAt: now })),
        attempts: 0,
        nextAttemptAt: now,
        lastError: null,
        bounced: false,
      };
      records.push({ k: 'q', id: entry.id, json: JSON.stringify(entry), data: standalone([Buffer.from(msg.received), ...msg.body]) });
      this.unreleased.set(entry.id, entry);
    }
    try {
      // Small messages share one fdatasync through the journal; a large one pays for its own
      // fdatasync anyway, and writing it twice (journal, then files) would cost more than it saves.
      if (msg.size > DIRECT_WRITE_BYTES) await this.journal.direct(records);
      else await this.journal.append(records, entry ? [entry.id] : []);
    } catch (e) {
      if (entry) this.unreleased.delete(entry.id);
      throw e;
    }
    if (entry && msg.size > DIRECT_WRITE_BYTES) this.released([entry.id]);
    return { queueId: entry?.id ?? null, mailboxes };
  }
}

/**
 * One buffer with an ArrayBuffer of its own (not a slice of Node's shared pool), so that handing
 * it to the journal worker is a transfer, not a copy of the whole pool.
 */
function standalone(chunks: readonly Buffer[]): Buffer {
  const size = chunks.reduce((n, c) => n + c.length, 0);
  const out = Buffer.allocUnsafeSlow(size);
  let off = 0;
  for (const c of chunks) off += c.copy(out, off);
  return out;
}
