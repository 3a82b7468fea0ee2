// Journal records: the files an accepted message must become (Maildir copies, queue entries),
// framed with lengths and a CRC so that a torn write at the end of a segment is recognised.
// Shared by the writer (main thread), the journal worker and recovery.
import { crc32 as zlibCrc32 } from 'node:zlib';

export type JournalRecord =
  /** a Maildir copy: <maildirs>/<user>/new/<name> */
  | { readonly k: 'm'; readonly user: string; readonly name: string; readonly data: Uint8Array }
  /** a queue entry: <queue>/<id>.eml (data) and <id>.json (json) */
  | { readonly k: 'q'; readonly id: string; readonly json: string; readonly data: Uint8Array };

const MAGIC = 0x4d504a31; // "MPJ1"

/** CRC-32 over several parts (zlib's, native). */
export function crc32(parts: readonly Uint8Array[]): number {
  let c = 0;
  for (const p of parts) c = zlibCrc32(p, c);
  return c >>> 0;
}

/** Encodes records as buffers ready for one writev. */
export function encode(records: readonly JournalRecord[]): Buffer[] {
  const out: Buffer[] = [];
  for (const r of records) {
    const header = Buffer.from(JSON.stringify(r.k === 'm' ? { k: 'm', u: r.user, n: r.name } : { k: 'q', id: r.id, j: r.json }));
    const data = r.data;
    const head = Buffer.allocUnsafe(8);
    head.writeUInt32BE(MAGIC, 0);
    head.writeUInt32BE(header.length, 4);
    const mid = Buffer.allocUnsafe(4);
    mid.writeUInt32BE(data.length, 0);
    const tail = Buffer.allocUnsafe(4);
    tail.writeUInt32BE(crc32([header, data]), 0);
    out.push(head, header, mid, Buffer.from(data.buffer, data.byteOffset, data.byteLength), tail);
  }
  return out;
}

/** Decodes every complete, intact record; stops at the first torn or corrupt one. */
export function decode(buf: Buffer): JournalRecord[] {
  const out: JournalRecord[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    if (buf.readUInt32BE(off) !== MAGIC) break;
    const hlen = buf.readUInt32BE(off + 4);
    if (off + 8 + hlen + 4 > buf.length) break;
    const header = buf.subarray(off + 8, off + 8 + hlen);
    const dlen = buf.readUInt32BE(off + 8 + hlen);
    const dstart = off + 12 + hlen;
    if (dstart + dlen + 4 > buf.length) break;
    const data = buf.subarray(dstart, dstart + dlen);
    if (buf.readUInt32BE(dstart + dlen) !== crc32([header, data])) break;
    let h: { k: string; u?: string; n?: string; id?: string; j?: string };
    try {
      h = JSON.parse(header.toString('utf8')) as typeof h;
    } catch {
      break;
    }
    if (h.k === 'm' && typeof h.u === 'string' && typeof h.n === 'string') out.push({ k: 'm', user: h.u, name: h.n, data });
    else if (h.k === 'q' && typeof h.id === 'string' && typeof h.j === 'string') out.push({ k: 'q', id: h.id, json: h.j, data });
    else break;
    off = dstart + dlen + 4;
  }
  return out;
}
