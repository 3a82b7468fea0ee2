// Delivery status notifications (RFC 3464): one multipart/report per failed message, with the
// status of each failed recipient and the original headers, sent from the null sender.
import { randomBytes } from 'node:crypto';
import { rfc5322Date } from '../mail/received.js';

export interface FailedRecipient {
  readonly address: string;
  /** the remote reply or our reason */
  readonly diagnostic: string;
  readonly remote: string | null;
}

export interface BounceInput {
  readonly hostname: string;
  readonly queueId: string;
  readonly sender: string;
  readonly arrivedAt: number;
  readonly failed: readonly FailedRecipient[];
  /** header block of the original message (up to the blank line) */
  readonly originalHeaders: string;
  readonly now?: Date;
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
  const lines = [
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
    "Your message could not be delivered to one or more recipients. It's attached below.",
    '',
    human,
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
    'Content-Type: text/rfc822-headers',
    'Content-Description: Undelivered Message Headers',
    '',
    b.originalHeaders,
    '',
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'utf8');
}
