// Worker thread: writes the files of durable journal batches (no fsync on the hot path) and,
// when asked, makes them durable with one syncfs; reports each checkpoint back. Records that
// cannot be written (disk full) stay in a backlog and are retried: they are safe in the journal.
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { JournalRecord } from './journal-format.js';
import { layout, materialize, syncfs } from './materialize.js';

type Msg = { type: 'batch'; batch: number; records: JournalRecord[] } | { type: 'checkpoint'; segment: number };

const l = layout((workerData as { dataDir: string }).dataDir);
let useSyncfs = true;
const dirty = new Set<string>();
const written: string[] = [];
const backlog: JournalRecord[] = [];
const waiting: number[] = []; // checkpoints asked for while the backlog was not empty
let retry: NodeJS.Timeout | null = null;

function drain(): boolean {
  while (backlog.length) {
    const r = backlog[0]!;
    try {
      for (const f of materialize(r, l, { recovery: false, fsyncEach: !useSyncfs })) {
        dirty.add(dirname(f));
        if (useSyncfs) written.push(f);
      }
      backlog.shift();
    } catch (e) {
      parentPort!.postMessage({ type: 'error', message: (e as Error).message, code: (e as NodeJS.ErrnoException).code });
      retry ??= setTimeout(() => {
        retry = null;
        if (drain()) flushCheckpoints();
      }, 1000);
      return false;
    }
  }
  return true;
}

function flushCheckpoints(): void {
  while (waiting.length) {
    const segment = waiting.shift()!;
    try {
      if (!useSyncfs || !syncfs(l.dataDir)) {
        // no syncfs here: fsync what was written since the last checkpoint, and fsync from now on
        for (const f of written) fsyncPath(f);
        for (const d of dirty) fsyncPath(d);
        useSyncfs = false;
      }
      dirty.clear();
      written.length = 0;
      parentPort!.postMessage({ type: 'durable', segment });
    } catch (e) {
      waiting.unshift(segment);
      parentPort!.postMessage({ type: 'error', message: (e as Error).message, code: (e as NodeJS.ErrnoException).code });
      retry ??= setTimeout(() => {
        retry = null;
        if (drain()) flushCheckpoints();
      }, 1000);
      return;
    }
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

parentPort!.on('message', (m: Msg) => {
  if (m.type === 'batch') backlog.push(...m.records);
  else waiting.push(m.segment);
  if (drain()) flushCheckpoints();
  // in place, or left in the backlog to retry: either way the batch is safe in the journal
  if (m.type === 'batch') parentPort!.postMessage({ type: 'written', batch: m.batch });
});
