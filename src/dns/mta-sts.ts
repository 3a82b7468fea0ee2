// The MTA-STS policy (RFC 8461 section 3.2) of our domains, derived from the config, and the id
// the `_mta-sts` TXT record carries (section 3.1). The id is a digest of the policy text, so it
// changes exactly when the policy does: senders refetch a policy only when the id changes.
// One policy serves every domain (mx is always our host name), so there is one id.
import { createHash } from 'node:crypto';
import type { DesiredState } from '../config/desired-state.js';

export type MtaStsMode = 'none' | 'testing' | 'enforce';

/** RFC 8461 section 3.2: max_age is at most 31557600 seconds (about a year). */
export const MTA_STS_MAX_AGE_LIMIT = 31_557_600;

export interface MtaStsPolicy {
  readonly mode: MtaStsMode;
  /** seconds */
  readonly maxAge: number;
  /** the host names of the mx: lines */
  readonly mx: readonly string[];
  /** the policy file's exact bytes, CRLF line ends (what https://mta-sts.<domain>/.well-known/mta-sts.txt serves) */
  readonly text: string;
  /** 1 to 32 letters and digits (RFC 8461 section 3.1): the first 32 hex digits of the text's sha256 */
  readonly id: string;
}

export function mtaStsPolicy(state: Pick<DesiredState, 'hostname' | 'mtaSts'>): MtaStsPolicy {
  const { mode, maxAge } = state.mtaSts;
  const mx = [state.hostname];
  const lines = ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`];
  const text = lines.map((l) => `${l}\r\n`).join('');
  return { mode, maxAge, mx, text, id: createHash('sha256').update(text).digest('hex').slice(0, 32) };
}
