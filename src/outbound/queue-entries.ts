// Reading queue entries for scheduling: which recipients are still pending, grouped by the
// destination that takes them (their domain, or the LMTP server), and when each group is due.
import type { QueueEntry, QueueRecipient } from '../store/queue-entry.js';

/** The destination of the recipients delivered over LMTP: no domain can be named so. */
export const LMTP_DESTINATION = '@lmtp';

/** Where a recipient goes: the LMTP server, or its domain. */
export function destinationOf(r: QueueRecipient): string {
  return r.lmtp ? LMTP_DESTINATION : domainOf(r.address);
}

/** The destination of a recipient: its domain, lower case (a domain literal included). */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** When a pending recipient is due. */
export function dueOf(r: QueueRecipient, e: QueueEntry): number {
  return r.retryAt ?? e.nextAttemptAt;
}

/** [domain, due] for every domain with pending recipients, in the order they first appear. */
export function pendingGroups(e: QueueEntry): [string, number][] {
  const due = new Map<string, number>();
  for (const r of e.recipients) {
    if (r.state !== 'pending') continue;
    const d = destinationOf(r);
    const t = dueOf(r, e);
    const known = due.get(d);
    if (known === undefined || t < known) due.set(d, t);
  }
  return [...due];
}

export function wellFormed(e: QueueEntry, id: string): boolean {
  return (
    e !== null &&
    typeof e === 'object' &&
    e.id === id &&
    typeof e.sender === 'string' &&
    typeof e.arrivedAt === 'number' &&
    typeof e.nextAttemptAt === 'number' &&
    typeof e.attempts === 'number' &&
    (e.bodyOffset === undefined || (Number.isInteger(e.bodyOffset) && e.bodyOffset >= 0)) &&
    (e.lmtpOffset === undefined || (Number.isInteger(e.lmtpOffset) && e.lmtpOffset >= 0)) &&
    (e.body === undefined || e.body === '8BITMIME') &&
    (e.smtputf8 === undefined || e.smtputf8 === true) &&
    (e.dkim === undefined || typeof e.dkim === 'string') &&
    Array.isArray(e.recipients) &&
    e.recipients.every(
      (r) =>
        r &&
        typeof r.address === 'string' &&
        ['pending', 'delivered', 'failed'].includes(r.state) &&
        (r.retryAt === undefined || typeof r.retryAt === 'number') &&
        (r.lmtp === undefined || (!!r.lmtp && typeof r.lmtp.user === 'string' && (r.lmtp.folder === undefined || typeof r.lmtp.folder === 'string'))),
    )
  );
}
