// deploy/systemd/mailplane.service, checked by systemd itself: `systemd-analyze verify` (every
// warning counts) and `systemd-analyze security`, offline. systemd need not run (this may be a
// container): the unit is verified under a temporary root holding a copy of the system's units
// and stand-ins for the programs it starts, which verify checks exist (/usr/local/bin/mailplane
// is installed only on a real server, docs/install.md).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { BIN, ROOT } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const UNIT = join(ROOT, 'deploy', 'systemd', 'mailplane.service');
const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
if (!analyze) {
  if (process.env.CI) throw new Error('systemd-analyze is required in CI (Debian package systemd)');
  console.warn('\n*** SKIPPED LOUDLY: systemd-analyze is not installed (apt-get install systemd); the systemd unit is not verified here ***\n');
}

const text = readFileSync(UNIT, 'utf8');

/** Every value of a key in the unit, in order. */
function values(key: string): string[] {
  return [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
}

/** A root with the system's units, the unit under test (or a variant) and stand-ins for the programs it runs. */
function fakeRoot(unitText: string): string {
  const root = tempDir('systemd-root');
  const units = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => existsSync(join(d, 'sysinit.target')));
  assert.ok(units, 'the system units (sysinit.target …) are installed with systemd');
  cpSync(units, join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
  writeFileSync(join(root, 'etc/systemd/system/mailplane.service'), unitText);
  for (const line of unitText.matchAll(/^Exec\w+=[-@+!:]*(\/\S+)/gm)) {
    const exe = join(root, line[1]!);
    mkdirSync(dirname(exe), { recursive: true });
    writeFileSync(exe, '#!/bin/sh\n');
    chmodSync(exe, 0o755);
  }
  return root;
}

function verify(unitText: string): { status: number | null; stderr: string } {
  const root = fakeRoot(unitText);
  const r = spawnSync(analyze, ['verify', '--man=no', `--root=${root}`, 'mailplane.service'], { encoding: 'utf8', cwd: root });
  return { status: r.status, stderr: r.stderr.trim() };
}

describe('deploy/systemd/mailplane.service', { skip: !analyze }, () => {
  test('systemd-analyze verify accepts it without a single warning', () => {
    const r = verify(text);
    assert.equal(r.stderr, '', r.stderr);
    assert.equal(r.status, 0);
  });

  test('the check is real: a misspelt value and an unknown key are reported', () => {
    const r = verify(text.replace(/^ProtectSystem=strict$/m, 'ProtectSystem=stritc\nProtectSistem=strict'));
    assert.match(r.stderr, /Failed to parse protect system value/);
    assert.match(r.stderr, /Unknown key 'ProtectSistem'/);
  });

  test('runs mailplane as its own user, with the one capability it needs, reloads on SIGHUP', () => {
    assert.deepEqual(values('User'), ['mailplane']);
    assert.deepEqual(values('ExecStart'), ['/usr/local/bin/mailplane run --config /etc/mailplane/mailserver.yaml']);
    assert.deepEqual(values('ExecReload'), ['/bin/kill -HUP $MAINPID']);
    assert.deepEqual(values('AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(values('CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(values('KillMode'), ['mixed'], 'SIGTERM to mailplane alone: its journal helper must outlive the drain');
  });

  test('sandboxed: read-only everywhere but the default data dir; chown and setgid folders still allowed', () => {
    const schema = JSON.parse(readFileSync(join(ROOT, 'schema', 'mailserver.schema.json'), 'utf8'));
    const dataDir = schema.properties.storage.properties.dataDir.default as string;
    assert.deepEqual(values('ProtectSystem'), ['strict']);
    assert.deepEqual(values('ReadWritePaths'), [dataDir]);
    assert.deepEqual(values('StateDirectory'), [], 'systemd would chown the data dir, Maildirs included, back to the service user');
    assert.deepEqual(values('RestrictSUIDSGID'), [], 'storage.mailboxGroup makes setgid folders');
    assert.deepEqual(values('MemoryDenyWriteExecute'), [], "Node's JIT needs writable code");
    const filters = values('SystemCallFilter');
    assert.deepEqual(filters, ['@system-service', '~@privileged', '@chown'], 'chown (storage.mailboxGroup) comes back after ~@privileged');
  });

  test('systemd-analyze security rates the sandbox OK or better', () => {
    const root = fakeRoot(text);
    const r = spawnSync(analyze, ['security', '--offline=yes', `--root=${root}`, '--no-pager', 'mailplane.service'], { encoding: 'utf8', cwd: root });
    const m = /Overall exposure level for mailplane\.service: ([\d.]+) (\w+)/.exec(r.stdout);
    assert.ok(m, `${r.stdout}\n${r.stderr}`);
    assert.ok(['PERFECT', 'SAFE', 'OK'].includes(m[2]!), `exposure ${m[1]} ${m[2]}`);
  });

  test('the ExecStart command line is one mailplane accepts', () => {
    // with a config that does not exist: a start-up failure (1), not a usage error (2)
    const args = values('ExecStart')[0]!.split(/\s+/).slice(1);
    const r = spawnSync(process.execPath, [BIN, ...args.map((a) => (a === '/etc/mailplane/mailserver.yaml' ? join(tempDir('unit'), 'missing.yaml') : a))], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /cannot start/);
  });
});
