// The passwd-file Dovecot reads the local accounts from (mailboxes.dovecot.passwdFile), checked
// on every applied generation and written when its content differs: atomically (a temporary
// file in the same folder, fsync'ed, renamed over the old one, the folder fsync'ed), mode 0640,
// in storage.mailboxGroup when one is set. Dovecot stats the file at each lookup and rereads a
// changed one, so a user added, removed or given a new password logs in (or no longer can) as
// soon as the generation has applied, without a restart. The hashes are written as Dovecot's
// schemes name them; nothing of them is logged.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { HashScheme } from '../config/hashes.js';
import type { Logger } from '../ops/logger.js';
import type { DovecotSpec } from '../plan/specs.js';

const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

/** Dovecot's password scheme for each hash format mailplane accepts. */
export const DOVECOT_SCHEMES: Readonly<Record<HashScheme, string>> = {
  bcrypt: 'BLF-CRYPT',
  'sha512-crypt': 'SHA512-CRYPT',
  'sha256-crypt': 'SHA256-CRYPT',
  argon2id: 'ARGON2ID',
};

/** What /status shows of the file: never its content. */
export interface PasswdFileState {
  readonly path: string;
  readonly users: number;
  /** when mailplane last wrote it (ms since the epoch); null: its content was already right */
  readonly writtenAt: number | null;
  readonly checkedAt: number;
}

/**
 * The file's lines: `name:{SCHEME}hash:uid:gid:gecos:home:shell:extra` with uid and gid empty
 * (Dovecot's mail_uid and mail_gid apply) and, with the Maildir store, the user's Maildir as
 * home. A locked postmaster (store lmtp, no user claims it) has a password nothing matches.
 */
export function passwdContent(spec: NonNullable<DovecotSpec>): string {
  const home = (name: string) => (spec.mailRoot ? `${spec.mailRoot}/${name}` : '');
  const lines = [
    '# Written by mailplane from mailserver.yaml (mailboxes.dovecot.passwdFile) on every reload: edits here are replaced.',
    ...spec.users.map((u) => `${u.name}:{${DOVECOT_SCHEMES[u.scheme]}}${u.passwordHash.reveal()}::::${home(u.name)}::`),
    ...(spec.postmaster ? ['# postmaster@ (no user or alias claims it): its mail is stored, nobody logs in with it', 'postmaster:{CRYPT}!::::::'] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** Makes the file hold what the spec says; rewrites it only when its content differs. */
export async function applyPasswdFile(spec: NonNullable<DovecotSpec>, log: Logger): Promise<PasswdFileState> {
  const path = spec.passwdFile;
  const content = passwdContent(spec);
  const now = Date.now();
  const state = (writtenAt: number | null): PasswdFileState => ({ path, users: spec.users.length + (spec.postmaster ? 1 : 0), writtenAt, checkedAt: now });
  try {
    const dir = dirname(path);
    const made = await fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (made !== undefined && spec.gid !== null) await fs.chown(dir, -1, spec.gid);
    const current = await fs.readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw e;
    });
    if (current === content) {
      // the content is right: only its group and mode are put back when they were changed
      const st = await fs.stat(path);
      if ((st.mode & 0o7777) !== FILE_MODE) await fs.chmod(path, FILE_MODE);
      if (spec.gid !== null && st.gid !== spec.gid) await fs.chown(path, -1, spec.gid);
      return state(null);
    }
    const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}`);
    const fh = await fs.open(tmp, 'wx', FILE_MODE);
    try {
      await fh.chmod(FILE_MODE); // the umask applies to open's mode
      if (spec.gid !== null) await fh.chown(-1, spec.gid);
      await fh.writeFile(content);
      await fh.sync();
    } catch (e) {
      await fh.close();
      await fs.unlink(tmp).catch(() => {});
      throw e;
    }
    await fh.close();
    try {
      await fs.rename(tmp, path);
    } catch (e) {
      await fs.unlink(tmp).catch(() => {});
      throw e;
    }
    const d = await fs.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
    log.info("Dovecot's passwd-file written", { path, users: spec.users.length, replaced: current !== null });
    return state(now);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'EACCES' || err.code === 'EPERM'
        ? `permission denied (uid ${process.getuid?.()} must be able to write ${dirname(path)}${spec.gid !== null ? ` and give files to gid ${spec.gid}` : ''})`
        : err.message;
    throw new Error(`mailboxes.dovecot.passwdFile: cannot write ${path}: ${why}`, { cause: e });
  }
}
