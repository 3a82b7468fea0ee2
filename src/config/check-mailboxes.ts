// mailboxes: where local mail is stored (Maildir, or an LMTP server) and the passwd-file written
// for Dovecot. The LMTP address is parsed here, once: host:port or an absolute unix socket path.
import { isIP } from 'node:net';
import { isAbsolute, relative } from 'node:path';
import type { LoadContext } from './context.js';
import type { LmtpTarget, MailboxesState } from './desired-state.js';
import type { MailboxesConfig } from './types.generated.js';

const HOST_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** An LMTP address as written, parsed; a string saying what is wrong with it otherwise. */
export function parseLmtpAddress(text: string): LmtpTarget | string {
  const t = text.trim();
  if (t.startsWith('/')) return t.includes('\0') ? 'a socket path cannot contain NUL' : { path: t };
  if (!t.includes(':') && (t.includes('/') || t.startsWith('.'))) return `'${t}' is a relative path: a unix socket must be given by its absolute path`;
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(t) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(t);
  if (!m) {
    if (isIP(t) || /^[^:\s/]+$/.test(t)) return `'${t}' has no port: give host:port, such as ${isIP(t) === 6 ? `[${t}]` : t}:24`;
    return `'${t}' is neither host:port (127.0.0.1:24, [::1]:24, dovecot:24) nor the absolute path of a unix socket (/run/dovecot/lmtp)`;
  }
  const host = m[1]!;
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535)) return `port ${m[2]} is out of range (1-65535)`;
  if (
    t.startsWith('[')
      ? isIP(host) !== 6
      : !isIP(host) &&
        !(
          host.length <= 253 &&
          host
            .replace(/\.$/, '')
            .split('.')
            .every((l) => HOST_LABEL.test(l))
        )
  ) {
    return `'${host}' is not an IP address or a host name`;
  }
  return { host: host.toLowerCase(), port };
}

/** How an LMTP target is shown: host:port, [v6]:port, or the socket path. */
export function formatLmtpTarget(t: LmtpTarget): string {
  if ('path' in t) return t.path;
  return isIP(t.host) === 6 ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

export function checkMailboxes(ctx: LoadContext, m: MailboxesConfig, opts: { accountsType: 'local' | 'ldap'; dataDir: string | null }, brokenOne: (path: string) => boolean): MailboxesState | null {
  if (brokenOne('mailboxes')) return null;
  const store = m.store ?? 'maildir';
  let lmtp: LmtpTarget | null = null;
  let ok = true;
  if (m.lmtp?.address !== undefined) {
    const parsed = parseLmtpAddress(m.lmtp.address);
    if (typeof parsed === 'string') {
      ctx.error('MP_MAILBOXES', ['mailboxes', 'lmtp', 'address'], parsed);
      ok = false;
    } else lmtp = parsed;
    if (ok && store === 'maildir') {
      ctx.warn(
        'MP_MAILBOXES',
        ['mailboxes', 'lmtp'],
        'mailboxes.store is maildir: local mail is written into the Maildirs, and this LMTP server only gets what was queued for it before (set store: lmtp to deliver there)',
        'key',
      );
    }
  } else if (store === 'lmtp') {
    ctx.error('MP_MAILBOXES', ['mailboxes', 'store'], 'store: lmtp needs mailboxes.lmtp.address: the LMTP server local mail is delivered to (host:port, or the path of a unix socket)');
    ok = false;
  }
  let passwdFile: string | null = null;
  const file = m.dovecot?.passwdFile;
  if (file !== undefined) {
    const path = ['mailboxes', 'dovecot', 'passwdFile'];
    passwdFile = ctx.resolvePath(file);
    if (opts.accountsType === 'ldap') {
      ctx.error('MP_MAILBOXES', path, 'with accounts.type: ldap there are no local users to write: give Dovecot the directory itself (passdb and userdb ldap, see docs/dovecot.md)');
      ok = false;
    }
    const mail = opts.dataDir === null ? null : `${opts.dataDir}/mail`;
    if (mail !== null) {
      const rel = relative(mail, passwdFile);
      if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) {
        ctx.error('MP_MAILBOXES', path, `${passwdFile} lies inside the Maildirs (${mail}), which the mailbox group reads and Dovecot manages: put it beside them, e.g. ${opts.dataDir}/dovecot/passwd`);
        ok = false;
      }
    }
  }
  return ok ? { store, lmtp, passwdFile } : null;
}
