// Start-up after an unclean stop, run by the journal worker before it writes anything: every
// intact record of every leftover segment is materialized (idempotently: what is in place stays),
// made durable, and the segments are dropped. Then the spool is emptied: a spool file is either
// named by a replayed record (now linked into place) or belonged to a message never acknowledged.
// What cannot be written (a Maildir without permissions) does not stop the start: it is handed to
// `hold` (the worker's backlog, kept in journal/backlog.wal and retried), which is replayed too.
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { placeEach, readBacklog } from './backlog.js';
import { decode, type JournalRecord } from './journal-format.js';
import type { MailboxAccess } from './mailbox-access.js';
import { fsyncPathSync, type Layout } from './materialize.js';

/**
 * Returns how many files were put in place and the highest segment number seen.
 * @param hold takes what could not be written, once the rest is durable and before the segments
 *   naming it are dropped; it keeps them durably and returns the spool files they still need
 */
export async function recover(
  l: Layout,
  journalDir: string,
  syncfs: (() => Promise<Error | null>) | null,
  access: MailboxAccess,
  hold: (unwritten: { r: JournalRecord; error: unknown }[]) => ReadonlySet<string> = () => new Set(),
): Promise<{ files: number; lastSegment: number }> {
  const segments = readdirSync(journalDir)
    .filter((f) => /^\d+\.wal$/.test(f))
    .sort();
  const lastSegment = segments.reduce((n, f) => Math.max(n, Number(f.slice(0, -4))), 0);
  const written: string[] = [];
  const unwritten: { r: JournalRecord; error: unknown }[] = [];
  const replay = (r: JournalRecord) => unwritten.push(...placeEach(r, l, { recovery: true, fsyncEach: false, access }, (files) => written.push(...files)));
  const backlog = readBacklog(journalDir);
  for (const r of backlog) replay(r);
  for (const s of segments) for (const r of decode(readFileSync(join(journalDir, s)))) replay(r);
  let keep: ReadonlySet<string> = new Set();
  if (segments.length || backlog.length) {
    const err = syncfs ? await syncfs() : new Error('no syncfs');
    if (err) {
      for (const f of written) fsyncPathSync(f);
      for (const d of new Set(written.map((f) => dirname(f)))) fsyncPathSync(d);
    }
    keep = hold(unwritten);
    for (const s of segments) unlinkSync(join(journalDir, s));
    fsyncPathSync(journalDir);
  }
  for (const f of readdirSync(l.spool)) {
    if (keep.has(f)) continue;
    try {
      unlinkSync(join(l.spool, f));
    } catch {}
  }
  return { files: written.length, lastSegment };
}
