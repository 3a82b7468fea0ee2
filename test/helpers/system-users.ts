// System users and groups for the tests that run servers as other users (Dovecot's mail user,
// mailplane's service user): made with the docs' useradd, removed again when the test file ends.
import { spawnSync } from 'node:child_process';
import { after } from 'node:test';

export function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

export function idOf(flag: '-u' | '-g', name: string): number {
  return Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
}

const created: string[] = [];
// the users a test file made go when all of it is done (after its servers stopped)
after(() => {
  for (const n of created.reverse()) {
    spawnSync('userdel', [n]);
    spawnSync('groupdel', [n]); // when userdel left the group behind
  }
});

/** The user (and its group), made unless it exists (one left by a crashed run is reused); removed after the test file. */
export function ensureUser(name: string): void {
  if (spawnSync('id', [name]).status === 0) return;
  sh('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]);
  created.push(name);
}
