// IP ranges of trusted clients: parsing, matching, telling private from public space, and
// measuring how much of the internet a set of ranges trusts.
//
// IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 2.5.5.2) is IPv4: a dual-stack listener sees an
// IPv4 client as ::ffff:a.b.c.d. A range written inside ::ffff:0:0/96 is turned into the IPv4
// range it means when it is parsed, and an IPv6 range with a shorter prefix that contains
// ::ffff:0:0/96 (::/1, ::/64, ::/0) covers all of IPv4 — both when clients are matched and when
// the open-relay check measures what the trusted ranges cover.
import { BlockList, isIP } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  readonly address: string; // network address, canonical
  readonly prefix: number;
  readonly hostBitsSet: boolean;
}

/** An inclusive interval [first, last] of addresses as numbers (32 bits for IPv4, 128 for IPv6). */
export type Span = readonly [bigint, bigint];

const ALL_V4: Span = [0n, (1n << 32n) - 1n];
const ALL_V6: Span = [0n, (1n << 128n) - 1n];
/** ::ffff:0:0/96, the IPv4-mapped block: IPv4 space, counted as such. */
const MAPPED_V6: Span = [0xffffn << 32n, (0xffffn << 32n) | 0xffffffffn];

/**
 * Parses "10.0.0.5", "10.0.0.0/8" or "fd00::/8"; throws with a message for people. A range inside
 * ::ffff:0:0/96 comes back as the IPv4 range it means (::ffff:10.0.0.0/104 is 10.0.0.0/8).
 */
export function parseCidr(text: string): Cidr {
  const [addr = '', len, extra] = text.trim().split('/');
  if (extra !== undefined) throw new Error(`'${text}' is not an IP address or CIDR range`);
  const family = isIP(addr);
  if (family !== 4 && family !== 6) throw new Error(`'${text}' is not an IP address or CIDR range`);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (len !== undefined) {
    if (!/^\d{1,3}$/.test(len) || Number(len) > max) throw new Error(`'${text}': prefix length must be 0 to ${max}`);
    prefix = Number(len);
  }
  const bytes = toBytes(addr, family);
  if (family === 6 && prefix >= 96 && isMappedBytes(bytes)) return fromParts(bytes.slice(12), 4, prefix - 96);
  return fromParts(bytes, family, prefix);
}

function fromParts(bytes: number[], family: 4 | 6, prefix: number): Cidr {
  const masked = mask(bytes, prefix);
  return {
    family,
    address: fromBytes(masked, family),
    prefix,
    hostBitsSet: !bytes.every((b, i) => b === masked[i]),
  };
}

/** The range as IPv4 when it lies inside ::ffff:0:0/96 (parseCidr already does this). */
function unmapCidr(c: Cidr): Cidr {
  if (c.family !== 6 || c.prefix < 96) return c;
  const bytes = toBytes(c.address, 6);
  return isMappedBytes(bytes) ? fromParts(bytes.slice(12), 4, c.prefix - 96) : c;
}

/** An IPv6 range that contains the whole IPv4-mapped block ::ffff:0:0/96, so all of IPv4. */
export function coversMappedV4(c: Cidr): boolean {
  if (c.family !== 6 || c.prefix > 96) return false;
  const [lo, hi] = spanOf(c);
  return lo <= MAPPED_V6[0] && MAPPED_V6[1] <= hi;
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/**
 * A matcher over a list of ranges. IPv4-mapped client addresses are matched as IPv4, ranges
 * written in mapped form as the IPv4 ranges they are, and an IPv6 range that contains
 * ::ffff:0:0/96 matches every IPv4 client too: the same reading as the open-relay check.
 */
export class AddressSet {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(ranges: readonly Cidr[]) {
    for (const range of ranges) {
      const r = unmapCidr(range);
      this.list.addSubnet(r.address, r.prefix, r.family === 4 ? 'ipv4' : 'ipv6');
      if (coversMappedV4(r)) this.list.addSubnet('0.0.0.0', 0, 'ipv4');
    }
    this.size = ranges.length;
  }

  has(address: string): boolean {
    if (this.size === 0) return false;
    const plain = unmapV4(address);
    const family = isIP(plain);
    if (family === 0) return false;
    return this.list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** a.b.c.d for an IPv4-mapped address in any spelling (::ffff:a.b.c.d, ::ffff:7f00:1, …); others unchanged. */
export function unmapV4(address: string): string {
  const m = address.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i);
  if (m) return m[1]!;
  if (!/ffff/i.test(address) || isIP(address) !== 6) return address;
  const bytes = toBytes(address.replace(/%.*$/, ''), 6);
  return isMappedBytes(bytes) ? bytes.slice(12).join('.') : address;
}

// Private, loopback, link-local, CGNAT and documentation space.
const NON_PUBLIC_TEXT = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '::1/128',
  '::/128',
  'fc00::/7',
  'fe80::/10',
  '2001:db8::/32',
];

/** True when the range holds no public address (the same count as the open-relay check's). */
export function isNonPublic(c: Cidr): boolean {
  const cov = coverage([c]);
  return cov.publicV4 === 0n && cov.publicV6 === 0n;
}

// ---- Coverage: how much address space a set of ranges trusts, overlaps counted once ----

/**
 * The most public IPv4 space the trusted ranges may cover together: a /8 (16,777,216 addresses),
 * the largest single block ever assigned to one organisation (the legacy class A networks). More
 * than that is nobody's own network: the server would relay for a large part of the internet.
 */
export const MAX_PUBLIC_V4 = 1n << 24n;
/**
 * The most public IPv6 space the trusted ranges may cover together: a /32 (2^96 addresses), what
 * the regional registries allocate to a whole ISP at least; an organisation's site gets a /48.
 * More than that is more than a whole provider's customers, not a list of your own clients.
 */
export const MAX_PUBLIC_V6 = 1n << 96n;

/** What a set of ranges covers, each family merged (overlaps and adjacent ranges joined). */
export interface Coverage {
  /** IPv4 ranges, ranges written in IPv4-mapped form, and all of IPv4 for an IPv6 range holding ::ffff:0:0/96 */
  readonly v4: readonly Span[];
  readonly v6: readonly Span[];
  readonly allV4: boolean;
  readonly allV6: boolean;
  /** IPv4 addresses covered outside the non-public blocks */
  readonly publicV4: bigint;
  /** IPv6 addresses covered outside the non-public blocks and ::ffff:0:0/96 (which is IPv4) */
  readonly publicV6: bigint;
}

export function spanOf(c: Cidr): Span {
  const bytes = toBytes(c.address, c.family);
  let first = 0n;
  for (const b of bytes) first = (first << 8n) | BigInt(b);
  const hostBits = BigInt(bytes.length * 8 - c.prefix);
  return [first, first | ((1n << hostBits) - 1n)];
}

/** Sorted, disjoint, non-adjacent spans covering exactly the union of the input. */
export function mergeSpans(spans: Iterable<Span>): Span[] {
  const sorted = [...spans].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1n) {
      if (hi > last[1]) last[1] = hi;
    } else out.push([lo, hi]);
  }
  return out;
}

/** a minus b; both merged (mergeSpans). */
export function subtractSpans(a: readonly Span[], b: readonly Span[]): Span[] {
  const out: Span[] = [];
  for (const [lo, hi] of a) {
    let from = lo;
    for (const [blo, bhi] of b) {
      if (bhi < from || blo > hi) continue;
      if (blo > from) out.push([from, blo - 1n]);
      from = bhi + 1n;
      if (from > hi) break;
    }
    if (from <= hi) out.push([from, hi]);
  }
  return out;
}

export function spanSize(spans: readonly Span[]): bigint {
  return spans.reduce((n, [lo, hi]) => n + (hi - lo + 1n), 0n);
}

const NON_PUBLIC_CIDRS = NON_PUBLIC_TEXT.map(parseCidr);
const NON_PUBLIC_V4 = mergeSpans(NON_PUBLIC_CIDRS.filter((c) => c.family === 4).map(spanOf));
const NON_PUBLIC_V6 = mergeSpans([...NON_PUBLIC_CIDRS.filter((c) => c.family === 6).map(spanOf), MAPPED_V6]);

export function coverage(ranges: readonly Cidr[]): Coverage {
  const v4: Span[] = [];
  const v6: Span[] = [];
  for (const range of ranges) {
    const c = unmapCidr(range);
    if (c.family === 4) v4.push(spanOf(c));
    else {
      v6.push(spanOf(c));
      if (coversMappedV4(c)) v4.push(ALL_V4);
    }
  }
  const m4 = mergeSpans(v4);
  const m6 = mergeSpans(v6);
  const whole = (m: readonly Span[], all: Span) => m.length === 1 && m[0]![0] === all[0] && m[0]![1] === all[1];
  return {
    v4: m4,
    v6: m6,
    allV4: whole(m4, ALL_V4),
    allV6: whole(m6, ALL_V6),
    publicV4: spanSize(subtractSpans(m4, NON_PUBLIC_V4)),
    publicV6: spanSize(subtractSpans(m6, NON_PUBLIC_V6)),
  };
}

/** Why ranges would make an open relay, per family: all of it, or more public space than the limit. */
export interface OpenRelayFinding {
  readonly family: 4 | 6;
  readonly kind: 'all' | 'public';
  /** public addresses covered */
  readonly count: bigint;
}

/** At most one finding per family ('all' when the family is covered whole, else 'public' over the limit). */
export function openRelayFindings(cov: Coverage): OpenRelayFinding[] {
  const out: OpenRelayFinding[] = [];
  if (cov.allV4) out.push({ family: 4, kind: 'all', count: cov.publicV4 });
  else if (cov.publicV4 > MAX_PUBLIC_V4) out.push({ family: 4, kind: 'public', count: cov.publicV4 });
  if (cov.allV6) out.push({ family: 6, kind: 'all', count: cov.publicV6 });
  else if (cov.publicV6 > MAX_PUBLIC_V6) out.push({ family: 6, kind: 'public', count: cov.publicV6 });
  return out;
}

function isMappedBytes(bytes: readonly number[]): boolean {
  return bytes.length === 16 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

function mask(bytes: number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const bitsHere = Math.max(0, Math.min(8, prefix - i * 8));
    return b & (0xff << (8 - bitsHere)) & 0xff;
  });
}

function toBytes(addr: string, family: 4 | 6): number[] {
  if (family === 4) return addr.split('.').map(Number);
  let text = addr;
  const v4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4?.[1]) {
    const b = v4[1].split('.').map(Number);
    text = text.replace(v4[1], `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`);
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

function fromBytes(bytes: number[], family: 4 | 6): string {
  if (family === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // compress the longest run of zero groups
  let best = -1,
    bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
