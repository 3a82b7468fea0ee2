// Accounts: local users (config and usersFile) with supported hashes and unique
// names/aliases, or LDAP settings with their secret files.
import { classifyHash } from './hashes.js';
import { displayPath, type LoadContext } from './context.js';
import type { LdapSettings, LocalUser } from './desired-state.js';
import { Secret } from './secret.js';
import { parseDuration } from './units.js';
import type { AccountsConfig, LdapAccountsConfig } from './types.generated.js';

const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,63})$/;

interface Claim {
  readonly where: string;
}

export function checkLocalUsers(ctx: LoadContext, accounts: AccountsConfig, broken: (prefix: string) => boolean): { users: LocalUser[]; usersFile: string | null } {
  const local = accounts.local !== null && typeof accounts.local === 'object' ? accounts.local : {};
  const users: LocalUser[] = [];
  const claimed = new Map<string, Claim>(); // local part → who has it

  const claim = (part: string, where: string, report: (msg: string) => void): boolean => {
    const prev = claimed.get(part);
    if (prev) {
      report(`'${part}' is already used by ${prev.where}`);
      return false;
    }
    claimed.set(part, { where });
    return true;
  };

  (Array.isArray(local.users) ? local.users : []).forEach((u, i) => {
    if (broken(`accounts.local.users[${i}]`)) return;
    const name = u.name.toLowerCase();
    const path = ['accounts', 'local', 'users', i];
    const okName = claim(name, `accounts.local.users[${i}]`, (m) => ctx.error('MP_DUPLICATE', [...path, 'name'], `user ${m}`));
    const hash = u.passwordHash;
    const check = classifyHash(hash);
    if (!check.ok) ctx.error(check.plaintext ? 'MP_PLAINTEXT_PASSWORD' : 'MP_HASH_FORMAT', [...path, 'passwordHash'], check.message);
    const aliases: string[] = [];
    (Array.isArray(u.aliases) ? u.aliases : []).forEach((a, j) => {
      const alias = a.toLowerCase();
      if (claim(alias, `accounts.local.users[${i}] (${name})`, (m) => ctx.error('MP_DUPLICATE', [...path, 'aliases', j], `alias ${m}`))) aliases.push(alias);
    });
    if (okName && check.ok) users.push({ name, passwordHash: new Secret(hash, 'hash'), scheme: check.scheme, aliases });
  });

  let usersFile: string | null = null;
  if (local.usersFile !== undefined && !broken('accounts.local.usersFile')) {
    usersFile = ctx.resolvePath(local.usersFile);
    const text = ctx.readFile(['accounts', 'local', 'usersFile'], local.usersFile);
    if (text !== null) users.push(...parseUsersFile(ctx, displayPath(usersFile), text, claim));
  }

  if (!broken('accounts') && !claimed.has('postmaster')) {
    ctx.warn(
      'MP_NO_POSTMASTER',
      ['accounts'],
      "no user or alias receives postmaster@ (RFC 5321 requires it), so its mail goes to a mailbox of its own, <dataDir>/mail/postmaster, that nobody logs in to; add 'postmaster' to a user's aliases",
      'key',
    );
  }
  return { users, usersFile };
}

function parseUsersFile(ctx: LoadContext, file: string, text: string, claim: (part: string, where: string, report: (msg: string) => void) => boolean): LocalUser[] {
  const out: LocalUser[] = [];
  text.split(/\r?\n/).forEach((raw, idx) => {
    const line = idx + 1;
    const trimmed = raw.trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const col = raw.indexOf(trimmed) + 1;
    const at = (c: number) => ({ file, line, col: c });
    const sep = trimmed.indexOf(':');
    if (sep <= 0) {
      ctx.addAt('error', 'MP_USERS_FILE', at(col), '', 'expected "name:hash"');
      return;
    }
    const name = trimmed.slice(0, sep);
    const hash = trimmed.slice(sep + 1).trim();
    if (!NAME_RE.test(name)) {
      ctx.addAt('error', 'MP_USERS_FILE', at(col), '', `'${name}' is not a valid user name (letters, digits, ., _ or -)`);
      return;
    }
    const check = classifyHash(hash);
    if (!check.ok) {
      ctx.addAt('error', check.plaintext ? 'MP_PLAINTEXT_PASSWORD' : 'MP_HASH_FORMAT', at(col + sep + 1), '', `user ${name}: ${check.message}`);
      return;
    }
    const lower = name.toLowerCase();
    if (claim(lower, `${file}:${line}`, (m) => ctx.addAt('error', 'MP_DUPLICATE', at(col), '', `user ${m}`))) {
      out.push({ name: lower, passwordHash: new Secret(hash, 'hash'), scheme: check.scheme, aliases: [] });
    }
  });
  return out;
}

export function checkLdap(ctx: LoadContext, l: LdapAccountsConfig): LdapSettings {
  const base = ['accounts', 'ldap'];
  if (l.url.startsWith('ldaps://') && l.startTls) {
    ctx.error('MP_LDAP', [...base, 'startTls'], 'startTls upgrades a plain ldap:// connection; an ldaps:// URL is already encrypted');
  }
  if (l.url.startsWith('ldap://') && !l.startTls && !/^ldap:\/\/(127\.|localhost|\[::1\])/.test(l.url)) {
    ctx.warn('MP_LDAP', [...base, 'url'], 'passwords would travel to the directory in clear text; use ldaps:// or startTls: true');
  }
  if (l.bindPasswordFile !== undefined && l.bindDn === undefined) {
    ctx.error('MP_LDAP', [...base, 'bindPasswordFile'], 'bindPasswordFile needs bindDn (the account the password belongs to)', 'key');
  }
  if (l.bindDn !== undefined && l.bindPasswordFile === undefined) {
    ctx.error('MP_SECRET_SOURCE', [...base, 'bindDn'], 'bindDn needs bindPasswordFile (the service account password)', 'key');
  }
  let bindPassword: Secret | null = null;
  if (l.bindPasswordFile !== undefined) {
    const text = ctx.readFile([...base, 'bindPasswordFile'], l.bindPasswordFile);
    if (text !== null) {
      const pw = text.replace(/\r?\n$/, '');
      if (!pw) ctx.error('MP_SECRET_SOURCE', [...base, 'bindPasswordFile'], 'password file is empty');
      bindPassword = new Secret(pw, 'password');
    }
  }
  let caPem: string | null = null;
  if (l.caFile !== undefined) {
    caPem = ctx.readFile([...base, 'caFile'], l.caFile);
    if (caPem !== null && !caPem.includes('-----BEGIN CERTIFICATE-----')) {
      ctx.error('MP_TLS_FILE', [...base, 'caFile'], 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
    }
  }
  return {
    url: l.url.replace(/\/$/, ''),
    startTls: l.startTls ?? false,
    caFile: l.caFile !== undefined ? ctx.resolvePath(l.caFile) : null,
    caPem,
    bindDn: l.bindDn ?? null,
    bindPasswordFile: l.bindPasswordFile !== undefined ? ctx.resolvePath(l.bindPasswordFile) : null,
    bindPassword,
    userBase: l.userBase,
    userFilter: l.userFilter!,
    aliasAttributes: l.aliasAttributes!,
    timeoutMs: parseDuration(l.timeout!),
    cacheTtlMs: parseDuration(l.cacheTtl!),
    poolSize: l.poolSize!,
  };
}
