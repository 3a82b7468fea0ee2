// Journal records, framed with lengths and a CRC so that a torn write at the end of a segment is
// recognised. One record per accepted message: the file it becomes (its bytes, or the spool file
// that already holds them) and every place that file goes — each local mailbox and the queue —
// as hard links to one inode, so a body is written once however many places it goes to.
// Shared by the writer (main thread), the journal worker and recovery.
import { crc32 as zlibCrc32 } from 'node:zlib';

export interface FileRecord {
  readonly k: 'f';
  /** the file's name in every Maildir (unique, with ,S=<size>) */
  readonly name: string;
  /** mailboxes (Maildir names) that receive it in new/ */
  readonly users: readonly string[];
  /** a queue entry: <queue>/<id>.eml (the same file) and <id>.json */
  readonly queue: { readonly id: string; readonly json: string } | null;
  /** the file's bytes; empty when they are in the spool file */
  readonly data: Uint8Array;
  /** name of the spool file (fdatasync'ed before the record is written) holding the bytes */
  readonly spool: string | null;
}

export type JournalRecord = FileRecord;

const MAGIC = 0x4d504a31; // "MPJ1"

/**
 * CRC-32 over several parts (zlib's, native). Empty parts are skipped: an empty array whose
 * buffer was ever wrapped (Buffer.from(arrayBuffer)) reaches zlib as a null pointer, and zlib's
 * crc32 of a null pointer is 0, not the CRC so far (the same EMPTY framed twice got CRC 0, and
 * recovery stopped at that record).
 */
export function crc32(parts: readonly Uint8Array[]): number {
  let c = 0;
  for (const p of parts) if (p.length) c = zlibCrc32(p, c);
  return c >>> 0;
}

/** Encodes records as buffers ready for one writev. */
export function encode(records: readonly JournalRecord[]): Buffer[] {
  const out: Buffer[] = [];
  for (const r of records) out.push(...frame({ k: 'f', n: r.name, u: r.users, q: r.queue ? { id: r.queue.id, j: r.queue.json } : null, s: r.spool }, r.data));
  return out;
}

/** One record's frame: magic, header length, header (JSON), data length, data, CRC. */
export function frame(header: object, data: Uint8Array): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE(MAGIC, 0);
  head.writeUInt32BE(h.length, 4);
  const mid = Buffer.allocUnsafe(4);
  mid.writeUInt32BE(data.length, 0);
  const tail = Buffer.allocUnsafe(4);
  tail.writeUInt32BE(crc32([h, data]), 0);
  return [head, h, mid, Buffer.from(data.buffer, data.byteOffset, data.byteLength), tail];
}

interface Header {
  k: string;
  n?: string;
  u?: unknown;
  q?: { id?: unknown; j?: unknown } | null;
  s?: unknown;
  id?: string;
  j?: string;
}

/**
 * Decodes every complete, intact record; stops at the first torn or corrupt one. Records of the
 * earlier format (one per Maildir copy, 'm', and per queue entry, 'q') read as file records.
 */
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
    let h: Header;
    try {
      h = JSON.parse(header.toString('utf8')) as Header;
    } catch {
      break;
    }
    const r = record(h, data);
    if (!r) break;
    out.push(r);
    off = dstart + dlen + 4;
  }
  return out;
}

function record(h: Header, data: Buffer): JournalRecord | null {
  if (h.k === 'f' && typeof h.n === 'string' && Array.isArray(h.u) && h.u.every((u) => typeof u === 'string')) {
    const q = h.q && typeof h.q.id === 'string' && typeof h.q.j === 'string' ? { id: h.q.id, json: h.q.j } : null;
    if (h.q && !q) return null;
    if (h.s !== null && typeof h.s !== 'string') return null;
    return { k: 'f', name: h.n, users: h.u, queue: q, data, spool: h.s };
  }
  // the earlier format
  if (h.k === 'm' && typeof (h as { u?: unknown }).u === 'string' && typeof h.n === 'string') return { k: 'f', name: h.n, users: [h.u as string], queue: null, data, spool: null };
  if (h.k === 'q' && typeof h.id === 'string' && typeof h.j === 'string') return { k: 'f', name: `${h.id}.eml`, users: [], queue: { id: h.id, json: h.j }, data, spool: null };
  return null;
}
