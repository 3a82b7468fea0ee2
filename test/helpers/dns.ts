// A tiny authoritative DNS server on loopback UDP for MX delivery tests: answers MX, A and
// AAAA (and TXT, for DKIM keys) from a table, NXDOMAIN for names it does not know. Nothing
// leaves the machine.
import { createSocket, type Socket } from 'node:dgram';

export interface Zone {
  mx?: Record<string, { priority: number; exchange: string }[]>;
  a?: Record<string, string[]>;
  /** per name, its TXT records, each a list of character-strings (at most 255 bytes each) */
  txt?: Record<string, string[][]>;
  /** names that exist but have no record of the asked type answer NODATA */
  exists?: string[];
}

const TYPE = { A: 1, MX: 15, TXT: 16, AAAA: 28 } as const;

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
    const known = !!(this.zone.mx?.[name] || this.zone.a?.[name] || this.zone.txt?.[name] || this.zone.exists?.includes(name));
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
