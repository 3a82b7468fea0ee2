// storage.mailboxGroup and storage.mailboxMode: the group resolved to a gid (names from
// /etc/group, read like any referenced file), modes checked for what mailplane itself needs, and
// — when the state will be run — whether this process may give files to the group at all.
import type { LoadContext } from './context.js';
import type { MailboxGroup } from './desired-state.js';
import type { StorageConfig } from './types.generated.js';

/** Where group names are looked up (a group only a directory service knows is given by its gid). */
export const GROUP_FILE = '/etc/group';

/** The gid of a group name in the text of /etc/group, or null. */
export function gidOf(groupFile: string, name: string): number | null {
  for (const line of groupFile.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid.trim())) return Number(gid.trim());
  }
  return null;
}

/** The mailbox group (null when unset, or when it cannot be resolved: then an error is recorded). */
export function checkStorage(ctx: LoadContext, storage: StorageConfig, opts: { forRun: boolean }, brokenOne: (path: string) => boolean): MailboxGroup | null {
  checkModes(ctx, storage, brokenOne);
  const g = storage.mailboxGroup;
  if (g === undefined || brokenOne('storage.mailboxGroup')) return null;
  const path = ['storage', 'mailboxGroup'];
  let group: MailboxGroup;
  if (typeof g === 'number') {
    group = { name: null, gid: g };
  } else {
    const text = ctx.readFile(path, GROUP_FILE);
    if (text === null) return null;
    const gid = gidOf(text, g);
    if (gid === null) {
      ctx.error('MP_MAILBOX_GROUP', path, `no group '${g}' in ${GROUP_FILE} on this machine; create it (groupadd --system ${g}), or give the numeric gid of a group that exists where mailplane runs`);
      return null;
    }
    group = { name: g, gid };
  }
  // Only root, or a member of the group, may give a file to it: without that every delivery to a
  // mailbox would fail. Only the process that will run the state can tell.
  const euid = process.geteuid?.();
  if (opts.forRun && euid !== undefined && euid !== 0) {
    const mine = new Set([process.getegid!(), ...process.getgroups!()]);
    if (!mine.has(group.gid)) {
      const shown = group.name ?? String(group.gid);
      ctx.error(
        'MP_MAILBOX_GROUP',
        path,
        `mailplane runs as uid ${euid}, which is not in group ${shown} (gid ${group.gid}) and cannot give mail files to it; add that user to the group (usermod -aG ${shown} <user>, or SupplementaryGroups=${shown} in the systemd unit) and restart`,
      );
    }
  }
  return group;
}

function checkModes(ctx: LoadContext, storage: StorageConfig, brokenOne: (path: string) => boolean): void {
  const m = storage.mailboxMode;
  if (!m || typeof m !== 'object') return;
  const withGroup = storage.mailboxGroup !== undefined;
  for (const kind of ['files', 'folders'] as const) {
    const v: unknown = m[kind];
    const path = ['storage', 'mailboxMode', kind];
    const dotted = `storage.mailboxMode.${kind}`;
    if (typeof v === 'number') {
      // YAML reads 0640 without quotes as the number 640: say so instead of "must be string"
      const i = ctx.issues.findIndex((x) => x.path === dotted && x.code === 'MP_TYPE');
      if (i >= 0) ctx.issues.splice(i, 1);
      const digits = /^[0-7]{3,4}$/.test(String(v)) ? `0${v}`.slice(-4) : kind === 'files' ? '0640' : '2770';
      ctx.error('MP_TYPE', path, `a mode must be written in quotes, e.g. "${digits}": YAML reads it without quotes as the number ${v}`);
      continue;
    }
    if (typeof v !== 'string' || brokenOne(dotted)) continue;
    const mode = parseInt(v, 8);
    const owner = kind === 'files' ? 0o600 : 0o700;
    if ((mode & owner) !== owner) {
      ctx.error('MP_INVALID_VALUE', path, `mailplane (the owner) needs ${kind === 'files' ? 'read and write (6)' : 'full access (7)'} in the owner digit; got "${v}"`);
    }
    const groupNeeds = kind === 'files' ? 0o040 : 0o010;
    if (withGroup && (mode & groupNeeds) === 0) {
      ctx.warn('MP_MAILBOX_GROUP', path, `with mailboxGroup set, the group cannot ${kind === 'files' ? 'read the message files' : 'enter the folders'} with mode "${v}"`);
    }
  }
}
