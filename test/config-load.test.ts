// The loader's normalized result: defaults from the schema, units, IDN domains, frozen state,
// a content hash that follows referenced files, and JSON output of `validate`.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { loadConfigFile, loadConfigText } from '../src/config/load.js';
import { issueCertificate } from '../src/tls/devcert.js';
import { mailplane, ROOT } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const HASH = '$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK';

function tempConfig(body: string): { dir: string; file: string } {
  const dir = tempDir('cfg');
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.crt`, join(dir, 'tls.crt'));
  copyFileSync(`${ROOT}/test/fixtures/config/tls/valid.key`, join(dir, 'tls.key'));
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(file, body);
  return { dir, file };
}

const BASE = `version: 1
hostname: Mail.Example.com
domains: [Example.COM, bücher.example]
smtp:
  tls: { certFile: tls.crt, keyFile: tls.key }
accounts:
  local:
    users:
      - { name: Alice, passwordHash: "${HASH}", aliases: [PostMaster] }
`;

test('defaults come from the schema and units are parsed', async () => {
  const { file, dir } = tempConfig(BASE);
  const r = await loadConfigFile(file);
  assert.deepEqual(r.errors, []);
  const s = r.state!;
  assert.equal(s.hostname, 'mail.example.com');
  assert.deepEqual(s.domains, ['example.com', 'xn--bcher-kva.example']);
  assert.equal(s.smtp.enabled, true);
  assert.equal(s.smtp.maxMessageSize, 25_000_000);
  assert.deepEqual(
    s.smtp.listeners.map((l) => [l.name, l.port, l.role, l.tls]),
    [
      ['mx', 25, 'mx', 'starttls'],
      ['submission', 587, 'submission', 'starttls'],
      ['submissions', 465, 'submission', 'implicit'],
    ],
  );
  assert.equal(s.smtp.drainGraceMs, 30_000);
  assert.equal(s.smtp.auth.required, true);
  assert.equal(s.smtp.auth.failureWindowMs, 600_000);
  assert.equal(s.storage.dataDir, '/var/lib/mailplane');
  assert.deepEqual(s.observability, { host: '127.0.0.1', port: 9465, token: null, logAddresses: 'full' });
  assert.equal(s.accounts.type, 'local');
  if (s.accounts.type === 'local') {
    assert.equal(s.accounts.users[0]!.name, 'alice');
    assert.deepEqual(s.accounts.users[0]!.aliases, ['postmaster']);
    assert.equal(s.accounts.users[0]!.scheme, 'bcrypt');
  }
  assert.ok(Object.isFrozen(s) && Object.isFrozen(s.smtp.listeners[0]));
  assert.deepEqual(s.watchedFiles, [file, join(dir, 'tls.crt'), join(dir, 'tls.key')]);
});

test('sizes and durations accept every documented unit', async () => {
  for (const [size, bytes] of [
    ['10KB', 10_000],
    ['10KiB', 10_240],
    ['1.5MB', 1_500_000],
    ['2MiB', 2_097_152],
    ['1GB', 1e9],
    [12345, 12345],
  ] as const) {
    const { file } = tempConfig(`${BASE}  \n`.replace('smtp:\n', `smtp:\n  maxMessageSize: ${JSON.stringify(size)}\n  drainGrace: 1500ms\n`));
    const r = await loadConfigFile(file);
    assert.deepEqual(r.errors, []);
    assert.equal(r.state!.smtp.maxMessageSize, bytes);
    assert.equal(r.state!.smtp.drainGraceMs, 1500);
  }
});

test('the content hash follows the config and the files it references, not formatting', async () => {
  const { file, dir } = tempConfig(BASE);
  const h1 = (await loadConfigFile(file)).state!.hash;
  writeFileSync(file, `# a comment\n${BASE.replace('domains: [Example.COM, bücher.example]', 'domains:\n  - example.com\n  - bücher.example')}`);
  assert.equal((await loadConfigFile(file)).state!.hash, h1, 'same meaning, same hash');
  const renewed = issueCertificate({ commonName: 'mail.example.com' });
  writeFileSync(join(dir, 'tls.crt'), renewed.certPem);
  writeFileSync(join(dir, 'tls.key'), renewed.keyPem);
  const h2 = (await loadConfigFile(file)).state!.hash;
  assert.notEqual(h2, h1, 'a renewed certificate changes the hash');
});

test('secrets never appear when the state is printed', async () => {
  const { file, dir } = tempConfig(`${BASE}relay:\n  enabled: true\n  host: smtp.provider.example\n  auth: { username: u, passwordFile: pw }\n`);
  writeFileSync(join(dir, 'pw'), 'relay-s3cret-value\n');
  const r = await loadConfigFile(file);
  assert.deepEqual(r.errors, []);
  const printed = JSON.stringify(r.state) + inspect(r.state, { depth: 20 });
  assert.ok(!printed.includes('relay-s3cret-value'));
  assert.ok(!printed.includes(HASH));
  assert.ok(!printed.includes('PRIVATE KEY'));
  assert.equal(r.state!.relay.auth!.password.reveal(), 'relay-s3cret-value');
});

test('loadConfigText reports YAML and schema problems without a file on disk', async () => {
  const r = await loadConfigText('inline.yaml', 'version: 1\nhostname: [x]\n');
  assert.equal(r.state, null);
  assert.deepEqual(
    r.errors.map((e) => `${e.line}:${e.col} ${e.path} ${e.code}`),
    ['1:1 (top level) MP_MISSING_KEY', '2:11 hostname MP_TYPE'],
  );
});

test('validate --format json gives codes, positions and exit 1', async () => {
  const r = await mailplane(['validate', '--format', 'json', 'test/fixtures/config/bad/open-relay.yaml', 'test/fixtures/config/good/minimal.yaml']);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout) as { valid: boolean; files: { file: string; valid: boolean; errors: { code: string; line: number; col: number; path: string }[] }[] };
  assert.equal(out.valid, false);
  assert.equal(out.files[0]!.valid, false);
  assert.deepEqual(
    out.files[0]!.errors.map((e) => [e.code, e.line, e.col, e.path]),
    [
      ['MP_OPEN_RELAY', 9, 34, 'smtp.auth.exemptClients[1]'],
      ['MP_OPEN_RELAY', 11, 19, 'smtp.auth.lanNetworks[0]'],
    ],
  );
  assert.equal(out.files[1]!.valid, true);
});

test('validate: exit 2 for an unreadable file or bad usage', async () => {
  const missing = await mailplane(['validate', 'no/such/file.yaml']);
  assert.equal(missing.code, 2);
  assert.match(missing.stdout, /no\/such\/file\.yaml:1:1: cannot read config file: no such file/);
  const usage = await mailplane(['validate']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /no FILE given/);
  const badFlag = await mailplane(['validate', '--nope', 'x.yaml']);
  assert.equal(badFlag.code, 2);
  const unknown = await mailplane(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
});

test('every command has --help', async () => {
  const top = await mailplane(['--help']);
  assert.equal(top.code, 0);
  const names = [...top.stdout.matchAll(/^ {2}([a-z-]+) {2}/gm)].map((m) => m[1]!);
  assert.ok(names.includes('validate') && names.includes('hash-password'));
  for (const n of names) {
    const h = await mailplane([n, '--help']);
    assert.equal(h.code, 0, n);
    assert.match(h.stdout, new RegExp(`^Usage: mailplane ${n}`), n);
  }
});

test('hash-password output is accepted by the config and verifies', async () => {
  const { verifyPassword } = await import('../src/accounts/passwords.js');
  const { classifyHash } = await import('../src/config/hashes.js');
  for (const scheme of ['argon2id', 'bcrypt', 'sha512-crypt']) {
    const r = await mailplane(['hash-password', '--scheme', scheme], { input: 'correct horse\n' });
    assert.equal(r.code, 0, r.stderr);
    const hash = r.stdout.trim();
    const c = classifyHash(hash);
    assert.ok(c.ok, `${scheme}: ${hash}`);
    if (c.ok) {
      assert.equal(await verifyPassword('correct horse', hash, c.scheme), true);
      assert.equal(await verifyPassword('wrong horse', hash, c.scheme), false);
    }
    const { file } = tempConfig(BASE.replace(HASH, hash));
    assert.deepEqual((await loadConfigFile(file)).errors, []);
  }
  const empty = await mailplane(['hash-password'], { input: '\n' });
  assert.equal(empty.code, 1);
  assert.match(empty.stderr, /empty password refused/);
});

test('the content hash changes when only a secret changes (password file, password hash)', async () => {
  const { file, dir } = tempConfig(`${BASE}relay:\n  enabled: true\n  host: smtp.provider.example\n  auth: { username: u, passwordFile: pw }\n`);
  writeFileSync(join(dir, 'pw'), 'first\n');
  const h1 = (await loadConfigFile(file)).state!.hash;
  writeFileSync(join(dir, 'pw'), 'second\n');
  const h2 = (await loadConfigFile(file)).state!.hash;
  assert.notEqual(h2, h1);
  writeFileSync(join(dir, 'pw'), 'first\n');
  assert.equal((await loadConfigFile(file)).state!.hash, h1);
  const other = '$2y$12$r/q3DsaRDIMMjHSg8wjcAOHN78lpMRoDooPr4Wef65aArYRvKrV9i';
  writeFileSync(file, readFileSync(file, 'utf8').replace(HASH, other));
  assert.notEqual((await loadConfigFile(file)).state!.hash, h1);
});
