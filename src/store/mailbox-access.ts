// Who may read the Maildirs besides mailplane (storage.mailboxGroup, storage.mailboxMode): every
// Maildir folder and message file mailplane creates gets the group and the mode, so that an IMAP
// server running as another user in that group (Dovecot's mail_uid/mail_gid) can serve them.
// The defaults (no group, 0600/0700) are mailplane's behaviour without the setting: nothing here
// then costs a system call. Folders and files mailplane did not create are left alone (Dovecot
// creates some of its own in a shared Maildir; mailplane could not change those anyway).
import { promises as fsp, chmodSync, chownSync, closeSync, fchmodSync, fchownSync, mkdirSync, openSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface MailboxAccess {
  /** the group mail folders and files are given to; null = the process's own */
  readonly gid: number | null;
  /** permission bits of message files */
  readonly fileMode: number;
  /** permission bits of Maildir folders (the setgid bit included) */
  readonly folderMode: number;
}

export const DEFAULT_MAILBOX_ACCESS: MailboxAccess = Object.freeze({ gid: null, fileMode: 0o600, folderMode: 0o700 });

/** Whether a does what mailplane does without the setting (then nothing needs changing). */
export function isDefaultAccess(a: MailboxAccess): boolean {
  return a.gid === null && a.fileMode === DEFAULT_MAILBOX_ACCESS.fileMode && a.folderMode === DEFAULT_MAILBOX_ACCESS.folderMode;
}

const SUBFOLDERS = ['tmp', 'new', 'cur'];

/** A folder created (or found) with mode 0700: true when this call created it. */
function mkdirOwnSync(dir: string): boolean {
  try {
    mkdirSync(dir, { mode: 0o700 });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

async function mkdirOwn(dir: string): Promise<boolean> {
  try {
    await fsp.mkdir(dir, { mode: 0o700 });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** Group first, then the mode: a chown may clear the setgid bit, a chmod after it sets it. */
function applyFolderSync(dir: string, a: MailboxAccess): void {
  if (a.gid !== null) chownSync(dir, -1, a.gid);
  chmodSync(dir, a.folderMode);
}

async function applyFolder(dir: string, a: MailboxAccess): Promise<void> {
  if (a.gid !== null) await fsp.chown(dir, -1, a.gid);
  await fsp.chmod(dir, a.folderMode);
}

/** A Maildir++ folder of a user's Maildir (<mail>/<user>/.<Folder>), rather than the Maildir itself. */
function isSubfolder(dir: string): boolean {
  return basename(dir).startsWith('.');
}

/** The empty `maildirfolder` file that marks a Maildir++ folder (Courier and Dovecot's deliver look for it). */
const MARKER = 'maildirfolder';

function markSync(dir: string, a: MailboxAccess): void {
  const fd = openSync(join(dir, MARKER), 'a', 0o600);
  try {
    applyToFd(fd, a);
  } finally {
    closeSync(fd);
  }
}

async function mark(dir: string, a: MailboxAccess): Promise<void> {
  const f = await fsp.open(join(dir, MARKER), 'a', 0o600);
  try {
    if (!isDefaultAccess(a)) {
      if (a.gid !== null) await f.chown(-1, a.gid);
      await f.chmod(a.fileMode);
    }
  } finally {
    await f.close();
  }
}

/**
 * Creates <mail>/<user>/{tmp,new,cur} (and <mail> when missing); every folder created here gets
 * the group and folder mode. For a Maildir++ folder (<mail>/<user>/.Junk) the user's Maildir
 * comes first, then the folder with its marker file. Synchronous: for the journal worker.
 */
export function ensureMaildirSync(dir: string, a: MailboxAccess): void {
  if (isSubfolder(dir)) {
    ensureMaildirSync(dirname(dir), a);
    for (const d of [dir, ...SUBFOLDERS.map((s) => join(dir, s))]) if (mkdirOwnSync(d)) applyFolderSync(d, a);
    markSync(dir, a);
    return;
  }
  if (isDefaultAccess(a)) {
    for (const sub of SUBFOLDERS) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
    return;
  }
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  for (const d of [dir, ...SUBFOLDERS.map((s) => join(dir, s))]) if (mkdirOwnSync(d)) applyFolderSync(d, a);
}

/** ensureMaildirSync without blocking the event loop: for the intake. */
export async function ensureMaildir(dir: string, a: MailboxAccess): Promise<void> {
  if (isSubfolder(dir)) {
    await ensureMaildir(dirname(dir), a);
    for (const d of [dir, ...SUBFOLDERS.map((s) => join(dir, s))]) if (await mkdirOwn(d)) await applyFolder(d, a);
    await mark(dir, a);
    return;
  }
  if (isDefaultAccess(a)) {
    for (const sub of SUBFOLDERS) await fsp.mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    return;
  }
  await fsp.mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  for (const d of [dir, ...SUBFOLDERS.map((s) => join(dir, s))]) if (await mkdirOwn(d)) await applyFolder(d, a);
}

/** Gives an open message file the group and file mode (the mode explicitly: the umask does not narrow it). */
export function applyToFd(fd: number, a: MailboxAccess): void {
  if (isDefaultAccess(a)) return;
  if (a.gid !== null) fchownSync(fd, -1, a.gid);
  fchmodSync(fd, a.fileMode);
}

/** The same for a file by path (a spool file about to be linked into Maildirs, a copy). */
export function applyToPath(path: string, a: MailboxAccess): void {
  if (isDefaultAccess(a)) return;
  if (a.gid !== null) chownSync(path, -1, a.gid);
  chmodSync(path, a.fileMode);
}

/**
 * The Maildirs' root, <dataDir>/mail: given the group and folder mode when mailplane owns it, so
 * that the group can reach the Maildirs below (and an IMAP server may create a Maildir for a
 * user who has no mail yet). Returns what keeps the group from reaching it, if anything: a
 * folder on the way that neither lets others through nor the group.
 */
export async function prepareMailRoot(mail: string, a: MailboxAccess): Promise<string | null> {
  if (isDefaultAccess(a)) return null;
  const st = await fsp.stat(mail);
  if (st.uid === process.geteuid?.()) await applyFolder(mail, a);
  if (a.gid === null) return null;
  for (let d = dirname(mail); ; d = dirname(d)) {
    const s = await fsp.stat(d);
    const through = (s.mode & 0o001) !== 0 || ((s.mode & 0o010) !== 0 && s.gid === a.gid);
    if (!through) return `${d} (mode ${(s.mode & 0o7777).toString(8).padStart(4, '0')}, owner ${s.uid}:${s.gid}) lets neither group ${a.gid} nor others through`;
    if (dirname(d) === d) return null;
  }
}

/** Parses a mode as written in the config ("0640", "2770"). */
export function parseMode(s: string): number {
  return parseInt(s, 8);
}
