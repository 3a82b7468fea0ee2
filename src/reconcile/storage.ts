// The data plane of one dataDir, opened by a transaction: the lock, the journal (which replays
// what a crash left before anything is served), the intake that writes Maildirs and the queue,
// and the outbound queue at work.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { DirSyncer } from '../store/durable.js';
import { Intake } from '../store/intake.js';
import { Journal } from '../store/journal.js';
import { DataDirLock } from '../store/lock.js';
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
  ) {}

  /** Creates the layout (mail/, queue/), takes the lock, cleans what a crash left half-written. */
  static async open(dataDir: string, memoryBudget: number, log: Logger, metrics: Metrics): Promise<Storage> {
    await fs.mkdir(join(dataDir, 'mail'), { recursive: true, mode: 0o700 });
    await fs.mkdir(join(dataDir, 'queue'), { recursive: true, mode: 0o700 });
    const lock = await DataDirLock.acquire(dataDir);
    try {
      let intake: Intake | null = null;
      const journal = await Journal.open(dataDir, (ids) => intake?.released(ids), log);
      const syncer = new DirSyncer();
      const queue = new QueueStore(join(dataDir, 'queue'), syncer);
      let outbound: OutboundQueue | null = null;
      intake = new Intake(journal, dataDir, memoryBudget, (entry) => outbound?.enqueued(entry));
      outbound = new OutboundQueue(queue, intake, log, metrics);
      return new Storage(dataDir, journal, queue, intake, outbound, lock);
    } catch (e) {
      await lock.release();
      throw e;
    }
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
