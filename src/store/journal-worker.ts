// Worker thread: the journal's writer. The main thread hands it a batch (the records of every
// message accepted since the last batch) and gets one answer back; no file-system call runs on
// the event loop, and a batch costs one hand-off each way whatever its size. For each batch:
// the records' files are written under tmp names, the batch is appended to the journal segment
// and fdatasync'ed (one for the whole batch: group commit), then the files are renamed into
// place and the batch is 'done' (the 250s may go). Every second the segment is rotated: one
// `sync -f` (syncfs, run by a long-lived helper: syncfs-helper.ts) makes its files durable, then
// it is deleted and its queue entries are released to delivery. Without syncfs every file is
// fdatasync'ed and its folder fsync'ed instead.
// Segments are zero-filled ahead of the writes (SEGMENT_CHUNK at a time, the next segment before
// it is needed): a batch overwrites blocks that already exist, so its fdatasync writes the data
// and flushes, without also writing the inode and allocation metadata (half the latency on
// ext4). Recovery stops at the zeros after the last record, as at any torn tail.
// A file that cannot be written (disk full) is retried from the record: it is safe in the journal.
// Large messages skip the journal ('direct'): their files are fdatasync'ed on their own.
import { closeSync, constants, fdatasyncSync, ftruncateSync, openSync, statfsSync, unlinkSync, writeSync, writevSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { advance, fsyncDir } from './durable.js';
import { encode, type JournalRecord } from './journal-format.js';
import { closeMove, discard, fsyncPathSync, layout, place, prepare, prepareDurably, type Move } from './materialize.js';
import { SyncfsHelper } from './syncfs-helper.js';

export type ToWorker =
  | { type: 'batch'; id: number; records: JournalRecord[]; release: string[] }
  /** a large message: its files written and fdatasync'ed themselves, not through the journal */
  | { type: 'direct'; id: number; records: JournalRecord[] }
  | { type: 'close' };
export type FromWorker =
  | { type: 'done'; ids: number[] }
  | { type: 'failed'; ids: number[]; message: string; code?: string }
  | { type: 'durable'; release: string[] }
  | { type: 'error'; message: string; code?: string }
  | { type: 'closed' };

const ROTATE_AFTER_MS = 1000; // checkpoint cadence: how soon new queue entries reach delivery
const ROTATE_AFTER_BYTES = 32 * 1024 * 1024;
const SEGMENT_CHUNK = 1024 * 1024; // zero-filled ahead of the writes
const zeros = Buffer.alloc(SEGMENT_CHUNK);
// Below this much free space nothing is zero-filled (batches append, as far as there is room):
// zeros must never take the room the mail itself needs.
const PREALLOCATE_MIN_FREE = 64 * 1024 * 1024;

interface Segment {
  readonly n: number;
  readonly fd: number;
  /** where the next batch goes: the end of the records */
  size: number;
  /** bytes zero-filled so far: writes below this overwrite, they do not extend the file */
  allocated: number;
  firstAt: number;
  readonly release: string[];
}

const { dataDir, journalDir, useSyncfs, firstSegment } = workerData as { dataDir: string; journalDir: string; useSyncfs: boolean; firstSegment: number };
const fsyncEach = !useSyncfs;
const l = layout(dataDir);
const syncfsHelper = useSyncfs ? new SyncfsHelper(dataDir) : null; // started now, while the process is small
let segment: Segment | null = null;
let spare: Segment | null = null; // the next segment, zero-filled and named durably in advance
let nextSegment = firstSegment;
const rotated: Segment[] = []; // closed segments whose files are not durable yet
const backlog: JournalRecord[] = []; // journaled records whose files could not be written yet
const dirty = new Set<string>(); // folders to fsync at the checkpoint (without syncfs)
let syncing = false;
let closing = false;
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
  const s: Segment = { n, fd, size: 0, allocated: 0, firstAt: 0, release: [] };
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
let queuedDirect: { id: number; records: JournalRecord[] }[] = [];
let scheduled = false;

function writeQueued(): void {
  scheduled = false;
  const q = queued;
  const d = queuedDirect;
  queued = [];
  queuedDirect = [];
  if (q.length) batch(q.map((b) => b.id), q.flatMap((b) => b.records), q.flatMap((b) => b.release));
  if (d.length) void direct(d);
  if (closing) close();
}

/**
 * Large messages: every file of every message written and fdatasync'ed at once on libuv's pool
 * (kept open until all files of its message are durable, then closed), renamed into place, and
 * every folder that received one fsync'ed once. Each message succeeds or fails on its own.
 */
async function direct(items: { id: number; records: JournalRecord[] }[]): Promise<void> {
  const placed = await Promise.all(
    items.map(async (it) => {
      let moves: Move[] = [];
      try {
        moves = await prepareDurably(it.records, l);
        for (const m of moves) closeMove(m);
        place(moves);
        return { id: it.id, moves };
      } catch (e) {
        discard(moves);
        post({ type: 'failed', ids: [it.id], ...errorOf(e) });
        return null;
      }
    }),
  ).then((all) => all.filter((it) => it !== null));
  if (!placed.length) return;
  const ids = placed.map((it) => it.id);
  try {
    await Promise.all([...new Set(placed.flatMap((it) => it.moves.map((m) => dirname(m.final))))].map((d) => fsyncDir(d)));
  } catch (e) {
    post({ type: 'failed', ids, ...errorOf(e) });
    return;
  }
  post({ type: 'done', ids });
}

function batch(ids: number[], records: JournalRecord[], release: string[]): void {
  const files: { r: JournalRecord; moves: Move[] }[] = [];
  for (const r of records) {
    try {
      files.push({ r, moves: prepare(r, l, { recovery: false, fsyncEach }) });
    } catch (e) {
      report(e);
      backlog.push(r);
    }
  }
  let start = segment?.size ?? 0;
  try {
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
    for (const f of files) discard(f.moves);
    backlog.splice(0, backlog.length, ...backlog.filter((r) => !records.includes(r)));
    post({ type: 'failed', ids, ...errorOf(e) });
    return;
  }
  for (const f of files) {
    try {
      place(f.moves);
      for (const m of f.moves) dirty.add(dirname(m.final));
    } catch (e) {
      report(e);
      discard(f.moves);
      backlog.push(f.r);
    }
  }
  drain();
  segment!.release.push(...release);
  // in place, or in the backlog to retry: either way the batch is safe in the journal
  post({ type: 'done', ids });
  if (segment!.size > ROTATE_AFTER_BYTES || Date.now() - segment!.firstAt > ROTATE_AFTER_MS) rotate();
}

/** Writes what could not be written before; false (and a retry armed) while that still fails. */
function drain(): boolean {
  while (backlog.length) {
    try {
      const moves = prepare(backlog[0]!, l, { recovery: true, fsyncEach });
      place(moves);
      for (const m of moves) dirty.add(dirname(m.final));
      backlog.shift();
    } catch (e) {
      report(e);
      retryTimer ??= setTimeout(() => {
        retryTimer = null;
        if (drain()) checkpoint();
      }, 1000);
      return false;
    }
  }
  return true;
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

/** Makes the files of every rotated segment durable, then retires the segments. */
function checkpoint(): void {
  if (syncing || !rotated.length || !drain()) return;
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
  if (!useSyncfs) return retire(segs);
  syncing = true;
  syncfsHelper!.sync((err) => {
    syncing = false;
    if (err) {
      report(new Error(`syncfs failed, retrying the checkpoint: ${err.message}`));
      rotated.unshift(...segs);
      setTimeout(checkpoint, 1000);
      return;
    }
    retire(segs);
    checkpoint();
  });
}

function retire(segs: Segment[]): void {
  for (const s of segs) {
    try {
      unlinkSync(segmentPath(s.n));
    } catch {}
  }
  try {
    fsyncPathSync(journalDir);
  } catch {}
  const release = segs.flatMap((s) => s.release);
  if (release.length) post({ type: 'durable', release });
  maybeClosed();
}

function maybeClosed(): void {
  if (closing && !segment && !rotated.length && !syncing) {
    syncfsHelper?.close();
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
  if (m.type === 'batch') queued.push(m);
  else if (m.type === 'direct') queuedDirect.push(m);
  else closing = true;
  if (!scheduled) {
    scheduled = true;
    setImmediate(writeQueued);
  }
});

prepareSpare();
