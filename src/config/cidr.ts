// IP ranges of trusted clients: parsing, matching, and telling private from public space.
import { BlockList, isIP } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  readonly address: string; // network address, canonical
  readonly prefix: number;
  readonly hostBitsSet: boolean;
}

/** Parses "10.0.0.5", "10.0.0.0/8" or "fd00::/8"; throws with a message for people. */
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
  const masked = mask(bytes, prefix);
  return {
    family,
    address: fromBytes(masked, family),
    prefix,
    hostBitsSet: !bytes.every((b, i) => b === masked[i]),
  };
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/** A matcher over a list of ranges; IPv4-mapped IPv6 client addresses match IPv4 ranges. */
export class AddressSet {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(ranges: readonly Cidr[]) {
    for (const r of ranges) this.list.addSubnet(r.address, r.prefix, r.family === 4 ? 'ipv4' : 'ipv6');
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

export function unmapV4(address: string): string {
  const m = address.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i);
  return m?.[1] ?? address;
}

// Private, loopback, link-local, CGNAT and documentation space.
const NON_PUBLIC_BLOCKS = [
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
].map((text) => new AddressSet([parseCidr(text)]));

/** True when the whole range lies inside one non-public block. */
export function isNonPublic(c: Cidr): boolean {
  const last = lastAddress(c);
  return NON_PUBLIC_BLOCKS.some((block) => block.has(c.address) && block.has(last));
}

function lastAddress(c: Cidr): string {
  const bytes = toBytes(c.address, c.family);
  const bits = bytes.length * 8;
  for (let i = c.prefix; i < bits; i++) bytes[i >> 3]! |= 0x80 >> (i & 7);
  return fromBytes(bytes, c.family);
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
