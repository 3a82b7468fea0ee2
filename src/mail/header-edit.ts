// Edits of a message's header section that a filter asks for: fields removed, the Subject
// replaced. Works on the raw section (CRLF line ends), field by field with their continuation
// lines; everything not edited stays byte for byte.

export interface HeaderEdit {
  /** the new Subject (unencoded text); added when the message has none */
  readonly subject?: string;
  /** fields to remove: `index` 0 = every one of that name, n > 0 = the n-th, n < 0 = the n-th from the end */
  readonly remove?: readonly { readonly name: string; readonly index: number }[];
}

export function isEmptyEdit(e: HeaderEdit | undefined): boolean {
  return !e || (e.subject === undefined && !e.remove?.length);
}

/** Where the header section ends in `msg`: the offset just after the CRLF of its last field (0 when the message starts with the empty line). */
export function headerSectionEnd(msg: Buffer): number | null {
  if (msg[0] === 0x0d && msg[1] === 0x0a) return 0;
  const i = msg.indexOf('\r\n\r\n');
  return i < 0 ? null : i + 2;
}

/** The header section with the edits applied. */
export function editHeaderSection(section: Buffer, e: HeaderEdit): Buffer {
  const fields = splitFields(section);
  const drop = new Set<number>();
  for (const r of e.remove ?? []) {
    const name = r.name.toLowerCase();
    const idx = fields.map((f, i) => (f.name === name ? i : -1)).filter((i) => i >= 0);
    if (r.index === 0) idx.forEach((i) => drop.add(i));
    else {
      const pick = r.index > 0 ? idx[r.index - 1] : idx[idx.length + r.index];
      if (pick !== undefined) drop.add(pick);
    }
  }
  const out: Buffer[] = [];
  let subjectDone = e.subject === undefined;
  fields.forEach((f, i) => {
    if (drop.has(i)) return;
    if (!subjectDone && f.name === 'subject') {
      out.push(Buffer.from(`Subject: ${encodeHeaderText(e.subject!)}\r\n`));
      subjectDone = true;
      return;
    }
    out.push(f.raw);
  });
  if (!subjectDone) out.push(Buffer.from(`Subject: ${encodeHeaderText(e.subject!)}\r\n`));
  return Buffer.concat(out);
}

interface Field {
  /** lower case; '' for a line that is no field (kept as it is) */
  readonly name: string;
  readonly raw: Buffer;
}

function splitFields(section: Buffer): Field[] {
  const fields: Field[] = [];
  let start = 0;
  let i = 0;
  while (i < section.length) {
    const lf = section.indexOf(0x0a, i);
    const end = lf < 0 ? section.length : lf + 1;
    const next = section[end];
    i = end;
    if (end < section.length && (next === 0x20 || next === 0x09)) continue; // a continuation follows
    const raw = section.subarray(start, end);
    const colon = raw.indexOf(0x3a);
    fields.push({ name: colon > 0 ? raw.toString('latin1', 0, colon).trim().toLowerCase() : '', raw });
    start = end;
  }
  return fields;
}

/**
 * Header text as a field body: ASCII as it is (control characters and line ends removed);
 * anything else as RFC 2047 encoded-words (UTF-8, base64), each at most 75 characters.
 */
export function encodeHeaderText(text: string): string {
  const clean = text.replace(/\p{Cc}+/gu, ' ').trim();
  if (/^[\x20-\x7e]*$/.test(clean)) return foldAscii(clean);
  const words: string[] = [];
  let part = '';
  for (const ch of clean) {
    if (Buffer.byteLength(part + ch) > 45) {
      words.push(part);
      part = '';
    }
    part += ch;
  }
  if (part) words.push(part);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join('\r\n ');
}

/** Long ASCII text folded at spaces so that no line passes 78 characters where it can be helped. */
export function foldAscii(text: string, first = 10): string {
  const out: string[] = [];
  let line = '';
  let limit = 78 - first;
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > limit) {
      out.push(line);
      line = word;
      limit = 77;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  out.push(line);
  return out.join('\r\n ');
}
