// Worker thread: the file side of group commit. While the main thread appends a batch to the
// journal and waits for its fdatasync, the worker already writes the batch's files under tmp
// names ('prepare'); once the journal holds the batch it renames them into place ('commit'), or
// removes them if the journal write failed ('abort'). With syncfs available it never fsyncs:
// the main thread makes a segment's files durable with one `sync -f` at the checkpoint; without
// it every file is fdatasync'ed and folders are fsync'ed at the checkpoint. A file that cannot
// be written (disk full) is retried from the record: the message is safe in the journal.
import { dirname } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { JournalRecord } from './journal-format.js';
import { discard, fsyncPathSync, layout, place, prepare, type Move } from './materialize.js';

type Msg =
  | { type: 'prepare'; batch: number; records: JournalRecord[] }
  | { type: 'commit'; batch: number }
  | { type: 'abort'; batch: number }
  | { type: 'checkpoint'; segment: number };

const { dataDir, fsyncEach } = workerData as { dataDir: string; fsyncEach: boolean };
const l = layout(dataDir);
const dirty = new Set<string>();
const prepared = new Map<number, { moves: Move[]; failed: JournalRecord[] }>();
const backlog: JournalRecord[] = []; // committed records whose files could not be written yet
const waiting: number[] = []; // checkpoints asked for while the backlog was not empty
let retry: NodeJS.Timeout | null = null;

const report = (e: unknown) => parentPort!.postMessage({ type: 'error', message: (e as Error).message, code: (e as NodeJS.ErrnoException).code });

function later(): void {
  retry ??= setTimeout(() => {
    retry = null;
    if (drain()) flushCheckpoints();
  }, 1000);
}

function drain(): boolean {
  while (backlog.length) {
    try {
      const moves = prepare(backlog[0]!, l, { recovery: true, fsyncEach });
      place(moves);
      for (const m of moves) dirty.add(dirname(m.final));
      backlog.shift();
    } catch (e) {
      report(e);
      later();
      return false;
    }
  }
  return true;
}

function flushCheckpoints(): void {
  while (waiting.length) {
    try {
      if (fsyncEach) for (const d of dirty) fsyncPathSync(d);
      dirty.clear();
      parentPort!.postMessage({ type: 'flushed', segment: waiting[0] });
      waiting.shift();
    } catch (e) {
      report(e);
      later();
      return;
    }
  }
}

parentPort!.on('message', (m: Msg) => {
  switch (m.type) {
    case 'prepare': {
      const moves: Move[] = [];
      const failed: JournalRecord[] = [];
      for (const r of m.records) {
        try {
          moves.push(...prepare(r, l, { recovery: false, fsyncEach }));
        } catch (e) {
          report(e);
          failed.push(r);
        }
      }
      prepared.set(m.batch, { moves, failed });
      return;
    }
    case 'commit': {
      const p = prepared.get(m.batch);
      prepared.delete(m.batch);
      if (p) {
        try {
          place(p.moves);
          for (const mv of p.moves) dirty.add(dirname(mv.final));
        } catch (e) {
          report(e);
        }
        backlog.push(...p.failed);
      }
      if (drain()) flushCheckpoints();
      // in place, or in the backlog to retry: either way the batch is safe in the journal
      parentPort!.postMessage({ type: 'written', batch: m.batch });
      return;
    }
    case 'abort': {
      const p = prepared.get(m.batch);
      prepared.delete(m.batch);
      if (p) discard(p.moves);
      return;
    }
    case 'checkpoint':
      waiting.push(m.segment);
      if (drain()) flushCheckpoints();
  }
});
