// Worker thread: reads the queue directory at start-up, one entry at a time (the directory is
// streamed, never listed whole), and sends the main thread only what scheduling needs, packed
// in numbers (batches transferred, not copied): id, arrival, whether it was attempted, and per
// recipient domain when it is due. Entries this process made itself (its salt, since it
// opened the queue) are left out: the journal hands those over when they are durable. Along
// the way it clears what a crash left half-written: tmp/ files, `<id>.json.<tmp>` updates, and
// `.eml` files whose `.json` never appeared (older than this start, so never a message being
// accepted right now). A `.json` it cannot read as an entry goes to corrupt/.
import { existsSync, mkdirSync, opendirSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { queueIdTime, type QueueEntry } from '../store/queue-entry.js';
import { pendingGroups, wellFormed } from './queue-entries.js';
import { encodeId } from './queue-index.js';

/**
 * A batch: in `entries`, per entry [time, tail, arrivedAt, attempted (0/1), size (bytes), groups,
 * then per group: domain (an index into `domains`), due]; an id of another form has time NaN and
 * tail an index into `odd`.
 */
export type FromLoader =
  /** how many entries the directory holds (counted first: the tables are sized once) */
  | { type: 'count'; entries: number }
  | { type: 'batch'; entries: Float64Array; count: number; domains: string[]; odd: string[]; seen: number }
  | { type: 'done'; seen: number; quarantined: number; removed: number }
  | { type: 'failed'; message: string; code?: string };
/** The next batch may go; `size`: how many entries the main thread wants in the batches after it. */
export type ToLoader = { type: 'more'; size: number };

// Small batches first (the main thread's code is not compiled yet: a big batch then would
// stall it); then the size the main thread asks for, which it sets from how long a batch took
// it. One batch at a time is with the main thread, one handled per turn of its loop (messages
// that wait together are handled together); the worker reads ahead by up to READ_AHEAD batches.
const FIRST_BATCH = 16;
const READ_AHEAD = 2;

const { dir, openedAt, salt } = workerData as { dir: string; openedAt: number; salt: string };
const ready: FromLoader[] = [];
let withMain = false;
let resume: (() => void) | null = null;
let wanted = FIRST_BATCH;
parentPort!.on('message', (m: ToLoader) => {
  wanted = m.size;
  withMain = false;
  flush();
  resume?.();
  resume = null;
});

function flush(): void {
  if (withMain || !ready.length) return;
  const msg = ready.shift()!;
  withMain = true;
  parentPort!.postMessage(msg, msg.type === 'batch' ? [msg.entries.buffer as ArrayBuffer] : []);
}

class Batch {
  values: number[] = [];
  count = 0;
  domains = new Map<string, number>();
  odd: string[] = [];

  add(id: string, e: QueueEntry): void {
    const key = encodeId(id);
    const groups = pendingGroups(e);
    if (key) this.values.push(key[0], key[1]);
    else this.values.push(NaN, this.odd.push(id) - 1);
    this.values.push(e.arrivedAt, e.attempts > 0 ? 1 : 0, typeof e.size === 'number' && e.size > 0 ? e.size : 0, groups.length);
    for (const [domain, due] of groups) {
      let d = this.domains.get(domain);
      if (d === undefined) this.domains.set(domain, (d = this.domains.size));
      this.values.push(d, due);
    }
    this.count++;
  }
}

async function send(b: Batch, seen: number): Promise<void> {
  ready.push({ type: 'batch', entries: Float64Array.from(b.values), count: b.count, domains: [...b.domains.keys()], odd: b.odd, seen });
  flush();
  while (ready.length >= READ_AHEAD) await new Promise<void>((r) => (resume = r));
}

/** The last message, once every batch before it was taken. */
async function finish(msg: FromLoader): Promise<void> {
  while (ready.length || withMain) await new Promise<void>((r) => (resume = r));
  parentPort!.postMessage(msg);
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

/** An entry this process made (the journal releases it): not loaded from disk a second time. */
function ours(id: string): boolean {
  const made = queueIdTime(id);
  return made !== null && made >= openedAt && id.slice(9, 15) === salt;
}

async function main(): Promise<void> {
  let removed = 0;
  for (const f of readdirSync(join(dir, 'tmp'))) if (remove(join(dir, 'tmp', f))) removed++; // never acknowledged
  let count = 0;
  const counting = opendirSync(dir, { bufferSize: 1024 });
  try {
    for (let e = counting.readSync(); e !== null; e = counting.readSync()) if (e.name.endsWith('.json')) count++;
  } finally {
    counting.closeSync();
  }
  parentPort!.postMessage({ type: 'count', entries: count } satisfies FromLoader);
  const d = opendirSync(dir, { bufferSize: 256 });
  let batch = new Batch();
  let size = FIRST_BATCH;
  let seen = 0;
  let quarantined = 0;
  try {
    for (let e = d.readSync(); e !== null; e = d.readSync()) {
      const name = e.name;
      if (name.endsWith('.json')) {
        const id = name.slice(0, -5);
        if (ours(id)) continue;
        seen++;
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
        batch.add(id, entry);
        if (batch.count >= size) {
          await send(batch, seen);
          batch = new Batch();
          size = wanted;
        }
      } else if (/\.json\.[0-9a-f]+$/.test(name)) {
        if (remove(join(dir, name))) removed++; // an update cut short: the entry's .json is whole
      } else if (name.endsWith('.eml')) {
        const id = name.slice(0, -4);
        const made = queueIdTime(id);
        if ((made === null || made < openedAt) && !existsSync(join(dir, `${id}.json`)) && remove(join(dir, name))) removed++;
      }
    }
  } finally {
    d.closeSync();
  }
  if (batch.count) await send(batch, seen);
  await finish({ type: 'done', seen, quarantined, removed });
}

main().catch((e: NodeJS.ErrnoException) => parentPort!.postMessage({ type: 'failed', message: e.message, code: e.code } satisfies FromLoader));
