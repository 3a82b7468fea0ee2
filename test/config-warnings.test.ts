// Warnings `validate` gives for configs that load but cannot do what they seem to (a submission
// listener nobody can log in to, the published example key), exact wording of the users file's
// empty hash, and the small things people read: `plan`'s legend, the text log's timestamps.
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile } from '../src/config/load.js';
import { createLogger } from '../src/ops/logger.js';
import { mailplane, ROOT } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const HASH = '$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK';

function config(o: { hostname?: string; listeners?: string; authRequired?: boolean; key?: 'example' | 'own'; users?: string } = {}): { dir: string; file: string } {
  const dir = tempDir('warn');
  const pair = o.key === 'example' ? `${ROOT}/examples/tls/dev` : `${ROOT}/test/fixtures/config/tls/valid`;
  copyFileSync(`${pair}.crt`, join(dir, 'tls.crt'));
  copyFileSync(`${pair}.key`, join(dir, 'tls.key'));
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(
    file,
    `version: 1
hostname: ${o.hostname ?? 'mail.example.com'}
domains: [example.com]
smtp:
  tls: { certFile: tls.crt, keyFile: tls.key }
${o.listeners ?? ''}  auth:
    required: ${o.authRequired ?? true}
accounts:
  local:
${o.users ?? ''}    users:
      - { name: alice, passwordHash: "${HASH}", aliases: [postmaster] }
`,
  );
  return { dir, file };
}

const codes = async (file: string) => {
  const r = await loadConfigFile(file);
  return { errors: r.errors.map((i) => i.code), warnings: r.warnings.map((i) => `${i.line}:${i.col} ${i.path} ${i.code}`), r };
};

const PLAIN_SUBMISSION = `  listeners:
    - { name: mx, port: 25, role: mx, tls: none }
    - { name: submission, port: 587, role: submission, tls: none }
`;

test('a submission listener with tls: none while auth.required is true: nobody can log in (warning)', async () => {
  const on = await codes(config({ listeners: PLAIN_SUBMISSION }).file);
  assert.deepEqual(on.errors, []);
  assert.deepEqual(on.warnings, ['8:61 smtp.listeners[1].tls MP_SUBMISSION_NO_TLS']);
  assert.match(on.r.warnings[0]!.message, /submission listener 'submission' has no TLS while smtp\.auth\.required is true: AUTH is offered only inside TLS, so nobody can log in here/);
  // the mx listener without TLS is fine, and so is submission without required AUTH
  assert.deepEqual((await codes(config({ listeners: PLAIN_SUBMISSION, authRequired: false }).file)).warnings, []);
  const r = await mailplane(['validate', config({ listeners: PLAIN_SUBMISSION }).file]);
  assert.equal(r.code, 0, 'a warning does not fail validation');
  assert.match(r.stdout, /: ok \(1 warning\)$/m);
});

test('the key published in examples/ as smtp.tls.keyFile of a real config (warning); examples and test names stay quiet', async () => {
  const real = await codes(config({ key: 'example', hostname: 'mx.mailplane-user.net' }).file);
  assert.deepEqual(real.errors, []);
  assert.ok(real.warnings.includes('5:38 smtp.tls.keyFile MP_TLS_EXAMPLE_KEY'), real.warnings.join('\n'));
  assert.match(real.r.warnings.find((w) => w.code === 'MP_TLS_EXAMPLE_KEY')!.message, /example key published with mailplane \(examples\/tls\/dev\.key\)/);
  for (const hostname of ['mail.example.com', 'smtp.example.net', 'mail.localhost', 'mx.test']) {
    const w = (await codes(config({ key: 'example', hostname }).file)).warnings;
    assert.ok(!w.some((x) => x.endsWith('MP_TLS_EXAMPLE_KEY')), `${hostname}: ${w.join(', ')}`);
  }
  // a key of one's own, with a real name: nothing to say about the key
  const own = await codes(config({ hostname: 'mx.mailplane-user.net' }).file);
  assert.ok(!own.warnings.some((x) => x.endsWith('MP_TLS_EXAMPLE_KEY')));
});

test('an empty hash in a users file is called empty, not plain text', async () => {
  const { dir, file } = config({ users: '    usersFile: users.txt\n' });
  writeFileSync(join(dir, 'users.txt'), 'bob:\ncarol: \n');
  const r = await loadConfigFile(file);
  assert.deepEqual(
    r.errors.map((i) => `${i.line}:${i.col} ${i.code} ${i.message.replace(/;.*/, '')}`),
    ['1:5 MP_HASH_FORMAT user bob: the password hash is empty', '2:7 MP_HASH_FORMAT user carol: the password hash is empty'],
  );
});

test('plan prints the legend of the marks it uses, and only those', async () => {
  const a = config();
  const b = join(a.dir, 'next.yaml');
  const { readFileSync } = await import('node:fs');
  const text = readFileSync(a.file, 'utf8');
  writeFileSync(b, text.replace('domains: [example.com]', 'domains: [example.com, example.org]'));
  const inPlace = await mailplane(['plan', a.file, b]);
  assert.equal(inPlace.code, 2, inPlace.stderr);
  assert.match(inPlace.stdout, /^~ applied in place to new sessions; nothing is closed$/m);
  assert.doesNotMatch(inPlace.stdout, /^! /m, 'no "!" action, no "!" legend');
  writeFileSync(b, text.replace('  auth:\n', '  listeners: [{ name: mx, port: 2525, role: mx }]\n  auth:\n'));
  const sockets = await mailplane(['plan', a.file, b]);
  assert.equal(sockets.code, 2, sockets.stderr);
  assert.match(sockets.stdout, /^! binds or closes a socket, or drains open sessions$/m);
  assert.doesNotMatch(sockets.stdout, /^~ /m, 'no "~" action, no "~" legend');
  const none = await mailplane(['plan', a.file, a.file]);
  assert.equal(none.stdout, 'No changes. The running server already matches this config.\n');
});

test('--log-format text lines carry the date', () => {
  const lines: string[] = [];
  const log = createLogger({ json: false, write: (l) => lines.push(l), now: () => new Date('2026-11-29T14:03:07.512Z') });
  log.info('config applied', { generation: 2 });
  assert.deepEqual(lines, ['2026-11-29 14:03:07.512Z INFO  config applied  generation=2\n']);
});
