// Loading a config on a running server's reload path never blocks the event loop: the config
// and every file it references are read through fs.promises. Proved without timing: the
// blocking functions (readFileSync, openSync, readSync, scryptSync) are wrapped in this process
// and must see no call at all, while the asynchronous ones must see every file. Secrets digest
// under a per-process key (fast, and worthless outside the process): what a plan compares.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs, { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';
import { specView } from '../../src/plan/plan.js';
import { ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const HASH = '$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK';

interface Calls {
  /** blocking calls: must stay empty */
  sync: string[];
  /** files read through fs.promises.readFile */
  asyncReads: string[];
}

/**
 * Runs fn with the blocking file and scrypt functions wrapped (the ESM named imports of the
 * code under test see the wrappers through syncBuiltinESMExports), and returns what was called.
 */
async function watching<T>(fn: () => Promise<T>): Promise<{ value: T; calls: Calls }> {
  const calls: Calls = { sync: [], asyncReads: [] };
  const restore: (() => void)[] = [];
  const wrap = <O extends object>(obj: O, key: keyof O & string, record: (args: unknown[]) => void) => {
    const original = obj[key] as (...a: unknown[]) => unknown;
    (obj as Record<string, unknown>)[key] = function (this: unknown, ...args: unknown[]) {
      record(args);
      return original.apply(this, args);
    };
    restore.push(() => ((obj as Record<string, unknown>)[key] = original));
  };
  for (const key of ['readFileSync', 'openSync', 'readSync'] as const) wrap(fs, key, (a) => calls.sync.push(`fs.${key}(${String(a[0])})`));
  wrap(crypto, 'scryptSync', () => calls.sync.push('crypto.scryptSync'));
  wrap(fsp, 'readFile', (a) => calls.asyncReads.push(String(a[0] instanceof URL ? a[0].pathname : a[0])));
  syncBuiltinESMExports();
  try {
    return { value: await fn(), calls };
  } finally {
    for (const r of restore.reverse()) r();
    syncBuiltinESMExports();
  }
}

/** A config referencing every kind of file: certificate, key, users file, password file, CA. */
function localConfig(): { dir: string; file: string; files: string[]; password: string } {
  const dir = tempDir('async-load');
  mkdirSync(join(dir, 'secrets'));
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.crt`, join(dir, 'tls.crt'));
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.key`, join(dir, 'tls.key'));
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.crt`, join(dir, 'ca.pem'));
  writeFileSync(join(dir, 'secrets', 'users'), `bob:${HASH}\n`);
  // a password no earlier load has seen, so its digest cannot come from a cache
  const password = `relay-${crypto.randomUUID()}`;
  writeFileSync(join(dir, 'secrets', 'relay'), `${password}\n`);
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(
    file,
    `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  tls: { certFile: tls.crt, keyFile: tls.key }
accounts:
  local:
    users:
      - { name: alice, passwordHash: "${HASH}", aliases: [postmaster] }
    usersFile: secrets/users
relay:
  enabled: true
  host: smtp.provider.example
  caFile: ca.pem
  auth: { username: u, passwordFile: secrets/relay }
`,
  );
  const files = ['tls.crt', 'tls.key', 'ca.pem', 'secrets/users', 'secrets/relay'].map((f) => join(dir, f));
  return { dir, file, files, password };
}

function ldapConfig(): { file: string; files: string[]; password: string } {
  const dir = tempDir('async-load-ldap');
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.crt`, join(dir, 'tls.crt'));
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.key`, join(dir, 'tls.key'));
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.crt`, join(dir, 'ldap-ca.pem'));
  const password = `bind-${crypto.randomUUID()}`;
  writeFileSync(join(dir, 'bind'), `${password}\n`);
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(
    file,
    `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  tls: { certFile: tls.crt, keyFile: tls.key }
accounts:
  type: ldap
  ldap:
    url: ldaps://ldap.example.com
    bindDn: cn=mailplane,dc=example,dc=com
    bindPasswordFile: bind
    caFile: ldap-ca.pem
    userBase: ou=people,dc=example,dc=com
`,
  );
  return { file, files: ['tls.crt', 'tls.key', 'ldap-ca.pem', 'bind'].map((f) => join(dir, f)), password };
}

// First in this file on purpose: the first load of a process (schema included) is covered too.
test('a load reads the config and every referenced file through fs.promises, and never blocks on a read or on scrypt', async () => {
  const local = localConfig();
  const ldap = ldapConfig();
  const { value, calls } = await watching(async () => {
    const a = await loadConfigFile(local.file, { forRun: true });
    const b = await loadConfigFile(ldap.file, { forRun: true });
    // what the controller and /status do with a loaded state: digests of every secret
    return { a, b, views: [specView(a.state!, 'digest'), specView(b.state!, 'digest')] };
  });
  assert.deepEqual(value.a.errors, []);
  assert.deepEqual(value.b.errors, []);
  assert.deepEqual(calls.sync, [], 'no blocking read or scrypt on the load path');
  for (const f of [local.file, ...local.files, ldap.file, ...ldap.files]) assert.ok(calls.asyncReads.includes(f), `${f} read through fs.promises`);
  // the views a plan compares carry the secrets' keyed digests, never the values
  const relay = value.a.state!.relay.auth!.password;
  assert.deepEqual((value.views[0]!.specs.transport as { relay: { auth: { password: unknown } } }).relay.auth.password, { secret: relay.digest() });
  assert.ok(!JSON.stringify(value.views).includes(local.password) && !JSON.stringify(value.views).includes(ldap.password));
});

test('a reload after referenced files changed stays asynchronous, and so does the embedded quick start text', async () => {
  const local = localConfig();
  const first = await loadConfigFile(local.file, { forRun: true });
  const renewed = `relay-${crypto.randomUUID()}`;
  writeFileSync(join(local.dir, 'secrets', 'relay'), `${renewed}\n`);
  writeFileSync(join(local.dir, 'secrets', 'users'), `bob:${HASH}\ncarol:${HASH}\n`);
  const { value, calls } = await watching(async () => {
    const again = await loadConfigFile(local.file, { forRun: true });
    // text without a file of its own, like the embedded quick start: relative paths from baseDir
    const text = await loadConfigText(
      '(inline)',
      `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  tls: { certFile: tls.crt, keyFile: tls.key }
accounts:
  local:
    usersFile: secrets/users
    users: [{ name: alice, passwordHash: "${HASH}", aliases: [postmaster] }]
`,
      { baseDir: local.dir, forRun: true },
    );
    return { again, text, view: specView(again.state!, 'digest') };
  });
  assert.deepEqual(calls.sync, []);
  assert.deepEqual(value.again.errors, []);
  assert.deepEqual(value.text.errors, []);
  assert.notEqual(value.again.state!.hash, first.state!.hash);
  assert.deepEqual((value.view.specs.transport as { relay: { auth: { password: unknown } } }).relay.auth.password, { secret: new Secret(renewed, 'password').digest() });
  assert.equal(value.text.state!.accounts.type === 'local' && value.text.state!.accounts.users.length, 3);
  assert.ok(calls.asyncReads.includes(join(local.dir, 'secrets', 'users')));
});

test('the event loop keeps turning while a load is in progress', async () => {
  const local = localConfig();
  let turns = 0;
  let running = true;
  const spin = () => {
    turns++;
    if (running) setImmediate(spin);
  };
  setImmediate(spin);
  const pending = loadConfigFile(local.file, { forRun: true });
  assert.equal(turns, 0, 'nothing ran yet');
  // the config and its files each complete in a later loop iteration; a synchronous load
  // would have finished before any setImmediate callback could run
  const r = await pending;
  running = false;
  assert.deepEqual(r.errors, []);
  assert.ok(turns >= 1, `setImmediate callbacks ran during the load (${turns})`);
});

test('errors from referenced files keep their messages, positions and codes', async () => {
  const local = localConfig();
  const dir = local.dir;
  mkdirSync(join(dir, 'a-dir'));
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, 'not-pem'), 'hello\n');
  writeFileSync(
    local.file,
    `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  tls: { certFile: a-dir, keyFile: /nonexistent/tls.key }
accounts:
  local:
    users:
      - { name: alice, passwordHash: "${HASH}", aliases: [postmaster] }
    usersFile: missing-users
relay:
  enabled: true
  host: smtp.provider.example
  caFile: not-pem
  auth: { username: u, passwordFile: empty }
`,
  );
  const { value: r, calls } = await watching(() => loadConfigFile(local.file));
  assert.deepEqual(calls.sync, []);
  assert.equal(r.state, null);
  const shown = (p: string) => join(dir, p).replace(`${process.cwd()}/`, '');
  assert.deepEqual(
    r.errors.map((e) => `${e.line}:${e.col} ${e.code} ${e.path}: ${e.message}`),
    [
      `5:20 MP_FILE_UNREADABLE smtp.tls.certFile: file "a-dir" is a directory (looked for ${shown('a-dir')})`,
      '5:36 MP_FILE_UNREADABLE smtp.tls.keyFile: file "/nonexistent/tls.key" does not exist',
      `10:16 MP_FILE_UNREADABLE accounts.local.usersFile: file "missing-users" does not exist (looked for ${shown('missing-users')})`,
      '14:11 MP_TLS_FILE relay.caFile: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)',
      '15:38 MP_SECRET_SOURCE relay.auth.passwordFile: password file is empty',
    ],
  );
  const unreadable = await loadConfigFile(join(dir, 'no-such.yaml'));
  assert.equal(unreadable.unreadable, true);
  assert.equal(unreadable.errors[0]!.message, 'cannot read config file: no such file');
  const isDir = await loadConfigFile(join(dir, 'a-dir'));
  assert.equal(isDir.errors[0]!.message, 'cannot read config file: is a directory');
});

test('a secret digest is keyed per process: equal values agree, and the digest is not a plain hash of the value', () => {
  const value = `direct-${crypto.randomUUID()}`;
  assert.equal(new Secret(value, 'password').digest(), new Secret(value, 'password').digest());
  assert.notEqual(new Secret(value, 'password').digest(), new Secret(`${value}x`, 'password').digest());
  for (const algorithm of ['sha256', 'sha512', 'sha1', 'md5']) assert.notEqual(new Secret(value, 'key').digest(), crypto.createHash(algorithm).update(value).digest('hex'));
  assert.notEqual(
    new Secret(value, 'password').digest(),
    crypto.scryptSync(value, 'mailplane secret digest v1', 32, { N: 1 << 14, r: 8, p: 1 }).toString('hex'),
    'not the fixed-salt digest of earlier versions',
  );
});
