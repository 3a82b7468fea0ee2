// A queued message's state as written to <dataDir>/queue/<id>.json, and queue ids. Intake
// writes the first version of an entry; the outbound queue owns every later one.
import { randomBytes } from 'node:crypto';

export type RecipientState = 'pending' | 'delivered' | 'failed';

export interface QueueRecipient {
  readonly address: string;
  state: RecipientState;
  attempts: number;
  lastResponse: string | null;
  /** the host that gave lastResponse */
  remote?: string | null;
  updatedAt: number;
  /** when this recipient is due again (absent: the entry's nextAttemptAt) */
  retryAt?: number;
  /** a failed recipient: whether its sender has been sent a DSN about it (absent: see `bounced`) */
  notified?: boolean;
  /**
   * A local recipient delivered over LMTP (mailboxes.store: lmtp): the login it goes to (aliases
   * resolved) and the folder for quarantined mail (inbound.junkFolder). Absent: a remote recipient.
   */
  readonly lmtp?: LmtpRecipient;
}

/** Where an LMTP recipient goes: `RCPT TO:<user>`, or `<user+folder>` (Dovecot's recipient_delimiter and lmtp_save_to_detail_mailbox). */
export interface LmtpRecipient {
  readonly user: string;
  readonly folder?: string;
}

/** The path LMTP's RCPT TO names for a local recipient. */
export function lmtpPath(r: LmtpRecipient): string {
  return r.folder ? `${r.user}+${r.folder}` : r.user;
}

export interface QueueEntry {
  readonly version: 1;
  readonly id: string;
  readonly sender: string;
  readonly arrivedAt: number;
  readonly size: number;
  /**
   * Bytes at the start of <id>.eml that are not part of what is sent: the Return-Path (and
   * Delivered-To) lines of the Maildir copies that share the file (hard links). Absent: 0.
   */
  readonly bodyOffset?: number;
  /**
   * Where what LMTP recipients get starts (our Return-Path and Delivered-To lines skipped: the
   * LMTP server writes its own; the Authentication-Results of our inbound checks kept). Absent: 0.
   */
  readonly lmtpOffset?: number;
  /**
   * What the client declared on MAIL, passed on to the next hop: BODY=8BITMIME (RFC 6152) and
   * SMTPUTF8 (RFC 6531). Absent (entries written before these fields existed too): 7BIT, no
   * SMTPUTF8.
   */
  readonly body?: '8BITMIME';
  readonly smtputf8?: true;
  /**
   * The DKIM-Signature header fields sent in front of the queued bytes on every attempt (each
   * ending in CRLF), decided once before the first attempt and never again: '' when the
   * message is not signed (its From: domain has no keys, signing failed, or a DSN whose host
   * name lies under no keyed domain). The queued file itself is never rewritten: Maildir copies
   * share it. Absent (entries written before signing existed too): decided at the next attempt.
   */
  dkim?: string;
  recipients: QueueRecipient[];
  attempts: number;
  /** the earliest time any pending recipient is due */
  nextAttemptAt: number;
  lastError: string | null;
  /**
   * Written by versions that bounced a message only once it was done: set once a bounce for its
   * failed recipients had been sent. Now failed recipients are reported one attempt at a time
   * (QueueRecipient.notified) and this stays false.
   */
  bounced: boolean;
}

// Unique without a random draw per message: time, a per-process salt, a counter.
/** This process's salt (what tells its own queue ids from those of earlier runs). */
export const QUEUE_ID_SALT = randomBytes(3).toString('hex');
const SALT = QUEUE_ID_SALT;
let sequence = 0;

export function newQueueId(now = Date.now()): string {
  sequence = (sequence + 1) % 1679616; // 36^4
  return `${now.toString(36).padStart(9, '0')}${SALT}${sequence.toString(36).padStart(4, '0')}`;
}

/** When an id from newQueueId was made (ms since the epoch), or null for a name of another form. */
export function queueIdTime(id: string): number | null {
  if (!/^[0-9a-z]{9}[0-9a-f]{6}[0-9a-z]{4}$/.test(id)) return null;
  const t = parseInt(id.slice(0, 9), 36);
  return Number.isFinite(t) ? t : null;
}
