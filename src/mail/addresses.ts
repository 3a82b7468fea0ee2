// Splitting envelope addresses for policy decisions. The domain is what follows the last '@';
// everything before it is the local part, quotes, '%', '!' and further '@' included, so that
// such tricks can only ever name an unknown local user, never another destination.
import { domainToASCII } from 'node:url';

export interface SplitAddress {
  readonly local: string;
  /** ASCII, lower case, without a trailing dot; '' when there is no domain */
  readonly domain: string;
  /** a domain literal such as [192.0.2.1] */
  readonly literal: boolean;
}

export function splitAddress(address: string): SplitAddress {
  const at = address.lastIndexOf('@');
  if (at < 0) return { local: address, domain: '', literal: false };
  const local = address.slice(0, at);
  const rawDomain = address.slice(at + 1).trim();
  if (rawDomain.startsWith('[')) return { local, domain: rawDomain.toLowerCase(), literal: true };
  const stripped = rawDomain.replace(/\.$/, '');
  const domain = isAscii(stripped) ? stripped.toLowerCase() : domainToASCII(stripped).toLowerCase();
  return { local, domain, literal: false };
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
