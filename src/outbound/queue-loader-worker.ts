// Worker thread: reads the queue directory at start-up, one entry at a time (the directory is
// streamed, never listed whole), and sends the main thread only what scheduling needs, in
// batches: id, arrival, whether it was attempted, and per recipient domain when it is due.
// Along the way it clears what a crash left half-written: tmp/ files, `<id>.json.<tmp>`
// updates, and `.eml` files whose `.json` never appeared (older than this start, so never a
// message being accepted right now). A `.json` it cannot read as an entry goes to corrupt/.
import { existsSync, mkdirSync, opendirSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { queueIdTime, type QueueEntry } from '../store/queue-entry.js';
import { pendingGroups, wellFormed } from './queue-entries.js';

/** [id, arrivedAt, attempted, [domain, due, domain, due, …]] */
export type LoadedEntry = [string, number, boolean, (string | number)[]];
export type FromLoader =
  | { type: 'batch'; entries: LoadedEntry[]; seen: number }
  | { type: 'done'; seen: number; loaded: number; quarantined: number; removed: number }
  | { type: 'failed'; message: string; code?: string };
export type ToLoader = { type: 'more' };

const BATCH = 1000;
const IN_FLIGHT = 4;

const { dir, startedAt } = workerData as { dir: string; startedAt: number };
let credit = IN_FLIGHT;
let resume: (() => void) | null = null;
parentPort!.on('message', () => {
  credit++;
  resume?.();
  resume = null;
});

async function send(entries: LoadedEntry[], seen: number): Promise<void> {
  while (credit <= 0) await new Promise<void>((r) => (resume = r));
  credit--;
  parentPort!.postMessage({ type: 'batch', entries, seen } satisfies FromLoader);
}

function quarantine(id: string): void {
  const corrupt = join(dir, 'corrupt');
  mkdirSync(corrupt, { recursive: true, mode: 0o700 });
  for (const ext of ['.json', '.eml']) {
    try {
      renameSync(join(dir, `${id}${ext}`), join(corrupt, `${id}${ext}`));
    } catch {}
  }
}

function remove(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  let removed = 0;
  for (const f of readdirSync(join(dir, 'tmp'))) if (remove(join(dir, 'tmp', f))) removed++; // never acknowledged
  const d = opendirSync(dir, { bufferSize: 256 });
  let batch: LoadedEntry[] = [];
  let seen = 0;
  let loaded = 0;
  let quarantined = 0;
  try {
    for (let e = d.readSync(); e !== null; e = d.readSync()) {
      const name = e.name;
      if (name.endsWith('.json')) {
        seen++;
        const id = name.slice(0, -5);
        let entry: QueueEntry | null = null;
        try {
          entry = JSON.parse(readFileSync(join(dir, name), 'utf8')) as QueueEntry;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // delivered meanwhile
        }
        if (!entry || !wellFormed(entry, id)) {
          quarantine(id);
          quarantined++;
          continue;
        }
        const groups = pendingGroups(entry);
        batch.push([id, entry.arrivedAt, entry.attempts > 0, groups.flatMap(([domain, due]) => [domain, due])]);
        loaded++;
        if (batch.length >= BATCH) {
          await send(batch, seen);
          batch = [];
        }
      } else if (/\.json\.[0-9a-f]+$/.test(name)) {
        if (remove(join(dir, name))) removed++; // an update cut short: the entry's .json is whole
      } else if (name.endsWith('.eml')) {
        const id = name.slice(0, -4);
        const made = queueIdTime(id);
        if ((made === null || made < startedAt) && !existsSync(join(dir, `${id}.json`)) && remove(join(dir, name))) removed++;
      }
    }
  } finally {
    d.closeSync();
  }
  if (batch.length) await send(batch, seen);
  parentPort!.postMessage({ type: 'done', seen, loaded, quarantined, removed } satisfies FromLoader);
}

main().catch((e: NodeJS.ErrnoException) => parentPort!.postMessage({ type: 'failed', message: e.message, code: e.code } satisfies FromLoader));
