// What the journal could not write yet: a destination of an acknowledged message whose file
// could not be put in place (a Maildir without permissions, a full disk). Used by the journal
// worker and by recovery. A failing record is split into one record per destination (each
// mailbox, the queue), so the destinations that work get their copy at once and only the
// broken ones wait; those are retried with backoff. They must outlive the journal segment that
// named them (segments are dropped every second, and a replayed old segment would bring back
// mail already read and deleted), so the worker keeps them in journal/backlog.wal, rewritten
// when the backlog changes — bytes held in memory are moved to a spool file first, so the file
// names bodies instead of holding them.
import { closeSync, constants, existsSync, fdatasyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, writevSync } from 'node:fs';
import { join } from 'node:path';
import { advance } from './durable.js';
import { decode, encode, type JournalRecord } from './journal-format.js';
import { discard, fsyncPathSync, place, prepare, type Layout, type PrepareOptions } from './materialize.js';

export const BACKLOG_FILE = 'backlog.wal';

const EMPTY = new Uint8Array(0);

/** One record per destination (each mailbox, then the queue); a record with one destination is itself. */
export function pieces(r: JournalRecord): JournalRecord[] {
  if (r.users.length + (r.queue ? 1 : 0) <= 1) return [r];
  return [...r.users.map((u) => ({ ...r, users: [u], queue: null })), ...(r.queue ? [{ ...r, users: [], queue: r.queue }] : [])];
}

/** When a record's message was accepted, from its Maildir name (<seconds>.M…), else `fallback`. */
export function acceptedAt(r: JournalRecord, fallback: number): number {
  const m = r.name.match(/^(\d{9,11})\./);
  return m ? Math.min(fallback, Number(m[1]) * 1000) : fallback;
}

/** The one destination of a piece, as logs name it: the mailbox, or 'queue'. */
export function destinationOf(r: JournalRecord): string {
  return r.users[0] ?? (r.queue ? 'queue' : r.name);
}

/**
 * Puts a record's files in place, leaving what is there already (recovery mode). Returns the
 * files placed and the folders changed, or the error that stopped it.
 */
export function placeNow(r: JournalRecord, l: Layout, o: PrepareOptions): { files: string[]; dirs: string[] } | { error: unknown } {
  try {
    const p = prepare(r, l, { ...o, recovery: true });
    if (!p) return { files: [], dirs: [] };
    try {
      const dirs = place(p);
      return { files: [...p.targets.map((t) => t.final), ...(p.json ? [p.json.final] : [])], dirs };
    } catch (e) {
      discard(p);
      throw e;
    }
  } catch (e) {
    return { error: e };
  }
}

/** A record placed whole if it can be, else destination by destination: what could not be, with why. */
export function placeEach(r: JournalRecord, l: Layout, o: PrepareOptions, placed: (files: string[], dirs: string[]) => void): { r: JournalRecord; error: unknown }[] {
  const whole = placeNow(r, l, o);
  if (!('error' in whole)) {
    placed(whole.files, whole.dirs);
    return [];
  }
  const parts = pieces(r);
  if (parts.length === 1) return [{ r, error: whole.error }];
  const failed: { r: JournalRecord; error: unknown }[] = [];
  for (const piece of parts) {
    const got = placeNow(piece, l, o);
    if ('error' in got) failed.push({ r: piece, error: got.error });
    else placed(got.files, got.dirs);
  }
  return failed;
}

/**
 * A record whose bytes are in memory, as one naming a spool file that holds them (written and
 * fdatasync'ed here, once for all the pieces of a record); others as they are.
 */
export function spooled(r: JournalRecord, l: Layout): JournalRecord {
  if (r.spool !== null || r.data.length === 0) return r;
  const name = `backlog-${r.name}`;
  const path = join(l.spool, name);
  if (!existsSync(path)) {
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, constants.O_CREAT | constants.O_TRUNC | constants.O_WRONLY, 0o600);
    try {
      let off = 0;
      while (off < r.data.length) off += writeSync(fd, r.data, off, r.data.length - off);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncPathSync(l.spool);
  }
  return { ...r, data: EMPTY, spool: name };
}

/** The spool files records name (what the backlog still needs). */
export function spoolsOf(records: readonly JournalRecord[]): Set<string> {
  return new Set(records.flatMap((r) => (r.spool !== null ? [r.spool] : [])));
}

/** Replaces journal/backlog.wal durably with these records; removes it when there are none. */
export function writeBacklog(journalDir: string, records: readonly JournalRecord[]): void {
  const path = join(journalDir, BACKLOG_FILE);
  if (!records.length) {
    if (!existsSync(path)) return;
    unlinkSync(path);
    fsyncPathSync(journalDir);
    return;
  }
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, constants.O_CREAT | constants.O_TRUNC | constants.O_WRONLY, 0o600);
  try {
    let bufs = encode(records);
    let at = 0;
    while (bufs.length) {
      const n = writevSync(fd, bufs, at);
      at += n;
      bufs = advance(bufs, n);
    }
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncPathSync(journalDir);
}

/** The records of journal/backlog.wal (none when it does not exist). */
export function readBacklog(journalDir: string): JournalRecord[] {
  try {
    return decode(readFileSync(join(journalDir, BACKLOG_FILE)));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
