// The data plane of one dataDir, opened by a transaction: the lock, the journal (which replays
// what a crash left before anything is served), the intake that writes Maildirs and the queue,
// and the outbound queue at work. The Maildir group and modes (storage.mailboxGroup and
// mailboxMode) apply to what is created from then on: new folders and message files.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { StorageState } from '../config/desired-state.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { DirSyncer } from '../store/durable.js';
import { Intake } from '../store/intake.js';
import { Journal } from '../store/journal.js';
import { DataDirLock } from '../store/lock.js';
import { DEFAULT_MAILBOX_ACCESS, isDefaultAccess, parseMode, prepareMailRoot, type MailboxAccess } from '../store/mailbox-access.js';
import { OutboundQueue } from '../outbound/queue.js';
import { QueueStore } from '../outbound/queue-store.js';

export class Storage {
  private constructor(
    readonly dataDir: string,
    readonly journal: Journal,
    readonly queue: QueueStore,
    readonly intake: Intake,
    readonly outbound: OutboundQueue,
    private readonly lock: DataDirLock,
    private readonly log: Logger,
    private access: MailboxAccess,
  ) {}

  /** Creates the layout (mail/, queue/), takes the lock, cleans what a crash left half-written. */
  static async open(dataDir: string, memoryBudget: number, log: Logger, metrics: Metrics, mailbox?: MailboxSettings): Promise<Storage> {
    const access = mailbox ? accessOf(mailbox) : DEFAULT_MAILBOX_ACCESS;
    const created = await fs.mkdir(join(dataDir, 'mail'), { recursive: true, mode: 0o700 });
    // a data dir made here: others may pass through (not list) on their way to mail/, which only
    // the group may enter; everything else in it stays private
    if (created !== undefined && created !== join(dataDir, 'mail') && access.gid !== null) await fs.chmod(dataDir, 0o711);
    await fs.mkdir(join(dataDir, 'queue'), { recursive: true, mode: 0o700 });
    const lock = await DataDirLock.acquire(dataDir);
    try {
      await applyMailRoot(dataDir, access, log);
      let intake: Intake | null = null;
      const journal = await Journal.open(dataDir, (ids) => intake?.released(ids), log, access);
      const syncer = new DirSyncer();
      const queue = new QueueStore(join(dataDir, 'queue'), syncer);
      let outbound: OutboundQueue | null = null;
      intake = new Intake(journal, dataDir, memoryBudget, (entry) => outbound?.enqueued(entry));
      intake.access = access;
      outbound = new OutboundQueue(queue, intake, log, metrics);
      return new Storage(dataDir, journal, queue, intake, outbound, lock, log, access);
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /** A changed Maildir group or mode: applies to the folders and files created from now on. */
  setMailbox(mailbox: MailboxSettings): void {
    const next = accessOf(mailbox);
    const a = this.access;
    if (next.gid === a.gid && next.fileMode === a.fileMode && next.folderMode === a.folderMode) return;
    this.access = next;
    this.intake.access = next;
    this.journal.setAccess(next);
    void applyMailRoot(this.dataDir, next, this.log).catch((e: Error) => this.log.error('cannot give the Maildirs root its group and mode', { path: join(this.dataDir, 'mail'), error: e }));
  }

  /** Queue counts for metrics and /status, entries still being checkpointed included. */
  stats(): { active: number; deferred: number; oldestArrival: number | null } {
    const s = this.outbound.stats();
    return { ...s, active: s.active + this.intake.unreleasedCount };
  }

  /** Finishes deliveries in flight and releases the data dir. */
  async close(): Promise<void> {
    await this.outbound.stop();
    await this.journal.close();
    await this.lock.release();
  }
}

/** storage.mailboxGroup and storage.mailboxMode, as the state has them. */
export type MailboxSettings = Pick<StorageState, 'mailboxGroup' | 'mailboxMode'>;

function accessOf(m: MailboxSettings): MailboxAccess {
  return { gid: m.mailboxGroup?.gid ?? null, fileMode: parseMode(m.mailboxMode.files), folderMode: parseMode(m.mailboxMode.folders) };
}

/** <dataDir>/mail gets the group and folder mode; a folder above it the group cannot pass is logged. */
async function applyMailRoot(dataDir: string, access: MailboxAccess, log: Logger): Promise<void> {
  if (isDefaultAccess(access)) return;
  const blocked = await prepareMailRoot(join(dataDir, 'mail'), access);
  if (blocked) log.warn('the mailbox group cannot reach the Maildirs: an IMAP server running in it will not see the mail', { mail: join(dataDir, 'mail'), blocked });
}
