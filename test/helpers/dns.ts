// A tiny authoritative DNS server on loopback UDP for MX delivery tests: answers MX, A and
// AAAA (and TXT, for DKIM keys; SRV and PTR, for `mailplane dns check`) from a table, NXDOMAIN
// for names it does not know. Nothing leaves the machine.
import { createSocket, type Socket } from 'node:dgram';

export interface Zone {
  mx?: Record<string, { priority: number; exchange: string }[]>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
  /** per name, its TXT records, each a list of character-strings (at most 255 bytes each) */
  txt?: Record<string, string[][]>;
  /** target '.' (or '') is the root: "service not available" (RFC 2782) */
  srv?: Record<string, { priority: number; weight: number; port: number; target: string }[]>;
  /** per reverse name (4.3.2.1.in-addr.arpa), the host names */
  ptr?: Record<string, string[]>;
  /** names that exist but have no record of the asked type answer NODATA */
  exists?: string[];
}

const TYPE = { A: 1, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33 } as const;

export class TestDns {
  private socket: Socket | null = null;
  port = 0;
  queries: string[] = [];

  constructor(public zone: Zone) {}

  async start(): Promise<this> {
    return this.startOn(0);
  }

  /** Binds a given port (to come back where the server under test expects it). */
  async startOn(port: number): Promise<this> {
    const s = createSocket('udp4');
    s.on('message', (msg, rinfo) => {
      const reply = this.answer(msg);
      if (reply) s.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => s.bind(port, '127.0.0.1', () => r()));
    this.port = s.address().port;
    this.socket = s;
    return this;
  }

  stop(): void {
    this.socket?.close();
    this.socket = null;
  }

  private answer(q: Buffer): Buffer | null {
    if (q.length < 12) return null;
    const id = q.readUInt16BE(0);
    let off = 12;
    const labels: string[] = [];
    while (off < q.length && q[off] !== 0) {
      const len = q[off]!;
      labels.push(q.subarray(off + 1, off + 1 + len).toString('ascii'));
      off += len + 1;
    }
    off++;
    const qtype = q.readUInt16BE(off);
    const question = q.subarray(12, off + 4);
    const name = labels.join('.').toLowerCase();
    this.queries.push(`${name}/${qtype}`);
    const answers: Buffer[] = [];
    const z = this.zone;
    const known = !!(z.mx?.[name] || z.a?.[name] || z.aaaa?.[name] || z.txt?.[name] || z.srv?.[name] || z.ptr?.[name] || z.exists?.includes(name));
    if (qtype === TYPE.MX) {
      for (const r of this.zone.mx?.[name] ?? []) {
        const ex = encodeName(r.exchange);
        const rdata = Buffer.concat([u16(r.priority), ex]);
        answers.push(Buffer.concat([u16(0xc00c), u16(TYPE.MX), u16(1), u32(60), u16(rdata.length), rdata]));
      }
    } else if (qtype === TYPE.A) {
      for (const ip of this.zone.a?.[name] ?? []) {
        const rdata = Buffer.from(ip.split('.').map(Number));
        answers.push(Buffer.concat([u16(0xc00c), u16(TYPE.A), u16(1), u32(60), u16(4), rdata]));
      }
    } else if (qtype === TYPE.AAAA) {
      for (const ip of this.zone.aaaa?.[name] ?? []) {
        answers.push(Buffer.concat([u16(0xc00c), u16(TYPE.AAAA), u16(1), u32(60), u16(16), ipv6Bytes(ip)]));
      }
    } else if (qtype === TYPE.SRV) {
      for (const r of this.zone.srv?.[name] ?? []) {
        const rdata = Buffer.concat([u16(r.priority), u16(r.weight), u16(r.port), encodeName(r.target)]);
        answers.push(Buffer.concat([u16(0xc00c), u16(TYPE.SRV), u16(1), u32(60), u16(rdata.length), rdata]));
      }
    } else if (qtype === TYPE.PTR) {
      for (const host of this.zone.ptr?.[name] ?? []) {
        const rdata = encodeName(host);
        answers.push(Buffer.concat([u16(0xc00c), u16(TYPE.PTR), u16(1), u32(60), u16(rdata.length), rdata]));
      }
    } else if (qtype === TYPE.TXT) {
      for (const strings of this.zone.txt?.[name] ?? []) {
        const rdata = Buffer.concat(strings.map((s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)])));
        answers.push(Buffer.concat([u16(0xc00c), u16(TYPE.TXT), u16(1), u32(60), u16(rdata.length), rdata]));
      }
    }
    const rcode = known ? 0 : 3; // NXDOMAIN
    const header = Buffer.concat([u16(id), u16(0x8400 | rcode), u16(1), u16(answers.length), u16(0), u16(0)]);
    return Buffer.concat([header, question, ...answers]);
  }
}

/** The 16 bytes of an IPv6 address (no embedded IPv4 form). */
function ipv6Bytes(ip: string): Buffer {
  const [head = '', tail] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return Buffer.concat(groups.map((g) => u16(parseInt(g, 16))));
}

function encodeName(name: string): Buffer {
  if (name === '' || name === '.') return Buffer.from([0]);
  const parts = name
    .replace(/\.$/, '')
    .split('.')
    .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}
const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
