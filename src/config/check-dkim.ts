// dkim.keys: each key's domain one of ours, each domain+selector once, each key file read and
// checked like the TLS files (parsed, of a type and size DKIM verifiers accept, no known
// weakness: dkim/key.ts). A key that fails is an error at its privateKeyFile: the config is
// refused, so on a reload the previous key keeps signing and /status says why.
import { readDkimKey, DkimKeyError } from '../dkim/key.js';
import { normalizeDomain } from './check-names.js';
import type { LoadContext } from './context.js';
import type { DkimKey } from './desired-state.js';
import type { DkimConfig } from './types.generated.js';

/**
 * The usable keys. `domains` are ours (normalized), or null when they are broken themselves
 * (then a key's domain is not judged against them).
 */
export function checkDkim(ctx: LoadContext, dkim: DkimConfig, domains: readonly string[] | null, broken: (prefix: string) => boolean): DkimKey[] {
  const keys = Array.isArray(dkim.keys) ? dkim.keys : [];
  const out: DkimKey[] = [];
  const seen = new Map<string, number>();
  keys.forEach((k, i) => {
    if (broken(`dkim.keys[${i}]`) || k === null || typeof k !== 'object') return;
    const at = (key: string) => ['dkim', 'keys', i, key];
    let ok = true;
    const domain = normalizeDomain(k.domain);
    if (!domain) {
      ctx.error('MP_INVALID_VALUE', at('domain'), `'${k.domain}' is not a valid domain name (expected something like example.com)`);
      ok = false;
    } else if (domains && !domains.includes(domain)) {
      ctx.error('MP_DKIM_DOMAIN', at('domain'), `'${k.domain}' is not one of domains (${domains.join(', ')}): mailplane signs only mail from its own domains`);
      ok = false;
    }
    const selector = k.selector.toLowerCase();
    if (domain) {
      const id = `${selector}._domainkey.${domain}`;
      const first = seen.get(id);
      if (first !== undefined) {
        ctx.error('MP_DUPLICATE', at('selector'), `selector '${k.selector}' of ${domain} duplicates dkim.keys[${first}] (one key per domain and selector)`);
        ok = false;
      } else {
        seen.set(id, i);
      }
    }
    const pem = ctx.readFile(at('privateKeyFile'), k.privateKeyFile);
    if (pem === null) return;
    try {
      const { material, warnings } = readDkimKey(pem);
      for (const w of warnings) ctx.warn('MP_DKIM_KEY_WEAK', at('privateKeyFile'), w);
      if (ok && domain) out.push({ domain, selector, keyFile: ctx.resolvePath(k.privateKeyFile), material });
    } catch (e) {
      if (!(e instanceof DkimKeyError)) throw e;
      ctx.error('MP_DKIM_KEY', at('privateKeyFile'), e.message);
    }
  });
  return out;
}
