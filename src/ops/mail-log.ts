// The mail log: the lines an operator greps to answer "did the mail from X to Y arrive, and
// where did it go?" — one per accepted message, one per recipient outcome, one per refusal —
// with addresses written in full or, with observability.logAddresses: redact, as the domain
// and a keyed hash of the local part (the same address always gives the same hash, so lines
// still join up; the key lives in <dataDir>/log-redact.key, made once, mode 0600).
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Fields, Logger } from './logger.js';

export type AddressLogging = 'full' | 'redact';

/** How one recipient ended (or paused): Postfix's status=sent|deferred|bounced, plus ours. */
export type RecipientStatus = 'delivered' | 'deferred' | 'bounced' | 'expired' | 'deleted';

export interface RecipientOutcome {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  /** the address as the client gave it, when an alias or a different case mapped it */
  readonly origTo?: string | undefined;
  /** local, relay, mx, lmtp (what queue entries name it) */
  readonly transport: string;
  /** where it went: host[ip]:port, or the Maildir */
  readonly relay?: string | undefined;
  /** seconds since the message arrived */
  readonly delay: number;
  /** enhanced status code: 2.0.0, 4.4.1, 5.1.1 … */
  readonly dsn: string;
  readonly reply?: string | undefined;
  readonly status: RecipientStatus;
}

const KEY_FILE = 'log-redact.key';

export class MailLog {
  private mode: AddressLogging = 'full';
  private key: Buffer | null = null;

  constructor(readonly log: Logger) {}

  /** Applied with every generation: the mode, and the data dir the redaction key lives in. */
  configure(mode: AddressLogging, dataDir: string): void {
    this.mode = mode;
    if (mode === 'redact' && !this.key) this.key = loadKey(dataDir);
  }

  /** An address as the log shows it ('<>' for the null sender). */
  addr(address: string): string {
    if (!address) return '<>';
    if (this.mode === 'full' || !this.key) return address;
    const at = address.lastIndexOf('@');
    const local = at < 0 ? address : address.slice(0, at);
    const domain = at < 0 ? '' : address.slice(at + 1).toLowerCase();
    const hash = createHmac('sha256', this.key).update(local.toLowerCase()).digest('hex').slice(0, 12);
    return `${hash}@${domain}`;
  }

  accepted(f: { listener: string; id: string; from: string; size: number; recipients: number; client: string; user: string | null }): void {
    this.log.info('message accepted', { listener: f.listener, id: f.id, from: this.addr(f.from), size: f.size, nrcpt: f.recipients, client: f.client, user: f.user ?? undefined });
  }

  recipient(o: RecipientOutcome): void {
    const fields: Fields = {
      id: o.id,
      from: this.addr(o.from),
      to: this.addr(o.to),
      origTo: o.origTo !== undefined ? this.addr(o.origTo) : undefined,
      transport: o.transport,
      relay: o.relay,
      delay: Math.round(o.delay * 100) / 100,
      dsn: o.dsn,
      status: o.status,
      reply: o.reply !== undefined ? this.within(o.reply, o.to, o.origTo, o.from) : undefined,
    };
    if (o.status === 'delivered' || o.status === 'deleted') this.log.info(`recipient ${o.status}`, fields);
    else this.log.warn(`recipient ${o.status}`, fields);
  }

  /** A refused command, naming the client and the address refused (for DATA: the sender); fail2ban matches these. */
  refused(f: { listener: string; client: string; command: 'MAIL' | 'RCPT' | 'DATA'; address: string; reason: string; reply: string }): void {
    this.log.info('refused', { listener: f.listener, client: f.client, command: f.command, address: this.addr(f.address), reason: f.reason, reply: this.within(f.reply, f.address) });
  }

  /** A reply text with the given addresses in it written as addr() writes them. */
  private within(text: string, ...addresses: (string | undefined)[]): string {
    if (this.mode === 'full') return text;
    let out = text;
    for (const a of addresses) if (a) out = out.split(a).join(this.addr(a));
    return out;
  }
}

function loadKey(dataDir: string): Buffer {
  const file = join(dataDir, KEY_FILE);
  try {
    const key = readFileSync(file);
    if (key.length >= 16) return key;
  } catch {}
  const key = randomBytes(32);
  writeFileSync(file, key, { mode: 0o600 });
  return key;
}
