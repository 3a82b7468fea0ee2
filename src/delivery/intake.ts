// Makes an accepted message durable in every place it goes — each local recipient's Maildir
// and, for other domains, the outbound queue — before the SMTP reply is 250. Either all
// destinations get the message or none does (files are prepared first, then renamed).
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DirSyncer, writeFileDurably } from './durable.js';
import { Maildirs, maildirName } from './maildir.js';
import type { QueueEntry, QueueStore } from './queue-store.js';

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
  constructor(
    private readonly maildirs: Maildirs,
    private readonly queue: QueueStore,
    private readonly syncer: DirSyncer,
    private readonly onQueued: (entry: QueueEntry) => void = () => {},
  ) {}

  async accept(msg: IncomingMessage): Promise<IntakeResult> {
    const commits: (() => Promise<string>)[] = [];
    const aborts: (() => Promise<void>)[] = [];
    const mailboxes: string[] = [];
    let entry: QueueEntry | null = null;
    try {
      const seen = new Set<string>();
      for (const t of msg.local) {
        if (seen.has(t.user)) continue; // one copy per mailbox, however many of its addresses were used
        seen.add(t.user);
        const dir = await this.maildirs.ensure(t.user);
        const content = toLf([Buffer.from(`Return-Path: <${msg.sender}>\r\nDelivered-To: ${t.address}\r\n${msg.received}`), ...msg.body]);
        const size = content.reduce((n, c) => n + c.length, 0);
        const name = maildirName(size);
        const tmp = join(dir, 'tmp', name);
        await writeFileDurably(tmp, content);
        aborts.push(() => fs.unlink(tmp).catch(() => {}));
        commits.push(async () => {
          await fs.rename(tmp, join(dir, 'new', name));
          return join(dir, 'new');
        });
        mailboxes.push(t.user);
      }
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
        const prepared = await this.queue.prepare(entry, [Buffer.from(msg.received), ...msg.body]);
        aborts.push(prepared.abort);
        commits.push(prepared.commit);
      }
    } catch (e) {
      await Promise.all(aborts.map((a) => a()));
      throw e;
    }
    const dirs = new Set<string>();
    for (const c of commits) dirs.add(await c());
    await Promise.all([...dirs].map((d) => this.syncer.sync(d)));
    if (entry) this.onQueued(entry);
    return { queueId: entry?.id ?? null, mailboxes };
  }
}

/** CRLF → LF for Maildir files (the convention Dovecot and mail readers expect). */
export function toLf(chunks: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let pendingCr = false;
  for (const c of chunks) {
    const parts: Buffer[] = [];
    let start = 0;
    if (pendingCr) {
      if (c[0] !== 0x0a) parts.push(Buffer.from([0x0d]));
      pendingCr = false;
    }
    for (let i = c.indexOf(0x0d); i !== -1; i = c.indexOf(0x0d, i + 1)) {
      if (i === c.length - 1) {
        parts.push(c.subarray(start, i));
        start = c.length;
        pendingCr = true;
        break;
      }
      if (c[i + 1] === 0x0a) {
        parts.push(c.subarray(start, i));
        start = i + 1;
      }
    }
    if (start < c.length) parts.push(c.subarray(start));
    out.push(...parts.filter((p) => p.length));
  }
  if (pendingCr) out.push(Buffer.from([0x0d]));
  return out;
}
