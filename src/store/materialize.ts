// Turning journal records into the files they stand for, with synchronous calls (large messages:
// on libuv's pool, in parallel): used by the journal worker (off the event loop) and by recovery
// at start-up. Idempotent in recovery mode: a Maildir copy already in new/ or cur/, or a queue
// entry already present, is left alone.
import fs, { closeSync, existsSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { call } from './durable.js';
import type { JournalRecord } from './journal-format.js';

const SAFE_USER = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const SAFE_NAME = /^[\w.,=-]{1,255}$/;

export interface Layout {
  readonly dataDir: string;
  readonly mail: string; // <dataDir>/mail
  readonly queue: string; // <dataDir>/queue
}

export function layout(dataDir: string): Layout {
  return { dataDir, mail: join(dataDir, 'mail'), queue: join(dataDir, 'queue') };
}

const ensured = new Set<string>();
function ensureMaildir(dir: string): void {
  if (ensured.has(dir)) return;
  for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  ensured.add(dir);
}

/** Writes a new file (fdatasync'ed when asked); a file that could not be written whole is removed. */
function writeNew(path: string, data: Uint8Array, fsyncEach: boolean): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    if (fsyncEach) fdatasyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch {}
    throw e;
  }
  closeSync(fd);
}

export interface Move {
  readonly tmp: string;
  readonly final: string;
  /** the tmp file's descriptor, still open, when written by `prepareDurably` (else -1) */
  fd: number;
}

interface PrepareOptions {
  readonly recovery: boolean;
  readonly fsyncEach: boolean;
}

interface Target {
  readonly tmp: string;
  readonly final: string;
  readonly data: Uint8Array;
}

/**
 * The files a record stands for, in the order they must be placed (a queue entry exists once its
 * .json is in place, so that goes last). In recovery mode a record already in place has none.
 */
function targets(r: JournalRecord, l: Layout, recovery: boolean): Target[] {
  if (r.k === 'm') {
    if (!SAFE_USER.test(r.user) || !SAFE_NAME.test(r.name)) return [];
    const dir = join(l.mail, r.user);
    ensureMaildir(dir);
    if (recovery && (sameSize(join(dir, 'new', r.name), r.data.length) || inCur(dir, r.name))) return [];
    return [{ tmp: join(dir, 'tmp', r.name), final: join(dir, 'new', r.name), data: r.data }];
  }
  if (!SAFE_NAME.test(r.id)) return [];
  const json = join(l.queue, `${r.id}.json`);
  if (recovery && existsSync(json) && sameSize(join(l.queue, `${r.id}.eml`), r.data.length)) return [];
  mkdirSync(join(l.queue, 'tmp'), { recursive: true, mode: 0o700 });
  return [
    { tmp: join(l.queue, 'tmp', `${r.id}.eml`), final: join(l.queue, `${r.id}.eml`), data: r.data },
    { tmp: join(l.queue, 'tmp', `${r.id}.json`), final: json, data: Buffer.from(r.json) },
  ];
}

/**
 * Writes a record's files under tmp names (nothing visible yet); `place` renames them into
 * their folders. In recovery mode a record already in place is skipped.
 */
export function prepare(r: JournalRecord, l: Layout, o: PrepareOptions): Move[] {
  const moves: Move[] = [];
  try {
    for (const t of targets(r, l, o.recovery)) {
      writeNew(t.tmp, t.data, o.fsyncEach);
      moves.push({ tmp: t.tmp, final: t.final, fd: -1 });
    }
  } catch (e) {
    discard(moves);
    throw e;
  }
  return moves;
}

/**
 * `prepare` for a large message, all its records at once: every file written and fdatasync'ed on
 * libuv's pool in parallel, each left open (Move.fd) for the caller to close once all of them are
 * durable. On failure nothing is left behind.
 */
export async function prepareDurably(records: readonly JournalRecord[], l: Layout): Promise<Move[]> {
  const results = await Promise.allSettled(records.flatMap((r) => targets(r, l, false)).map((t) => writeDurably(t)));
  const moves = results.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
  const failed = results.find((x) => x.status === 'rejected');
  if (failed) {
    discard(moves);
    throw failed.reason;
  }
  return moves;
}

async function writeDurably(t: Target): Promise<Move> {
  const fd = await call<number>(fs.open, t.tmp, 'w', 0o600);
  try {
    let off = 0;
    while (off < t.data.length) off += await call<number>(fs.write, fd, t.data, off, t.data.length - off);
    await call(fs.fdatasync, fd);
  } catch (e) {
    discard([{ tmp: t.tmp, final: t.final, fd }]);
    throw e;
  }
  return { tmp: t.tmp, final: t.final, fd };
}

export function place(moves: readonly Move[]): void {
  for (const m of moves) renameSync(m.tmp, m.final);
}

export function discard(moves: readonly Move[]): void {
  for (const m of moves) {
    closeMove(m);
    try {
      unlinkSync(m.tmp);
    } catch {}
  }
}

/** Closes a tmp file left open by `keepOpen`, once. */
export function closeMove(m: Move): void {
  if (m.fd < 0) return;
  const fd = m.fd;
  m.fd = -1;
  try {
    closeSync(fd);
  } catch {}
}

/** prepare + place: used by recovery. Returns the paths written. */
export function materialize(r: JournalRecord, l: Layout, o: PrepareOptions): string[] {
  const moves = prepare(r, l, o);
  place(moves);
  return moves.map((m) => m.final);
}

function sameSize(path: string, size: number): boolean {
  try {
    return statSync(path).size === size;
  } catch {
    return false;
  }
}

function inCur(dir: string, name: string): boolean {
  try {
    return readdirSync(join(dir, 'cur')).some((f) => f === name || f.startsWith(`${name}:`));
  } catch {
    return false;
  }
}

/** fsync of a file or a folder, by path. */
export function fsyncPathSync(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** syncfs(2) on the data dir's file system through `sync -f`; false when that is not available. */
export function syncfs(dataDir: string): boolean {
  const r = spawnSync('sync', ['-f', dataDir], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}
