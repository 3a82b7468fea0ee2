// Plain-text passwords anywhere in the file: a dedicated error that says what to use instead
// (replacing the generic "unknown key" finding for the same key).
import type { LoadContext } from './context.js';
import { dottedPath } from './issues.js';

const PLAIN_KEYS = new Set(['password', 'pass', 'passwd', 'secret', 'bindPassword', 'plainPassword', 'passwordPlain', 'cleartextPassword']);

export function checkPlaintextPasswords(ctx: LoadContext): void {
  for (const path of ctx.source.findKeys(PLAIN_KEYS)) {
    const dotted = dottedPath(path);
    const parent = dottedPath(path.slice(0, -1));
    const advice = /accounts\.local\.users/.test(parent)
      ? 'use passwordHash with a hash from `mailplane hash-password`'
      : /relay\.auth/.test(parent)
        ? 'put the password in a file and use passwordFile, or use passwordEnv'
        : /accounts\.ldap/.test(parent)
          ? 'put the password in a file and use bindPasswordFile'
          : 'reference a hash or a secret file instead';
    // drop the schema's "unknown key" for this key and "missing passwordHash/passwordFile" for
    // its object: this message says more
    for (let i = ctx.issues.length - 1; i >= 0; i--) {
      const f = ctx.issues[i]!;
      const unknown = f.code === 'MP_UNKNOWN_KEY' && f.path === dotted;
      const missing = f.code === 'MP_MISSING_KEY' && f.path === parent && /'password/.test(f.message);
      if (unknown || missing) ctx.issues.splice(i, 1);
    }
    ctx.error('MP_PLAINTEXT_PASSWORD', path, `plain-text passwords are not allowed in this file; ${advice}`, 'key');
  }
}
