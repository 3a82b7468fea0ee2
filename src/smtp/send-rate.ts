// Sending rates: how many messages and recipients one authenticated user, or one trusted client
// address sending without AUTH, got accepted within a sliding window. One instance lives as long
// as the process (reloads keep the counts); the limits come from the session's pinned policy.
import type { SendRate } from '../config/desired-state.js';

export type RateExceeded = 'messages' | 'recipients';

interface Sent {
  /** acceptance times, oldest first, and the recipients of each */
  times: number[];
  recipients: number[];
  recipientTotal: number;
}

const MAX_TRACKED = 100_000;

export class SendRateLimiter {
  private readonly sent = new Map<string, Sent>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Whether one more message (with `recipients` recipients so far) would go over a limit. */
  exceeds(key: string, rate: SendRate, recipients: number): RateExceeded | null {
    const s = this.window(key, rate.windowMs);
    const messages = s?.times.length ?? 0;
    const total = s?.recipientTotal ?? 0;
    if (rate.messages > 0 && messages + 1 > rate.messages) return 'messages';
    if (rate.recipients > 0 && total + recipients > rate.recipients) return 'recipients';
    return null;
  }

  /** Counts an accepted message. */
  record(key: string, rate: SendRate, recipients: number): void {
    if (rate.messages === 0 && rate.recipients === 0) return;
    let s = this.window(key, rate.windowMs);
    if (!s) {
      if (this.sent.size >= MAX_TRACKED) {
        const oldest = this.sent.keys().next().value;
        if (oldest !== undefined) this.sent.delete(oldest);
      }
      s = { times: [], recipients: [], recipientTotal: 0 };
      this.sent.set(key, s);
    }
    s.times.push(this.now());
    s.recipients.push(recipients);
    s.recipientTotal += recipients;
  }

  /** The key's counts with everything older than the window dropped (null when nothing is left). */
  private window(key: string, windowMs: number): Sent | null {
    const s = this.sent.get(key);
    if (!s) return null;
    const since = this.now() - windowMs;
    let i = 0;
    while (i < s.times.length && s.times[i]! <= since) s.recipientTotal -= s.recipients[i++]!;
    if (i) {
      s.times = s.times.slice(i);
      s.recipients = s.recipients.slice(i);
    }
    if (!s.times.length) {
      this.sent.delete(key);
      return null;
    }
    return s;
  }
}
