// Turning journal records into the files they stand for, with synchronous calls: used by the
// journal worker (off the event loop) and by recovery. A message is one inode: written once
// (into the first destination's tmp/, or already in its spool file), then hard-linked into every
// other destination — each mailbox's new/ and the queue's <id>.eml — and renamed into the first.
// Idempotent in recovery mode: a Maildir copy already in new/ or cur/, or a queue entry already
// present, is left alone. A file that goes into Maildirs gets the mailbox group and file mode
// (storage.mailboxGroup/mailboxMode: mailbox-access.ts) before it is linked anywhere, so every
// link of it — each mailbox's and the queue's — is one inode with one owner, group and mode.
import { closeSync, copyFileSync, existsSync, fdatasyncSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { JournalRecord } from './journal-format.js';
import { applyToFd, applyToPath, ensureMaildirSync, type MailboxAccess } from './mailbox-access.js';

/** a Maildir under mail/: a user's, or one of its Maildir++ folders (alice/.Junk) */
const SAFE_USER = /^[a-z0-9][a-z0-9._-]{0,63}(?:\/\.[A-Za-z0-9][A-Za-z0-9_-]{0,63})?$/;
const SAFE_NAME = /^[\w.,=-]{1,255}$/;

export interface Layout {
  readonly dataDir: string;
  readonly mail: string; // <dataDir>/mail
  readonly queue: string; // <dataDir>/queue
  readonly spool: string; // <dataDir>/spool
}

export function layout(dataDir: string): Layout {
  return { dataDir, mail: join(dataDir, 'mail'), queue: join(dataDir, 'queue'), spool: join(dataDir, 'spool') };
}

const ensured = new Set<string>();
function ensureMaildir(dir: string, access: MailboxAccess): void {
  if (ensured.has(dir)) return;
  ensureMaildirSync(dir, access);
  ensured.add(dir);
}

/**
 * Writes a new file (fdatasync'ed when asked), with the mailbox group and mode when it goes into
 * Maildirs; a file that could not be written whole is removed.
 */
function writeNew(path: string, data: Uint8Array, fsyncEach: boolean, access: MailboxAccess | null = null): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    if (access) applyToFd(fd, access);
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

/** One destination of a message's file: where it ends up, and its folder's tmp/ name. */
interface Target {
  readonly tmp: string;
  readonly final: string;
}

/** A record's files, written (or found in the spool) but not yet visible anywhere. */
export interface Placement {
  /** the message's file: a tmp file written here (renamed into targets[0]) or the spool file (kept) */
  readonly source: string;
  readonly written: boolean;
  readonly targets: readonly Target[];
  /** the queue entry's state, written under a tmp name; renamed after its .eml is in place */
  readonly json: Target | null;
  /** what a copy made instead of a link gets (null: the file goes to no Maildir) */
  readonly access: MailboxAccess | null;
}

export interface PrepareOptions {
  readonly recovery: boolean;
  readonly fsyncEach: boolean;
  /** the group and modes of Maildir folders and files (storage.mailboxGroup/mailboxMode) */
  readonly access: MailboxAccess;
}

/** Every destination of a record; in recovery mode only those not in place yet. */
function targets(r: JournalRecord, l: Layout, recovery: boolean, size: number, access: MailboxAccess): { files: Target[]; json: Target | null; mailboxes: number } {
  const files: Target[] = [];
  for (const user of r.users) {
    if (!SAFE_USER.test(user) || !SAFE_NAME.test(r.name)) continue;
    const dir = join(l.mail, user);
    ensureMaildir(dir, access);
    if (recovery && (sameSize(join(dir, 'new', r.name), size) || inCur(dir, r.name))) continue;
    files.push({ tmp: join(dir, 'tmp', r.name), final: join(dir, 'new', r.name) });
  }
  const mailboxes = files.length;
  let json: Target | null = null;
  if (r.queue && SAFE_NAME.test(r.queue.id)) {
    const { id } = r.queue;
    const tmp = join(l.queue, 'tmp');
    if (!ensured.has(tmp)) {
      mkdirSync(tmp, { recursive: true, mode: 0o700 });
      ensured.add(tmp); // once per process, as for Maildirs: not a mkdir for every queued message
    }
    const eml = join(l.queue, `${id}.eml`);
    const final = join(l.queue, `${id}.json`);
    if (!(recovery && existsSync(final) && sameSize(eml, size))) {
      if (!(recovery && sameSize(eml, size))) files.push({ tmp: join(l.queue, 'tmp', `${id}.eml`), final: eml });
      json = { tmp: join(l.queue, 'tmp', `${id}.json`), final };
    }
  }
  return { files, json, mailboxes };
}

/**
 * Writes a record's file once (or finds it in the spool) and its queue state under tmp names:
 * nothing is visible yet; `place` links and renames everything into place. Returns null when
 * nothing is left to do (recovery, everything in place) or, for a spool record, when the spool
 * file is gone.
 */
export function prepare(r: JournalRecord, l: Layout, o: PrepareOptions): Placement | null {
  const spoolPath = r.spool !== null && SAFE_NAME.test(r.spool) ? join(l.spool, r.spool) : null;
  if (r.spool !== null && (!spoolPath || (o.recovery && !existsSync(spoolPath)))) return null;
  const size = spoolPath ? statSync(spoolPath).size : r.data.length;
  const { files, json, mailboxes } = targets(r, l, o.recovery, size, o.access);
  if (!files.length && !json) return null;
  const access = mailboxes ? o.access : null;
  let written = false;
  let source: string;
  if (spoolPath) {
    source = spoolPath;
    if (access && files.length) applyToPath(source, access);
  } else if (files.length) {
    source = files[0]!.tmp;
    writeNew(source, r.data, o.fsyncEach, access);
    written = true;
  } else {
    source = '';
  }
  try {
    if (json) writeNew(json.tmp, Buffer.from(r.queue!.json), o.fsyncEach);
  } catch (e) {
    if (written) discardFile(source);
    throw e;
  }
  return { source, written, targets: files, json, access };
}

/**
 * Makes a prepared record visible: hard links into every destination (the queue's .eml among
 * them) and the rename into the first, then the queue entry's state. Returns the folders changed.
 */
export function place(p: Placement): string[] {
  const dirs: string[] = [];
  const [first, ...rest] = p.targets;
  for (const t of p.written ? rest : p.targets) {
    linkInto(p.source, t, p.access);
    dirs.push(dirname(t.final));
  }
  if (p.written && first) {
    renameSync(p.source, first.final);
    dirs.push(dirname(first.final));
  }
  if (p.json) {
    renameSync(p.json.tmp, p.json.final);
    dirs.push(dirname(p.json.final));
  }
  return dirs;
}

/** Undoes a prepare that will not be placed: removes what it wrote (never a spool file). */
export function discard(p: Placement): void {
  if (p.written) discardFile(p.source);
  if (p.json) discardFile(p.json.tmp);
}

/** prepare + place: used by recovery. Returns the paths now in place. */
export function materialize(r: JournalRecord, l: Layout, o: PrepareOptions): string[] {
  const p = prepare(r, l, o);
  if (!p) return [];
  place(p);
  return [...p.targets.map((t) => t.final), ...(p.json ? [p.json.final] : [])];
}

/**
 * A hard link, or a copy when the destination is on another file system or the file has too
 * many links already: written under the tmp name, fdatasync'ed and renamed, its folder fsync'ed
 * at once (a checkpoint's syncfs covers only the data dir's own file system).
 */
function linkInto(source: string, t: Target, access: MailboxAccess | null): void {
  try {
    linkSync(source, t.final);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return; // recovery: a link made before the crash
    if (code !== 'EXDEV' && code !== 'EMLINK' && code !== 'EPERM') throw e;
  }
  copyFileSync(source, t.tmp);
  if (access) applyToPath(t.tmp, access); // a copy has the mode, not the group
  fsyncPathSync(t.tmp);
  renameSync(t.tmp, t.final);
  fsyncPathSync(dirname(t.final));
}

function discardFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {}
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
