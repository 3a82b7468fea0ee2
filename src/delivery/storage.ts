// Everything under one dataDir: Maildirs, the outbound queue, and the intake that writes both.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DirSyncer } from './durable.js';
import { Intake } from './intake.js';
import { Maildirs } from './maildir.js';
import { QueueStore, type QueueEntry } from './queue-store.js';

export class Storage {
  private constructor(
    readonly dataDir: string,
    readonly maildirs: Maildirs,
    readonly queue: QueueStore,
    readonly intake: Intake,
  ) {}

  /** Creates the layout (mail/, queue/) and cleans what a crash left half-written. */
  static async open(dataDir: string, onQueued: (entry: QueueEntry) => void): Promise<Storage> {
    await fs.mkdir(join(dataDir, 'mail'), { recursive: true, mode: 0o700 });
    await fs.mkdir(join(dataDir, 'queue'), { recursive: true, mode: 0o700 });
    await fs.access(dataDir, fs.constants.W_OK);
    const syncer = new DirSyncer();
    const maildirs = new Maildirs(join(dataDir, 'mail'));
    const queue = new QueueStore(join(dataDir, 'queue'), syncer);
    await queue.init();
    return new Storage(dataDir, maildirs, queue, new Intake(maildirs, queue, syncer, onQueued));
  }
}
