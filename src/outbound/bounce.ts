// Delivery status notifications (RFC 3464): a multipart/report with the status of each failed
// recipient and the original message (message/rfc822) — or, above ORIGINAL_LIMIT, only its
// headers (text/rfc822-headers) — sent from the null sender. One is sent after each attempt
// that failed recipients, not when the message's last recipient is done.
import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { rfc5322Date } from '../mail/received.js';

export interface FailedRecipient {
  readonly address: string;
  /** the remote reply or our reason */
  readonly diagnostic: string;
  readonly remote: string | null;
}

/** The original message goes back whole up to this size (as queued: our Received header included), else only its headers. */
export const ORIGINAL_LIMIT = 1024 * 1024;

/** What of the failed message a bounce returns. */
export type Original =
  | { readonly kind: 'message'; readonly data: Buffer }
  /** too large (size: bytes) or unreadable: its header block (up to the blank line) */
  | { readonly kind: 'headers'; readonly headers: string; readonly size: number };

export interface BounceInput {
  readonly hostname: string;
  readonly queueId: string;
  readonly sender: string;
  readonly arrivedAt: number;
  readonly failed: readonly FailedRecipient[];
  readonly original: Original;
  /** recipients of the message still being tried (this report is not the last word on them) */
  readonly stillPending?: number;
  readonly now?: Date;
}

/** 1048576 → "1 MiB", 3565158 → "3.4 MiB". */
function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const [n, unit] = bytes < 1024 * 1024 ? [bytes / 1024, 'KiB'] : [bytes / 1024 / 1024, 'MiB'];
  return `${Math.round(n * 10) / 10} ${unit}`;
}

/** The enhanced status code in a reply (5.1.1), or one derived from its class. */
export function statusOf(diagnostic: string): string {
  const m = diagnostic.match(/\b([45]\.\d{1,3}\.\d{1,3})\b/);
  if (m?.[1]) return m[1];
  return diagnostic.match(/^4\d\d\b/) ? '4.0.0' : '5.0.0';
}

export function headersOf(message: Buffer): string {
  const text = message.toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  return (end < 0 ? text : text.slice(0, end)).replace(/\r?\n/g, '\r\n');
}

/** Counts Received header fields, for loop detection. */
export function receivedCount(headers: string): number {
  return (headers.match(/^Received:/gim) ?? []).length;
}

export function buildBounce(b: BounceInput): Buffer {
  const now = b.now ?? new Date();
  const boundary = `=_mailplane_${randomBytes(8).toString('hex')}`;
  const human = b.failed.map((f) => `<${f.address}>: ${f.remote ? `host ${f.remote} said: ` : ''}${f.diagnostic}`).join('\r\n\r\n');
  const perRecipient = b.failed
    .map((f) =>
      [
        `Final-Recipient: rfc822; ${f.address}`,
        `Original-Recipient: rfc822; ${f.address}`,
        'Action: failed',
        `Status: ${statusOf(f.diagnostic)}`,
        ...(f.remote ? [`Remote-MTA: dns; ${f.remote.replace(/\[[^\]]*\]/, '').replace(/:\d+$/, '')}`] : []),
        `Diagnostic-Code: smtp; ${f.diagnostic.replace(/\r?\n/g, ' ')}`,
      ].join('\r\n'),
    )
    .join('\r\n\r\n');
  const o = b.original;
  const attached = o.kind === 'message' ? "It's attached below." : `It was ${size(o.size)}, more than the ${size(ORIGINAL_LIMIT)} a report returns whole, so only its headers are attached below.`;
  const pending = b.stillPending
    ? ['', `Delivery to the other ${b.stillPending === 1 ? 'recipient' : `${b.stillPending} recipients`} of this message is still being tried; you will be told if it fails too.`]
    : [];
  const originalHead =
    o.kind === 'message'
      ? ['Content-Type: message/rfc822', 'Content-Description: Undelivered Message', ...(isAscii(o.data) ? [] : ['Content-Transfer-Encoding: 8bit'])]
      : ['Content-Type: text/rfc822-headers', 'Content-Description: Undelivered Message Headers'];
  // the original's bytes go in as they are (its last line end is the delimiter's)
  const originalBytes = o.kind === 'message' ? o.data.subarray(0, o.data.length - (o.data.subarray(-2).toString() === '\r\n' ? 2 : 0)) : Buffer.from(o.headers, 'latin1');
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${b.hostname}>`,
    `To: <${b.sender}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${b.queueId}.bounce.${randomBytes(4).toString('hex')}@${b.hostname}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Description: Notification',
    '',
    `This is the mail system at ${b.hostname}.`,
    '',
    `Your message could not be delivered to one or more recipients. ${attached}`,
    '',
    human,
    ...pending,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    'Content-Description: Delivery report',
    '',
    `Reporting-MTA: dns; ${b.hostname}`,
    `X-Mailplane-Queue-ID: ${b.queueId}`,
    `Arrival-Date: ${rfc5322Date(new Date(b.arrivedAt))}`,
    '',
    perRecipient,
    '',
    `--${boundary}`,
    ...originalHead,
    '',
    '',
  ];
  return Buffer.concat([Buffer.from(head.join('\r\n'), 'utf8'), originalBytes, Buffer.from(`\r\n\r\n--${boundary}--\r\n`)]);
}
