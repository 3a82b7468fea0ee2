// A small tmpfs for disk-full tests: mounted on a new folder, or null (the test is skipped
// loudly) where mounting needs a privilege this machine does not give.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface Tmpfs {
  readonly path: string;
  unmount(): void;
}

export function mountTmpfs(t: TestContext, parent: string, size: string): Tmpfs | null {
  const path = join(parent, 'small');
  mkdirSync(path);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path], { stdio: 'ignore' });
  } catch {
    t.skip('SKIPPED LOUDLY: cannot mount a tmpfs here (needs root); disk-full is not tested on this machine');
    return null;
  }
  return { path, unmount: () => execFileSync('umount', ['-l', path]) }; // lazy: a file still open must not fail the test
}
