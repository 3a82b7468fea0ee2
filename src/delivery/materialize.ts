// Turning journal records into the files they stand for, with synchronous calls: used by the
// journal worker (off the event loop) and by recovery at start-up. Idempotent in recovery
// mode: a Maildir copy already in new/ or cur/, or a queue entry already present, is left alone.
import { closeSync, existsSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
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

/**
 * Writes a new file (fdatasync'ed when asked); a file that could not be written whole is removed.
 * Returns its descriptor when asked to keep it open (the caller syncs and closes it), else -1.
 */
function writeNew(path: string, data: Uint8Array, o: { fsyncEach: boolean; keepOpen?: boolean }): number {
  const fd = openSync(path, 'w', 0o600);
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    if (o.fsyncEach) fdatasyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch {}
    throw e;
  }
  if (o.keepOpen) return fd;
  closeSync(fd);
  return -1;
}

export interface Move {
  readonly tmp: string;
  readonly final: string;
  /** the tmp file's descriptor, still open, when prepared with `keepOpen` (else -1) */
  fd: number;
}

interface PrepareOptions {
  readonly recovery: boolean;
  readonly fsyncEach: boolean;
  /** leave each tmp file open (Move.fd), for a caller that fdatasyncs it itself */
  readonly keepOpen?: boolean;
}

/**
 * Writes a record's files under tmp names (nothing visible yet); `place` renames them into
 * their folders. In recovery mode a record already in place is skipped.
 */
export function prepare(r: JournalRecord, l: Layout, o: PrepareOptions): Move[] {
  if (r.k === 'm') {
    if (!SAFE_USER.test(r.user) || !SAFE_NAME.test(r.name)) return [];
    const dir = join(l.mail, r.user);
    ensureMaildir(dir);
    if (o.recovery && (sameSize(join(dir, 'new', r.name), r.data.length) || inCur(dir, r.name))) return [];
    const tmp = join(dir, 'tmp', r.name);
    return [{ tmp, final: join(dir, 'new', r.name), fd: writeNew(tmp, r.data, o) }];
  }
  if (!SAFE_NAME.test(r.id)) return [];
  const json = join(l.queue, `${r.id}.json`);
  if (o.recovery && existsSync(json) && sameSize(join(l.queue, `${r.id}.eml`), r.data.length)) return [];
  mkdirSync(join(l.queue, 'tmp'), { recursive: true, mode: 0o700 });
  const tmpEml = join(l.queue, 'tmp', `${r.id}.eml`);
  const tmpJson = join(l.queue, 'tmp', `${r.id}.json`);
  const eml: Move = { tmp: tmpEml, final: join(l.queue, `${r.id}.eml`), fd: writeNew(tmpEml, r.data, o) };
  try {
    // the .json last: a queue entry exists once its .json is in place
    return [eml, { tmp: tmpJson, final: json, fd: writeNew(tmpJson, Buffer.from(r.json), o) }];
  } catch (e) {
    discard([eml]);
    throw e;
  }
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
