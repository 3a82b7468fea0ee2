// Turning journal records into the files they stand for, with synchronous calls: used by the
// materializer worker (off the event loop) and by recovery at start-up. Idempotent in recovery
// mode: a Maildir copy already in new/ or cur/, or a queue entry already present, is left alone.
import { closeSync, existsSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, statSync, writeSync } from 'node:fs';
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

function writeNew(path: string, data: Uint8Array, fsyncEach: boolean): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    if (fsyncEach) fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes one record's files; returns the paths written (their folders need an fsync too). */
export function materialize(r: JournalRecord, l: Layout, o: { recovery: boolean; fsyncEach: boolean }): string[] {
  if (r.k === 'm') {
    if (!SAFE_USER.test(r.user) || !SAFE_NAME.test(r.name)) return [];
    const dir = join(l.mail, r.user);
    ensureMaildir(dir);
    if (o.recovery && (sameSize(join(dir, 'new', r.name), r.data.length) || inCur(dir, r.name))) return [];
    const tmp = join(dir, 'tmp', r.name);
    writeNew(tmp, r.data, o.fsyncEach);
    renameSync(tmp, join(dir, 'new', r.name));
    return [join(dir, 'new', r.name)];
  }
  if (!SAFE_NAME.test(r.id)) return [];
  const json = join(l.queue, `${r.id}.json`);
  if (o.recovery && existsSync(json) && sameSize(join(l.queue, `${r.id}.eml`), r.data.length)) return [];
  mkdirSync(join(l.queue, 'tmp'), { recursive: true, mode: 0o700 });
  const tmpEml = join(l.queue, 'tmp', `${r.id}.eml`);
  const tmpJson = join(l.queue, 'tmp', `${r.id}.json`);
  writeNew(tmpEml, r.data, o.fsyncEach);
  writeNew(tmpJson, Buffer.from(r.json), o.fsyncEach);
  renameSync(tmpEml, join(l.queue, `${r.id}.eml`));
  renameSync(tmpJson, json);
  return [join(l.queue, `${r.id}.eml`), json];
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

export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
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
