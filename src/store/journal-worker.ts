// Worker thread: the journal's writer. The main thread hands it a batch (the records of every
// message accepted since the last batch) and gets one answer back; no file-system call runs on
// the event loop, and a batch costs one hand-off each way whatever its size. For each batch:
// each record's file is written once under a tmp name (or is already in its spool file), the
// batch is appended to the journal segment and fdatasync'ed (one for the whole batch: group
// commit), then the files are hard-linked and renamed into place and the batch is 'done' (the
// 250s may go). Every second the segment is rotated: one `sync -f` (syncfs, run by a long-lived
// helper: syncfs-helper.ts) makes its files durable, then it is deleted, so are the spool files
// its records named, and its queue entries are released to delivery. Without syncfs every file
// is fdatasync'ed and its folder fsync'ed instead.
// Segments are zero-filled ahead of the writes (SEGMENT_CHUNK at a time, the next segment before
// it is needed): a batch overwrites blocks that already exist, so its fdatasync writes the data
// and flushes, without also writing the inode and allocation metadata (half the latency on
// ext4). Recovery stops at the zeros after the last record, as at any torn tail.
// A file that cannot be written (disk full, a Maildir without permissions) is retried from the
// record, destination by destination, with backoff (1 s doubling up to a minute): it is safe in
// the journal, and then in journal/backlog.wal (backlog.ts) once its segment is dropped, so a
// broken mailbox never holds up the checkpoint, the other destinations or delivery. The main
// thread hears of the backlog (what waits, since when, why) whenever it changes.
// At start-up, before anything else, the worker replays the segments a crash left behind and
// empties the spool (recovery.ts), then answers 'ready'.
import fs, { closeSync, constants, fdatasyncSync, ftruncateSync, openSync, statfsSync, unlinkSync, writeSync, writevSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { advance, call } from './durable.js';
import { acceptedAt, destinationOf, placeEach, spooled, spoolsOf, writeBacklog } from './backlog.js';
import { encode, type JournalRecord } from './journal-format.js';
import type { MailboxAccess } from './mailbox-access.js';
import { discard, fsyncPathSync, layout, place, prepare, type Placement } from './materialize.js';
import { recover } from './recovery.js';
import { SyncfsHelper } from './syncfs-helper.js';

export type ToWorker =
  | { type: 'batch'; id: number; records: JournalRecord[]; release: string[] }
  /** the Maildir group and modes for every file and folder written from here on */
  | { type: 'access'; access: MailboxAccess }
  | { type: 'close' };
export type FromWorker =
  | { type: 'ready'; recovered: number; useSyncfs: boolean; waiting: BacklogState[] }
  | { type: 'done'; ids: number[] }
  | { type: 'failed'; ids: number[]; message: string; code?: string }
  | { type: 'durable'; release: string[] }
  | { type: 'error'; message: string; code?: string }
  /** what could not be written yet, per destination (a mailbox, or 'queue'): sent whenever it changes */
  | { type: 'backlog'; waiting: BacklogState[] }
  | { type: 'fatal'; message: string; code?: string }
  | { type: 'closed' };

const ROTATE_AFTER_MS = 1000; // checkpoint cadence: how soon new queue entries reach delivery
/** A body larger than this is not written into the journal: it goes to a spool file first. */
const WAL_MAX = 64 * 1024;
const EMPTY = new Uint8Array(0);
const ROTATE_AFTER_BYTES = 32 * 1024 * 1024;
const SEGMENT_CHUNK = 1024 * 1024; // zero-filled ahead of the writes
const zeros = Buffer.alloc(SEGMENT_CHUNK);
// Below this much free space nothing is zero-filled (batches append, as far as there is room):
// zeros must never take the room the mail itself needs.
const PREALLOCATE_MIN_FREE = 64 * 1024 * 1024;

/** What waits to be written into one destination. */
export interface BacklogState {
  /** a mailbox (Maildir name), or 'queue' */
  readonly destination: string;
  readonly count: number;
  /** when the oldest of them was acknowledged (about: when it first failed) */
  readonly since: number;
  /** why the last try failed */
  readonly error: string;
  readonly code?: string | undefined;
}

/** A destination of a journaled record whose file could not be written yet. */
interface Waiting {
  readonly r: JournalRecord;
  readonly since: number;
  message: string;
  code?: string | undefined;
}

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;

interface Segment {
  readonly n: number;
  readonly fd: number;
  /** where the next batch goes: the end of the records */
  size: number;
  /** bytes zero-filled so far: writes below this overwrite, they do not extend the file */
  allocated: number;
  firstAt: number;
  readonly release: string[];
  /** spool files its records name: removed once the segment is retired */
  readonly spools: string[];
}

const { dataDir, journalDir, access: initialAccess } = workerData as { dataDir: string; journalDir: string; access: MailboxAccess };
let access = initialAccess;
const l = layout(dataDir);
const syncfsHelper = new SyncfsHelper(dataDir); // started now, while the process is small
let useSyncfs = true;
let fsyncEach = false;
let segment: Segment | null = null;
let spare: Segment | null = null; // the next segment, zero-filled and named durably in advance
let nextSegment = 1;
const rotated: Segment[] = []; // closed segments whose files are not durable yet
const backlog: Waiting[] = []; // destinations of journaled records whose files could not be written yet
let backlogSaved = true; // journal/backlog.wal holds the backlog (and is gone when it is empty)
let retryDelay = RETRY_MIN_MS;
let drainTimer: NodeJS.Timeout | null = null;
const placedQueue: string[] = []; // queue entries placed from the backlog: released after the next checkpoint
const heldSpools = new Set<string>(); // spool files of retired segments the backlog still needs
const dirty = new Set<string>(); // folders to fsync at the checkpoint (without syncfs)
let syncing = false;
let closing = false;
let ready = false;
let rotateTimer: NodeJS.Timeout | null = null;
let retryTimer: NodeJS.Timeout | null = null;

const post = (m: FromWorker) => parentPort!.postMessage(m);
const errorOf = (e: unknown) => ({ message: (e as Error).message, code: (e as NodeJS.ErrnoException).code });
const report = (e: unknown) => post({ type: 'error', ...errorOf(e) });
const segmentPath = (n: number) => join(journalDir, `${String(n).padStart(12, '0')}.wal`);

/** A new segment: its first chunk zero-filled, that and its name durable before it holds acknowledged mail. */
function create(): Segment {
  const n = nextSegment++;
  const fd = openSync(segmentPath(n), constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  const s: Segment = { n, fd, size: 0, allocated: 0, firstAt: 0, release: [], spools: [] };
  try {
    extend(s, SEGMENT_CHUNK);
    fdatasyncSync(fd);
    fsyncPathSync(journalDir);
  } catch (e) {
    closeSync(fd);
    unlinkSync(segmentPath(n));
    throw e;
  }
  return s;
}

/** Zero-fills the segment up to at least `end`; the caller's fdatasync makes the new size durable. */
function extend(s: Segment, end: number): void {
  if (!roomToPreallocate()) return;
  s.allocated = Math.max(s.allocated, s.size); // never zero records already written
  while (s.allocated < end) s.allocated += writeSync(s.fd, zeros, 0, SEGMENT_CHUNK, s.allocated);
}

function roomToPreallocate(): boolean {
  try {
    const st = statfsSync(journalDir);
    return st.bavail * st.bsize > PREALLOCATE_MIN_FREE;
  } catch {
    return false;
  }
}

/** Prepares the next segment while the writer is idle, so a rotation costs no batch a wait. */
function prepareSpare(): void {
  if (spare || closing) return;
  try {
    spare = create();
  } catch {
    // the next batch creates its segment itself, and a failure then answers its senders
  }
}

function current(): Segment {
  if (segment) return segment;
  segment = spare ?? create();
  spare = null;
  segment.firstAt = Date.now();
  setImmediate(prepareSpare);
  rotateTimer ??= setTimeout(() => {
    rotateTimer = null;
    rotate();
  }, ROTATE_AFTER_MS);
  return segment;
}

// Batches that arrive while one is being written wait here and are written together.
let queued: { id: number; records: JournalRecord[]; release: string[] }[] = [];
let scheduled = false;

let staging = false;

function writeQueued(): void {
  scheduled = false;
  if (!ready || staging) return;
  const q = queued;
  queued = [];
  if (!q.length) {
    if (closing) close();
    return;
  }
  const ids = q.map((b) => b.id);
  const records = q.flatMap((b) => b.records);
  const release = q.flatMap((b) => b.release);
  const big = records.filter((r) => r.spool === null && r.data.length > WAL_MAX);
  if (!big.length) {
    batch(ids, records, release);
    if (closing) close();
    return;
  }
  // Bodies too big for the journal: written to spool files first (fdatasync'ed, all at once on
  // libuv's pool), then journaled by reference like the spool files sessions write.
  staging = true;
  void Promise.all(big.map((r) => spoolDurably(join(l.spool, r.name), r.data))).then(
    () => {
      staging = false;
      batch(
        ids,
        records.map((r) => (big.includes(r) ? { ...r, data: EMPTY, spool: r.name } : r)),
        release,
      );
      writeQueued();
    },
    (e: unknown) => {
      staging = false;
      for (const r of big) rmQuiet(join(l.spool, r.name));
      post({ type: 'failed', ids, ...errorOf(e) });
      writeQueued();
    },
  );
}

/** Writes a file and fdatasyncs it, on libuv's pool; a file that could not be written whole is removed. */
async function spoolDurably(path: string, data: Uint8Array): Promise<void> {
  const fd = await call<number>(fs.open, path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  try {
    let off = 0;
    while (off < data.length) off += await call<number>(fs.write, fd, data, off, data.length - off, off);
    await call(fs.fdatasync, fd);
  } finally {
    await call(fs.close, fd);
  }
}

function rmQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {}
}

function batch(ids: number[], records: JournalRecord[], release: string[]): void {
  const files: { r: JournalRecord; p: Placement }[] = [];
  const spools = records.flatMap((r) => (r.spool !== null ? [r.spool] : []));
  const unwritten: JournalRecord[] = []; // tried again destination by destination once journaled
  for (const r of records) {
    try {
      const p = prepare(r, l, { recovery: false, fsyncEach, access });
      if (p) files.push({ r, p });
    } catch {
      unwritten.push(r);
    }
  }
  let start = segment?.size ?? 0;
  try {
    // the spool files' names must survive a crash before the records that name them do
    if (spools.length) fsyncPathSync(l.spool);
    const s = current();
    start = s.size;
    let bufs = encode(records);
    const bytes = bufs.reduce((n, b) => n + b.length, 0);
    if (start + bytes > s.allocated) extend(s, start + bytes + SEGMENT_CHUNK);
    let at = start;
    while (bufs.length) {
      const n = writevSync(s.fd, bufs, at);
      at += n;
      bufs = advance(bufs, n);
    }
    fdatasyncSync(s.fd);
    s.size += bytes;
  } catch (e) {
    // never leave a torn batch in front of later ones: cut it off (the next batch zero-fills
    // from there again), or start a new segment
    if (segment) {
      try {
        ftruncateSync(segment.fd, start);
        segment.allocated = start;
      } catch {
        segment = null;
      }
    }
    for (const f of files) discard(f.p);
    post({ type: 'failed', ids, ...errorOf(e) });
    return;
  }
  for (const f of files) {
    try {
      for (const d of place(f.p)) dirty.add(d);
    } catch {
      discard(f.p);
      unwritten.push(f.r);
    }
  }
  for (const r of unwritten) defer(r);
  segment!.release.push(...release);
  segment!.spools.push(...spools);
  // in place, or in the backlog to retry: either way the batch is safe in the journal
  post({ type: 'done', ids });
  if (segment!.size > ROTATE_AFTER_BYTES || Date.now() - segment!.firstAt > ROTATE_AFTER_MS) rotate();
}

const noteDirs = (_files: string[], dirs: string[]) => {
  for (const d of dirs) dirty.add(d);
};

/** Into the backlog with what it could not write: a body held in memory goes to a spool file, so backlog.wal only names it. */
function hold(r: JournalRecord, error: unknown, since: number): void {
  let kept = r;
  try {
    kept = spooled(r, l);
  } catch {} // kept in memory (and written into backlog.wal) when even the spool cannot be written
  if (kept.spool !== null) heldSpools.add(kept.spool);
  backlog.push({ r: kept, since, ...errorOf(error) });
  backlogSaved = false;
}

/** A journaled record that could not be written: the destinations that can be written are, the others wait in the backlog. */
function defer(r: JournalRecord): void {
  const now = Date.now();
  for (const u of placeEach(r, l, { recovery: true, fsyncEach, access }, noteDirs)) hold(u.r, u.error, now);
  changed();
  arm();
}

/** Tries the backlog again: what can be written now is; the rest waits for the next try (backoff). */
function drain(): void {
  drainTimer = null;
  if (!backlog.length || closing) return;
  if (syncing) {
    // what it places must be covered by the checkpoint after the running one
    drainTimer = setTimeout(drain, 100);
    return;
  }
  let placed = 0;
  for (let i = 0; i < backlog.length;) {
    const w = backlog[i]!;
    const [failed] = placeEach(w.r, l, { recovery: true, fsyncEach, access }, noteDirs);
    if (failed) {
      Object.assign(w, errorOf(failed.error));
      i++;
      continue;
    }
    backlog.splice(i, 1);
    placed++;
    if (w.r.queue) placedQueue.push(w.r.queue.id);
  }
  retryDelay = backlog.length ? Math.min(RETRY_MAX_MS, retryDelay * 2) : RETRY_MIN_MS;
  if (placed) {
    backlogSaved = false;
    checkpoint();
  }
  changed();
  arm();
}

function arm(): void {
  if (backlog.length && !drainTimer && !closing) drainTimer = setTimeout(drain, retryDelay);
}

/** Tells the main thread what waits, per destination. */
function changed(): void {
  post({ type: 'backlog', waiting: waitingNow() });
}

function waitingNow(): BacklogState[] {
  const by = new Map<string, { count: number; since: number; error: string; code?: string | undefined }>();
  for (const w of backlog) {
    const d = destinationOf(w.r);
    const g = by.get(d);
    if (g) {
      g.count++;
      g.since = Math.min(g.since, w.since);
      g.error = w.message;
      g.code = w.code;
    } else by.set(d, { count: 1, since: w.since, error: w.message, code: w.code });
  }
  return [...by].map(([destination, g]) => ({ destination, ...g }));
}

function rotate(): void {
  if (rotateTimer) clearTimeout(rotateTimer);
  rotateTimer = null;
  const seg = segment;
  if (!seg) return;
  segment = null;
  try {
    closeSync(seg.fd);
  } catch {}
  rotated.push(seg);
  checkpoint();
}

/** Makes the files of every rotated segment (and what the backlog placed) durable, then retires the segments. */
function checkpoint(): void {
  if (syncing || (!rotated.length && backlogSaved && !placedQueue.length)) return;
  try {
    if (fsyncEach) for (const d of dirty) fsyncPathSync(d);
    dirty.clear();
  } catch (e) {
    report(e);
    retryTimer ??= setTimeout(() => {
      retryTimer = null;
      checkpoint();
    }, 1000);
    return;
  }
  const segs = rotated.splice(0);
  const placed = placedQueue.splice(0);
  if (!useSyncfs) return retire(segs, placed);
  syncing = true;
  syncfsHelper.sync((err) => {
    syncing = false;
    if (err) {
      report(new Error(`syncfs failed, retrying the checkpoint: ${err.message}`));
      rotated.unshift(...segs);
      placedQueue.unshift(...placed);
      setTimeout(checkpoint, 1000);
      return;
    }
    retire(segs, placed);
    checkpoint();
  });
}

/** @param placed queue entries the backlog placed before this checkpoint's sync: released now */
function retire(segs: Segment[], placed: string[] = []): void {
  // what waits in the backlog must be in backlog.wal before the segments naming it go
  if (!backlogSaved) {
    try {
      writeBacklog(
        journalDir,
        backlog.map((w) => w.r),
      );
      backlogSaved = true;
    } catch (e) {
      report(e);
      rotated.unshift(...segs);
      placedQueue.unshift(...placed);
      retryTimer ??= setTimeout(() => {
        retryTimer = null;
        checkpoint();
      }, 1000);
      return;
    }
  }
  for (const s of segs) {
    try {
      unlinkSync(segmentPath(s.n));
    } catch {}
  }
  try {
    fsyncPathSync(journalDir);
  } catch {}
  // only now: a segment that survived a crash may still need its spool files (and the backlog may, longer)
  const needed = spoolsOf(backlog.map((w) => w.r));
  for (const name of [...heldSpools, ...segs.flatMap((s) => s.spools)]) {
    if (needed.has(name)) {
      heldSpools.add(name);
      continue;
    }
    heldSpools.delete(name);
    try {
      unlinkSync(join(l.spool, name));
    } catch {}
  }
  // a queue entry whose files wait in the backlog goes to delivery once they are placed (placed)
  const waiting = new Set(backlog.flatMap((w) => (w.r.queue ? [w.r.queue.id] : [])));
  const release = [...segs.flatMap((s) => s.release).filter((id) => !waiting.has(id)), ...placed];
  if (release.length) post({ type: 'durable', release });
  maybeClosed();
}

function maybeClosed(): void {
  if (closing && !segment && !rotated.length && !syncing) {
    syncfsHelper.close();
    post({ type: 'closed' });
  }
}

function close(): void {
  if (spare) {
    try {
      closeSync(spare.fd);
      unlinkSync(segmentPath(spare.n));
    } catch {} // an unused segment holds no records: recovery would skip it
    spare = null;
  }
  rotate();
  maybeClosed();
}

parentPort!.on('message', (m: ToWorker) => {
  if (m.type === 'access') {
    access = m.access; // batches are written after this message is handled: they use it
    return;
  }
  if (m.type === 'batch') queued.push(m);
  else closing = true;
  if (!scheduled) {
    scheduled = true;
    setImmediate(writeQueued);
  }
});

/** Recovery first; only then are batches written. */
async function start(): Promise<void> {
  useSyncfs = await new Promise<boolean>((resolve) => syncfsHelper.probe((err) => resolve(!err)));
  fsyncEach = !useSyncfs;
  if (!useSyncfs) syncfsHelper.close();
  const sync = useSyncfs ? () => new Promise<Error | null>((resolve) => syncfsHelper.sync(resolve)) : null;
  const { files, lastSegment } = await recover(l, journalDir, sync, access, (unwritten) => {
    // what still cannot be written waits in the backlog (kept in backlog.wal before the segments go)
    const now = Date.now();
    for (const u of unwritten) hold(u.r, u.error, acceptedAt(u.r, now));
    writeBacklog(
      journalDir,
      backlog.map((w) => w.r),
    );
    backlogSaved = true;
    for (const name of spoolsOf(backlog.map((w) => w.r))) heldSpools.add(name);
    return heldSpools;
  });
  nextSegment = lastSegment + 1; // new segments are numbered after the replayed ones: a name never comes back
  ready = true;
  post({ type: 'ready', recovered: files, useSyncfs, waiting: waitingNow() });
  arm();
  prepareSpare();
  if (queued.length && !scheduled) {
    scheduled = true;
    setImmediate(writeQueued);
  }
}

start().catch((e) => post({ type: 'fatal', ...errorOf(e) }));
