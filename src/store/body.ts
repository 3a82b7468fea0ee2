// The body of a message while it is being received. Bodies up to MEMORY_THRESHOLD stay in
// memory, while the global MemoryBudget allows; anything else streams into a spool file under
// <dataDir>/spool/ as it arrives, so memory does not grow with message size or with the number
// of sessions. On the way in, line ends are normalized (a bare CR or LF
// becomes CRLF: what we store and relay never holds a line end a downstream parser could read
// differently) and every line's length is measured against the configured limit.
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { editHeaderSection, headerSectionEnd, isEmptyEdit, type HeaderEdit } from '../mail/header-edit.js';
import { advance, call } from './durable.js';

/**
 * Above this many bytes a message's body streams into a spool file as it arrives. Below it, the
 * body is handed to the journal worker whole: into the journal itself up to 64 KiB, beyond that
 * into a spool file the worker writes (so the event loop makes no file-system call for it).
 */
export const MEMORY_THRESHOLD = 1024 * 1024;
/** Bytes gathered for the spool file before they are written (in one writev). */
const FLUSH_BYTES = 128 * 1024;
/** Bytes not yet on disk before the sender is asked to wait. */
const SPOOL_BACKLOG = 256 * 1024;

const CR = 13;
const LF = 10;
const LF_ONLY = Buffer.from('\n');
const CR_ONLY = Buffer.from('\r');

/** Body bytes held in memory across all sessions of one data dir. */
export class MemoryBudget {
  used = 0;

  constructor(public limit: number) {}

  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

export interface BodyLimits {
  /** body bytes as received; beyond it nothing more is stored */
  readonly maxSize: number;
  /** octets per line, CRLF excluded */
  readonly maxLineLength: number;
}

/** What a finished body became: the whole file's bytes, or the spool file holding them. */
export type StoredBody =
  { readonly kind: 'memory'; readonly data: Buffer; readonly length: number } | { readonly kind: 'spool'; readonly file: string; readonly path: string; readonly length: number };

/** Line-end normalization and line lengths, across chunk boundaries. */
export class LineCheck {
  /** the last byte seen was a CR whose LF has not come yet */
  private pendingCR = false;
  private lineLength = 0;
  longest = 0;

  /** The chunk with every bare CR and bare LF turned into CRLF (the chunk itself when it had none). */
  normalize(chunk: Buffer): Buffer {
    return this.wellFormed(chunk) ? chunk : this.rewrite(chunk);
  }

  /**
   * The common case, found with native searches instead of a look at every byte: every LF
   * follows a CR and every CR precedes an LF. Measures the lines on the way; false (and nothing
   * measured) when the chunk needs rewriting.
   */
  private wellFormed(chunk: Buffer): boolean {
    const n = chunk.length;
    if (!n || (this.pendingCR && chunk[0] !== LF)) return false;
    let crs = 0;
    for (let i = chunk.indexOf(CR); i !== -1; i = chunk.indexOf(CR, i + 1)) {
      if (i + 1 < n && chunk[i + 1] !== LF) return false;
      crs++;
    }
    let line = this.lineLength;
    let longest = this.longest;
    let from = 0; // start of the current line in this chunk
    let pairs = 0;
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      if (i === 0 ? !this.pendingCR : chunk[i - 1] !== CR) return false;
      if (i > 0) pairs++;
      const len = line + Math.max(0, i - 1 - from);
      if (len > longest) longest = len;
      line = 0;
      from = i + 1;
    }
    const trailingCR = chunk[n - 1] === CR;
    if (pairs + (trailingCR ? 1 : 0) !== crs) return false;
    line += n - from - (trailingCR ? 1 : 0);
    if (line > longest) longest = line;
    this.pendingCR = trailingCR;
    this.lineLength = line;
    this.longest = longest;
    return true;
  }

  /** Byte by byte, for a chunk with a bare CR or LF (rare). */
  private rewrite(chunk: Buffer): Buffer {
    let parts: Buffer[] | null = null;
    let from = 0;
    let line = this.lineLength;
    let longest = this.longest;
    let cr = this.pendingCR;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (cr && b !== LF) {
        // a bare CR: the LF it lacks goes in before this byte
        parts ??= [];
        if (i > from) parts.push(chunk.subarray(from, i));
        parts.push(LF_ONLY);
        from = i;
        line = 0;
      }
      cr = false;
      if (b === CR) {
        cr = true;
      } else if (b === LF) {
        if (i === 0 ? !this.pendingCR : chunk[i - 1] !== CR) {
          parts ??= [];
          if (i > from) parts.push(chunk.subarray(from, i));
          parts.push(CR_ONLY);
          from = i;
        }
        line = 0;
      } else if (++line > longest) {
        longest = line;
      }
    }
    this.pendingCR = cr;
    this.lineLength = line;
    this.longest = longest;
    if (!parts) return chunk;
    if (from < chunk.length) parts.push(chunk.subarray(from));
    return Buffer.concat(parts);
  }

  /** What the end of the body still needs: the LF of a trailing bare CR. */
  finish(): Buffer | null {
    if (!this.pendingCR) return null;
    this.pendingCR = false;
    return LF_ONLY;
  }
}

/** 'received:' in lower case, the field name the header scan counts */
const RECEIVED = Buffer.from('received:');

/**
 * Counts the Received fields of a message's header section as it streams past (CRLF line ends,
 * as LineCheck leaves them), for loop detection at the end of DATA. Only the header section is
 * looked at: the scan stops at the empty line, so the body costs one boolean test per chunk.
 */
export class HeaderScan {
  /** Received fields seen so far */
  count = 0;
  /** the empty line that ends the header section has been seen */
  done = false;
  /** bytes of 'received:' matched at the start of the current line; -1: not a Received line */
  private matched = 0;

  feed(chunk: Buffer): void {
    if (this.done) return;
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.matched >= 0) {
        const b = chunk[i]!;
        if (this.matched === 0 && (b === CR || b === LF)) {
          this.done = true;
          return;
        }
        const want = RECEIVED[this.matched]!;
        if (b === want || (want !== 0x3a && (b | 0x20) === want)) {
          i++;
          if (++this.matched === RECEIVED.length) {
            this.count++;
            this.matched = -1;
          }
          continue;
        }
        this.matched = -1;
      }
      const lf = chunk.indexOf(LF, i);
      if (lf < 0) return; // the line goes on in the next chunk
      i = lf + 1;
      this.matched = 0;
    }
  }
}

const AUTH_RESULTS = 'authentication-results:';
const EMPTY_CHUNK = Buffer.alloc(0);
/** An Authentication-Results field held longer than this is judged on what was held. */
const MAX_HELD_FIELD = 64 * 1024;
const SP = 32;
const HT = 9;

/**
 * Removes, as the header section streams past, every Authentication-Results field whose
 * authserv-id is our host name (RFC 8601 §5: such a field from outside our trust boundary is a
 * forgery). Works on whole lines (line ends already CRLF): a field is held until its last
 * continuation line has passed, then dropped or let through. After the header section, chunks
 * pass untouched, without a copy.
 */
export class AuthResultsFilter {
  /** fields removed */
  removed = 0;
  private done = false;
  /** the start of a line that goes on in the next chunk */
  private carry: Buffer | null = null;
  /** the Authentication-Results field being held (complete lines) */
  private field: Buffer[] | null = null;
  private fieldBytes = 0;

  private readonly hostname: string;

  constructor(hostname: string) {
    this.hostname = hostname.toLowerCase().replace(/\.$/, '');
  }

  feed(input: Buffer): Buffer {
    if (this.done) return input;
    const chunk = this.carry ? Buffer.concat([this.carry, input]) : input;
    this.carry = null;
    // what goes on: runs of kept bytes (subarrays, no copy) and fields let through after holding
    const out: Buffer[] = [];
    let keepFrom = 0;
    const flushKept = (to: number) => {
      if (to > keepFrom) out.push(chunk.subarray(keepFrom, to));
      keepFrom = to;
    };
    let i = 0;
    while (i < chunk.length) {
      const lf = chunk.indexOf(LF, i);
      if (lf < 0) {
        flushKept(i);
        this.carry = Buffer.from(chunk.subarray(i));
        keepFrom = chunk.length;
        break;
      }
      const start = i;
      const first = chunk[start]!;
      i = lf + 1;
      if (first === SP || first === HT) {
        if (this.field) {
          flushKept(start);
          this.hold(chunk.subarray(start, i));
          keepFrom = i;
        }
        continue;
      }
      if (this.field) {
        flushKept(start);
        this.closeField(out);
      }
      if (first === CR || first === LF) {
        this.done = true;
        break;
      }
      if ((first | 0x20) === 0x61 && i - start >= AUTH_RESULTS.length && chunk.toString('latin1', start, start + AUTH_RESULTS.length).toLowerCase() === AUTH_RESULTS) {
        flushKept(start);
        this.field = [];
        this.fieldBytes = 0;
        this.hold(chunk.subarray(start, i));
        keepFrom = i;
      }
    }
    flushKept(chunk.length);
    if (out.length === 1) return out[0]!;
    return out.length ? Buffer.concat(out) : EMPTY_CHUNK;
  }

  /** What is still held at the end of the message (a header section without a body). */
  finish(): Buffer | null {
    const out: Buffer[] = [];
    this.closeField(out);
    if (this.carry) out.push(this.carry);
    this.carry = null;
    this.done = true;
    return out.length ? Buffer.concat(out) : null;
  }

  private hold(line: Buffer): void {
    this.field!.push(Buffer.from(line));
    this.fieldBytes += line.length;
  }

  /** Ends the held field: dropped when it claims our host name, else let through. */
  private closeField(out: Buffer[]): void {
    const f = this.field;
    if (!f) return;
    this.field = null;
    const text = Buffer.concat(f).toString('latin1', 0, Math.min(this.fieldBytes, MAX_HELD_FIELD));
    if (authservId(text.slice(AUTH_RESULTS.length)) === this.hostname) {
      this.removed++;
      return;
    }
    out.push(...f);
  }
}

/** The authserv-id of an Authentication-Results value (comments and folding skipped), lower case. */
export function authservId(value: string): string {
  let s = value.replace(/\r?\n/g, ' ');
  // leading CFWS: whitespace and (possibly nested) comments
  for (;;) {
    s = s.replace(/^[ \t]+/, '');
    if (s[0] !== '(') break;
    let depth = 0;
    let j = 0;
    for (; j < s.length; j++) {
      if (s[j] === '\\') j++;
      else if (s[j] === '(') depth++;
      else if (s[j] === ')' && --depth === 0) break;
    }
    s = s.slice(j + 1);
  }
  const m = /^"((?:[^"\\]|\\.)*)"|^[^\s;()]+/.exec(s);
  if (!m) return '';
  const id = m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[0];
  return id.toLowerCase().replace(/\.$/, '');
}

/** A header section longer than this is left as it is by an edit (no filter needs to edit such a message). */
const MAX_EDITED_HEADER = 1024 * 1024;

/** The message (whole, or at least its header section) with its header section edited: the parts to write. */
function editedMessage(msg: Buffer, edit: HeaderEdit): Buffer[] {
  const end = headerSectionEnd(msg) ?? (msg.length < MAX_EDITED_HEADER ? msg.length : null);
  if (end === null) return [msg];
  return [editHeaderSection(msg.subarray(0, end), edit), msg.subarray(end)];
}

/**
 * One message's body on its way in. `head` is what precedes the body in the stored file (our
 * trace headers). write() returns false when the caller should wait for `drained` before the
 * next chunk (the spool file is behind); finish() makes a spool file durable (fdatasync'ed).
 */
export class BodyWriter {
  /** raw body bytes received, as the client sent them (the size limit counts these) */
  size = 0;
  tooBig = false;
  readonly lines = new LineCheck();
  /** the Received fields of the message's header section (not of `head`) */
  readonly headers = new HeaderScan();
  private chunks: Buffer[] = [];
  private held = 0;
  private fd = -1;
  private opening: Promise<void> | null = null;
  private writing: Promise<void> = Promise.resolve();
  private backlog = 0;
  private written = 0;
  private failed: Error | null = null;
  private waiter: (() => void) | null = null;
  /** the body goes to a spool file (it is over the threshold, or the budget was spent) */
  private spooling = false;
  /** chunks gathered for the next write of the spool file */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** the spool file's name (a new one once rehead() rewrote it) */
  private spoolFile: string;
  private done = false;
  private aborted = false;

  constructor(
    private readonly head: Buffer,
    private readonly spool: { readonly dir: string; readonly file: string },
    private readonly budget: MemoryBudget,
    private readonly limits: BodyLimits,
    /** drops forged Authentication-Results fields on the way in (untrusted clients) */
    private readonly filter: AuthResultsFilter | null = null,
  ) {
    this.spoolFile = spool.file;
  }

  /** forged Authentication-Results fields removed from this message */
  get forgedAuthResults(): number {
    return this.filter?.removed ?? 0;
  }

  get spooled(): boolean {
    return this.spooling;
  }

  get lineTooLong(): boolean {
    return this.lines.longest > this.limits.maxLineLength;
  }

  /** Whether anything more is being stored (false once the message is over a limit). */
  private get storing(): boolean {
    return !this.tooBig && !this.lineTooLong && !this.failed;
  }

  write(raw: Buffer): boolean {
    if (this.done) return true;
    this.size += raw.length;
    if (this.size > this.limits.maxSize) this.tooBig = true;
    if (!this.storing) return this.discard();
    const normalized = this.lines.normalize(raw);
    const chunk = this.filter ? this.filter.feed(normalized) : normalized;
    if (!chunk.length) return true;
    this.headers.feed(chunk);
    if (!this.storing) return this.discard();
    if (!this.spooled && this.held + chunk.length <= MEMORY_THRESHOLD && this.budget.take(chunk.length)) {
      this.chunks.push(chunk);
      this.held += chunk.length;
      return true;
    }
    if (!this.spooled) this.startSpool();
    this.append(chunk);
    return this.backlog < SPOOL_BACKLOG;
  }

  /** Calls back once the spool file has caught up (at once when it has). */
  drained(cb: () => void): void {
    if (this.backlog < SPOOL_BACKLOG || !this.storing) return cb();
    this.waiter = cb;
  }

  /**
   * The stored form of the whole file (head + body). Call only when neither tooBig nor
   * lineTooLong; rejects when the spool file could not be written (disk full: a 452). `head`
   * replaces the head given at the start, for a body still in memory only (a spool file already
   * starts with it). `edit` changes the message's header section (a filter's verdict), for a
   * body in memory (see rehead() for a spool file).
   */
  async finish(head?: Buffer, edit?: HeaderEdit): Promise<StoredBody> {
    this.done = true;
    const tail = this.tail();
    if (!this.spooled) {
      const message = isEmptyEdit(edit) ? [...this.chunks, ...tail] : editedMessage(Buffer.concat([...this.chunks, ...tail]), edit!);
      const parts = [head ?? this.head, ...message];
      const length = parts.reduce((n, c) => n + c.length, 0);
      const data = Buffer.allocUnsafeSlow(length); // its own ArrayBuffer: transferred, not copied, to the journal
      let off = 0;
      for (const c of parts) off += c.copy(data, off);
      this.chunks = [];
      return { kind: 'memory', data, length };
    }
    for (const t of tail) this.append(t);
    this.flush();
    await this.writing;
    if (this.failed) {
      this.abort();
      throw this.failed;
    }
    try {
      await call(fs.fdatasync, this.fd);
      await call(fs.close, this.fd);
      this.fd = -1;
    } catch (e) {
      this.abort();
      throw e;
    }
    return { kind: 'spool', file: this.spoolFile, path: this.path, length: this.written };
  }

  /**
   * The message as received so far (without the head, line ends normalized) as a stream over
   * the chunks held, no copy; null once the body went to a spool file. Call at the end of DATA,
   * before finish().
   */
  message(): Readable | null {
    if (this.spooled) return null;
    this.chunks.push(...this.tail()); // finish() finds nothing left
    return Readable.from([...this.chunks], { objectMode: false });
  }

  /** The head the body was opened with (what a spool file starts with). */
  get originalHead(): Buffer {
    return this.head;
  }

  get headLength(): number {
    return this.head.length;
  }

  /** Bytes of the message held in memory (after message(): what its stream yields). */
  messageLength(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }

  /**
   * The message as stored in the finished spool file (without the head), streamed from disk;
   * null for a body in memory. Call after finish().
   */
  spooledMessage(stored: StoredBody): Readable | null {
    if (stored.kind !== 'spool') return null;
    return fs.createReadStream(stored.path, { start: this.head.length });
  }

  /**
   * A finished spool file with `head` in place of the head it started with: a new spool file
   * (the head, then the message copied from the old file, fdatasync'ed), the old one removed.
   * Costs one more write of the message; only a spooled body that gets headers after its checks
   * pays it.
   */
  async rehead(stored: StoredBody & { kind: 'spool' }, head: Buffer, edit?: HeaderEdit): Promise<StoredBody> {
    const file = `${stored.file}.h`;
    const path = `${this.spool.dir}/${file}`;
    const out = await fs.promises.open(path, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600);
    let length = 0;
    try {
      const writeAll = async (b: Buffer) => {
        for (let off = 0; off < b.length;) off += (await out.write(b, off, b.length - off, length + off)).bytesWritten;
        length += b.length;
      };
      await writeAll(head);
      // the header section is gathered (up to MAX_EDITED_HEADER) to be edited, the rest copied as it comes
      let gathered: Buffer[] | null = isEmptyEdit(edit) ? null : [];
      let gatheredBytes = 0;
      for await (const chunk of fs.createReadStream(stored.path, { start: this.head.length, highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
        if (!gathered) {
          await writeAll(chunk);
          continue;
        }
        gathered.push(chunk);
        gatheredBytes += chunk.length;
        const all = Buffer.concat(gathered);
        if (headerSectionEnd(all) === null && gatheredBytes < MAX_EDITED_HEADER) continue;
        for (const part of editedMessage(all, edit!)) await writeAll(part);
        gathered = null;
      }
      if (gathered?.length) for (const part of editedMessage(Buffer.concat(gathered), edit!)) await writeAll(part);
      await out.datasync();
    } catch (e) {
      await out.close().catch(() => {});
      await fs.promises.unlink(path).catch(() => {});
      throw e;
    }
    await out.close();
    await fs.promises.unlink(stored.path).catch(() => {});
    this.spoolFile = file;
    return { kind: 'spool', file, path, length };
  }

  /** The bytes the end of the body still needs (the LF of a trailing CR, what the filter held); once. */
  private tail(): Buffer[] {
    const t = this.lines.finish();
    if (!this.filter) return t ? [t] : [];
    const parts = [t ? this.filter.feed(t) : null, this.filter.finish()];
    return parts.filter((p): p is Buffer => !!p && p.length > 0);
  }

  /** Bytes of memory budget this body still holds (the caller gives them back once stored). */
  get heldBytes(): number {
    return this.held;
  }

  /** Forgets the body: the memory it holds goes back to the budget, a spool file is removed. */
  abort(): void {
    this.done = true;
    this.aborted = true;
    this.release();
    if (!this.spooled) return;
    this.pending = [];
    void this.writing.finally(() => {
      if (this.fd >= 0) fs.close(this.fd, () => {});
      this.fd = -1;
      if (this.opening) fs.unlink(this.path, () => {});
    });
  }

  /** Gives the memory held back to the budget (after the body was stored, or when it is dropped). */
  release(): void {
    this.budget.give(this.held);
    this.held = 0;
    this.chunks = [];
  }

  private get path(): string {
    return `${this.spool.dir}/${this.spoolFile}`;
  }

  private discard(): boolean {
    if (this.chunks.length) this.release();
    return true;
  }

  /** From here on the body goes to the spool file (opened with its first write). */
  private startSpool(): void {
    const first = [this.head, ...this.chunks];
    this.release();
    this.spooling = true;
    for (const c of first) this.append(c);
  }

  /** Gathers a chunk for the spool file; writes what was gathered once there is enough of it. */
  private append(chunk: Buffer): void {
    this.backlog += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
  }

  /** Writes everything gathered so far in one writev, after the writes before it. */
  private flush(): void {
    if (!this.pending.length) return;
    const bufs = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.opening) {
      this.opening = call<number>(fs.open, this.path, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600).then((fd) => {
        this.fd = fd;
      });
      this.writing = this.opening.catch((e: Error) => {
        this.failed = e;
      });
    }
    this.writing = this.writing.then(async () => {
      try {
        if (this.failed || this.fd < 0 || this.aborted) return;
        let left = bufs;
        let done = 0;
        while (left.length) {
          const n = await call<number>(fs.writev, this.fd, left, this.written + done);
          done += n;
          left = advance(left, n);
        }
        this.written += bytes;
      } catch (e) {
        this.failed = e as Error;
      } finally {
        this.backlog -= bytes;
        if (this.backlog < SPOOL_BACKLOG || this.failed) {
          const w = this.waiter;
          this.waiter = null;
          w?.();
        }
      }
    });
  }
}
