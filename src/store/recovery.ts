// Start-up after an unclean stop, run by the journal worker before it writes anything: every
// intact record of every leftover segment is materialized (idempotently: what is in place stays),
// made durable, and the segments are dropped. Then the spool is emptied: a spool file is either
// named by a replayed record (now linked into place) or belonged to a message never acknowledged.
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { decode } from './journal-format.js';
import { fsyncPathSync, materialize, type Layout } from './materialize.js';

/** Returns how many files were put in place and the highest segment number seen. */
export async function recover(l: Layout, journalDir: string, syncfs: (() => Promise<Error | null>) | null): Promise<{ files: number; lastSegment: number }> {
  const segments = readdirSync(journalDir)
    .filter((f) => /^\d+\.wal$/.test(f))
    .sort();
  const lastSegment = segments.reduce((n, f) => Math.max(n, Number(f.slice(0, -4))), 0);
  const written: string[] = [];
  for (const s of segments) {
    for (const r of decode(readFileSync(join(journalDir, s)))) written.push(...materialize(r, l, { recovery: true, fsyncEach: false }));
  }
  if (segments.length) {
    const err = syncfs ? await syncfs() : new Error('no syncfs');
    if (err) {
      for (const f of written) fsyncPathSync(f);
      for (const d of new Set(written.map((f) => dirname(f)))) fsyncPathSync(d);
    }
    for (const s of segments) unlinkSync(join(journalDir, s));
    fsyncPathSync(journalDir);
  }
  for (const f of readdirSync(l.spool)) {
    try {
      unlinkSync(join(l.spool, f));
    } catch {}
  }
  return { files: written.length, lastSegment };
}
