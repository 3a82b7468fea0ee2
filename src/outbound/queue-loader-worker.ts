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
 * A batch: in `entries`, per entry [time, tail, arrivedAt, attempted (0/1), groups, then per
 * group: domain (an index into `domains`), due]; an id of another form has time NaN and tail
 * an index into `odd`.
 */
export type FromLoader =
  | { type: 'batch'; entries: Float64Array; count: number; domains: string[]; odd: string[]; seen: number }
  | { type: 'done'; seen: number; quarantined: number; removed: number }
  | { type: 'failed'; message: string; code?: string };
export type ToLoader = { type: 'more' };

const BATCH = 512;
const IN_FLIGHT = 2;

const { dir, openedAt, salt } = workerData as { dir: string; openedAt: number; salt: string };
let credit = IN_FLIGHT;
let resume: (() => void) | null = null;
parentPort!.on('message', () => {
  credit++;
  resume?.();
  resume = null;
});

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
    this.values.push(e.arrivedAt, e.attempts > 0 ? 1 : 0, groups.length);
    for (const [domain, due] of groups) {
      let d = this.domains.get(domain);
      if (d === undefined) this.domains.set(domain, (d = this.domains.size));
      this.values.push(d, due);
    }
    this.count++;
  }
}

async function send(b: Batch, seen: number): Promise<void> {
  while (credit <= 0) await new Promise<void>((r) => (resume = r));
  credit--;
  const entries = Float64Array.from(b.values);
  const msg: FromLoader = { type: 'batch', entries, count: b.count, domains: [...b.domains.keys()], odd: b.odd, seen };
  parentPort!.postMessage(msg, [entries.buffer]);
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
  const d = opendirSync(dir, { bufferSize: 256 });
  let batch = new Batch();
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
        if (batch.count >= BATCH) {
          await send(batch, seen);
          batch = new Batch();
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
  parentPort!.postMessage({ type: 'done', seen, quarantined, removed } satisfies FromLoader);
}

main().catch((e: NodeJS.ErrnoException) => parentPort!.postMessage({ type: 'failed', message: e.message, code: e.code } satisfies FromLoader));
