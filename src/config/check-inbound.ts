// inbound: settings that validate but cannot work as written, and the spam filter's secret.
import type { LoadContext } from './context.js';
import type { SpamFilterState } from './desired-state.js';
import { Secret } from './secret.js';
import type { InboundConfig } from './types.generated.js';
import { parseDuration, parseSize } from './units.js';

/** Checks inbound; returns the spam filter as the state holds it (null: none configured). */
export function checkInbound(ctx: LoadContext, i: InboundConfig): SpamFilterState | null {
  const c = i.checks ?? {};
  if ((c.arcTrustedSealers ?? []).length && c.arc !== true) {
    ctx.warn('MP_INBOUND', ['inbound', 'checks', 'arcTrustedSealers'], 'trusted ARC sealers are only consulted with inbound.checks.arc: true (ARC chains are not validated now)');
  }
  const f = i.spamFilter;
  if (!f) return null;
  const path = ['inbound', 'spamFilter'];
  let password: Secret | null = null;
  if (f.passwordFile !== undefined) {
    const text = ctx.readFile([...path, 'passwordFile'], f.passwordFile);
    if (text !== null) {
      const pw = text.replace(/\r?\n$/, '');
      if (!pw) ctx.error('MP_SECRET_SOURCE', [...path, 'passwordFile'], 'password file is empty');
      else if (/[\r\n]/.test(pw)) ctx.error('MP_SECRET_SOURCE', [...path, 'passwordFile'], 'the password must be one line (it is sent in an HTTP header)');
      password = new Secret(pw, 'password');
    }
  }
  const url = f.url.replace(/\/+$/, '');
  try {
    new URL(`${url}/checkv2`);
  } catch {
    ctx.error('MP_INVALID_VALUE', [...path, 'url'], `'${f.url}' is not a usable URL`);
  }
  return {
    type: 'rspamd',
    url,
    password,
    timeoutMs: parseDuration(f.timeout!),
    onError: f.onError!,
    maxSize: parseSize(f.maxSize!),
    scanSubmissions: f.scanSubmissions!,
  };
}
