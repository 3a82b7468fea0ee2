// Password hash formats we verify, and friendly refusals of those we do not.

export type HashScheme = 'bcrypt' | 'sha512-crypt' | 'sha256-crypt' | 'argon2id';

const SUPPORTED: readonly [HashScheme, RegExp][] = [
  ['bcrypt', /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/],
  ['sha512-crypt', /^\$6\$(rounds=\d+\$)?[^$:\s]{1,16}\$[./A-Za-z0-9]{86}$/],
  ['sha256-crypt', /^\$5\$(rounds=\d+\$)?[^$:\s]{1,16}\$[./A-Za-z0-9]{43}$/],
  ['argon2id', /^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/],
];

const HINT = 'produce a supported hash with `mailplane hash-password`, `htpasswd -nbB user` (bcrypt) or `mkpasswd -m sha-512`';

const REFUSED: readonly [RegExp, string][] = [
  [/^\$apr1\$/, 'Apache MD5 ($apr1$) hashes are too weak and not supported'],
  [/^\$1\$/, 'MD5-crypt ($1$) hashes are too weak and not supported'],
  [/^\$y\$/, 'yescrypt ($y$) hashes are not supported'],
  [/^\$argon2(i|d)\$/, 'only the argon2id variant is supported'],
  [/^\{[A-Z0-9-]+\}/, 'Dovecot scheme prefixes ({SHA512-CRYPT}…) must be removed; keep only the $…$ hash'],
];

export type HashCheck = { ok: true; scheme: HashScheme } | { ok: false; plaintext: boolean; message: string };

export function classifyHash(hash: string): HashCheck {
  if (hash === '') return { ok: false, plaintext: false, message: `the password hash is empty; ${HINT}` };
  for (const [scheme, re] of SUPPORTED) if (re.test(hash)) return { ok: true, scheme };
  for (const [re, why] of REFUSED) if (re.test(hash)) return { ok: false, plaintext: false, message: `${why}; ${HINT}` };
  if (!hash.startsWith('$')) {
    return { ok: false, plaintext: true, message: `this looks like a plain-text password, which is never stored in the config; ${HINT}` };
  }
  return { ok: false, plaintext: false, message: `unrecognised or malformed password hash; ${HINT}` };
}
