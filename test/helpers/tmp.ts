// Temporary folders for tests: each one is removed when the test file's process exits, so a
// test run leaves nothing behind in the system's temp folder. Set MAILPLANE_KEEP_TMP=1 to keep
// them for a post-mortem.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.on('exit', () => {
  if (process.env.MAILPLANE_KEEP_TMP) return;
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mailplane-${prefix}-`));
  made.push(dir);
  return dir;
}
