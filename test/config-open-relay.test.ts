// The open-relay check judges the trusted set as a whole (exemptClients, and lanNetworks under
// lanBypass), with IPv4-mapped IPv6 read as IPv4: config files loaded through the real loader,
// then the real server on a dual-stack listener, where an IPv4 client arrives as ::ffff:a.b.c.d.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfigFile } from '../src/config/load.js';
import { mailplane, ROOT } from './helpers/cli.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { tempDir } from './helpers/tmp.js';

const HASH = '$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK';

/** A valid config whose smtp.auth block is `auth` (lines indented by four spaces); line 8 is its first. */
function configWith(auth: string): string {
  const dir = tempDir('open-relay');
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(
    file,
    `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  listeners:
    - { name: mx, port: 2525, role: mx, tls: none }
  auth:
${auth}accounts:
  local:
    users:
      - { name: alice, passwordHash: "${HASH}", aliases: [postmaster] }
storage:
  dataDir: ${join(dir, 'data')}
`,
  );
  return file;
}

async function load(auth: string) {
  const r = await loadConfigFile(configWith(auth));
  const show = (i: { code: string; path: string; line: number; col: number; message: string }) => ({ code: i.code, path: i.path, at: `${i.line}:${i.col}`, message: i.message });
  return { state: r.state, errors: r.errors.map(show), warnings: r.warnings.map(show) };
}

describe('the trusted set is judged as a whole', () => {
  test('exemptClients [0.0.0.0/1, 128.0.0.0/1] is an open relay: together they cover all of IPv4', async () => {
    const r = await load('    exemptClients: [0.0.0.0/1, 128.0.0.0/1]\n');
    assert.equal(r.state, null);
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.path, e.at]),
      [
        ['MP_OPEN_RELAY', 'smtp.auth.exemptClients[0]', '8:21'],
        ['MP_OPEN_RELAY', 'smtp.auth.exemptClients[1]', '8:32'],
      ],
    );
    assert.match(r.errors[0]!.message, /^'0\.0\.0\.0\/1' trusts 2,092,957,696 public IPv4 addresses: more than a \/8 \(16,777,216 addresses\)/);
    assert.equal(r.errors[1]!.message, 'the trusted ranges together cover all of IPv4 (0.0.0.0/1 + 128.0.0.0/1), which would make this server an open relay; list only your own networks');
    assert.deepEqual(r.warnings, [], 'the errors say it all');
  });

  test('lanNetworks ["::ffff:0:0/96"] with lanBypass on is an open relay: it is 0.0.0.0/0 in IPv4-mapped form', async () => {
    const r = await load('    lanBypass: true\n    lanNetworks: ["::ffff:0:0/96"]\n');
    assert.equal(r.state, null);
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.path, e.at]),
      [['MP_OPEN_RELAY', 'smtp.auth.lanNetworks[0]', '9:19']],
    );
    assert.match(r.errors[0]!.message, /^'::ffff:0:0\/96' trusts all of IPv4 \(it is the IPv4-mapped form of 0\.0\.0\.0\/0, .*\), which would make this server an open relay/);
  });

  test('the same lanNetworks with lanBypass off trusts no one: no error, a warning of what turning it on would do', async () => {
    for (const bypass of ['    lanBypass: false\n', '']) {
      const r = await load(`${bypass}    lanNetworks: ["::ffff:0:0/96"]\n`);
      assert.deepEqual(r.errors, [], bypass || 'lanBypass left out (false by default)');
      assert.ok(r.state);
      assert.equal(r.state.smtp.auth.lanBypass, false);
      assert.deepEqual(
        r.warnings.map((w) => [w.code, w.path]),
        [['MP_PUBLIC_RANGE', 'smtp.auth.lanNetworks[0]']],
      );
      assert.match(r.warnings[0]!.message, /^lanBypass is off, so lanNetworks trusts no one now, but once it is on: '::ffff:0:0\/96' trusts all of IPv4/);
    }
  });

  test('a sane config gets only the warning about its public range', async () => {
    const r = await load('    exemptClients: [10.0.0.0/8, 192.168.0.0/16, "fd00::/8", 198.51.99.0/24]\n    lanBypass: true\n    lanNetworks: [172.16.0.0/12, "fe80::/10"]\n');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, [
      {
        code: 'MP_PUBLIC_RANGE',
        path: 'smtp.auth.exemptClients[3]',
        at: '8:61',
        message: "'198.51.99.0/24' contains public addresses; clients there are trusted to relay without AUTH",
      },
    ]);
    assert.ok(r.state);
  });

  test('the IPv4 threshold from both sides: a public /8 warns, one address more is refused at the entry that takes it over', async () => {
    const ok = await load('    exemptClients: [1.0.0.0/8, 10.0.0.0/8]\n');
    assert.deepEqual(ok.errors, []);
    assert.deepEqual(
      ok.warnings.map((w) => [w.code, w.path]),
      [['MP_PUBLIC_RANGE', 'smtp.auth.exemptClients[0]']],
    );
    const over = await load('    exemptClients: [1.0.0.0/8, 10.0.0.0/8, 2.0.0.1]\n');
    assert.deepEqual(
      over.errors.map((e) => [e.code, e.path, e.message]),
      [
        [
          'MP_OPEN_RELAY',
          'smtp.auth.exemptClients[2]',
          'the trusted ranges together cover 16,777,217 public IPv4 addresses (1.0.0.0/8 + 2.0.0.1): more than a /8 (16,777,216 addresses), the largest block ever assigned to one organisation, which would make this server an open relay; list only your own networks',
        ],
      ],
    );
  });

  test('the IPv6 threshold: a public /32 warns, two of them are refused', async () => {
    const ok = await load('    exemptClients: ["2a00::/32"]\n');
    assert.deepEqual(ok.errors, []);
    const over = await load('    exemptClients: ["2a00::/32", "2a00:1::/32"]\n');
    assert.deepEqual(
      over.errors.map((e) => [e.code, e.path]),
      [['MP_OPEN_RELAY', 'smtp.auth.exemptClients[1]']],
    );
    assert.match(over.errors[0]!.message, /together cover 2\^97 public IPv6 addresses \(2a00::\/32 \+ 2a00:1::\/32\): more than a \/32/);
  });

  test('lanNetworks counts with exemptClients only under lanBypass', async () => {
    const on = await load('    exemptClients: [1.0.0.0/8]\n    lanBypass: true\n    lanNetworks: [2.0.0.0/16]\n');
    assert.deepEqual(
      on.errors.map((e) => [e.code, e.path]),
      [['MP_OPEN_RELAY', 'smtp.auth.lanNetworks[0]']],
    );
    assert.match(on.errors[0]!.message, /\(exemptClients 1\.0\.0\.0\/8 \+ lanNetworks 2\.0\.0\.0\/16\)/);
    const off = await load('    exemptClients: [1.0.0.0/8]\n    lanBypass: false\n    lanNetworks: [2.0.0.0/16]\n');
    assert.deepEqual(off.errors, []);
  });

  test('an IPv6 range that holds ::ffff:0:0/96 trusts all of IPv4', async () => {
    const r = await load('    exemptClients: ["::/64"]\n');
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.path]),
      [['MP_OPEN_RELAY', 'smtp.auth.exemptClients[0]']],
    );
    assert.match(r.errors[0]!.message, /^'::\/64' trusts all of IPv4 \(it contains ::ffff:0:0\/96/);
  });

  test('a range in mapped form is kept as the IPv4 range it means', async () => {
    const r = await load('    exemptClients: ["::ffff:10.0.0.0/104", "::ffff:192.168.1.7"]\n');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(
      r.state!.smtp.auth.exemptClients.map((c) => `${c.address}/${c.prefix} v${c.family}`),
      ['10.0.0.0/8 v4', '192.168.1.7/32 v4'],
    );
  });

  test('a literal 0.0.0.0/0 or ::/0 reads as it always did (the bad fixture, loaded in this process)', async () => {
    const file = `${ROOT}test/fixtures/config/bad/open-relay.yaml`;
    const r = await loadConfigFile(file);
    const expected = readFileSync(file.replace(/\.yaml$/, '.expected'), 'utf8')
      .split('\n')
      .slice(0, 2);
    assert.deepEqual(
      r.errors.map((e) => `${e.path}: ${e.message}`),
      expected.map((l) => l.replace(/^.*?:\d+:\d+: /, '')),
    );
    assert.deepEqual(r.warnings, []);
  });
});

/** Whether this machine can bind :: and take an IPv4 loopback connection on it (dual-stack). */
async function dualStack(): Promise<string | null> {
  const server = createServer((s) => s.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '::', resolve);
    });
  } catch (e) {
    return `cannot bind [::] (${(e as Error).message})`;
  }
  const port = (server.address() as { port: number }).port;
  try {
    await new Promise<void>((resolve, reject) => {
      const c = connect({ host: '127.0.0.1', port }, () => {
        c.destroy();
        resolve();
      });
      c.once('error', reject);
    });
    return null;
  } catch (e) {
    return `a listener on [::] does not accept IPv4 connections here (${(e as Error).message})`;
  } finally {
    server.close();
  }
}

const noDualStack = await dualStack();
if (noDualStack) console.error(`# SKIPPED: the dual-stack tests of config-open-relay.test.ts: ${noDualStack}`);

describe(noDualStack ? `dual-stack listener: SKIPPED, ${noDualStack}` : 'dual-stack listener on [::]: IPv4 clients arrive as ::ffff:a.b.c.d', { skip: noDualStack ?? false }, () => {
  let env: Env;
  let mp: MailplaneProcess;

  before(async () => {
    env = await makeEnv();
    const base = baseConfig(env);
    const config = base
      .replace(`- { name: mx, address: 127.0.0.1, port: ${env.ports.mx},`, `- { name: mx, address: "::", port: ${env.ports.mx},`)
      .replace(`exemptClients: [${CLIENTS.exempt}/32]`, `exemptClients: ["::ffff:${CLIENTS.exempt}/128"]`)
      .replace('lanBypass: true', 'lanBypass: false');
    assert.notEqual(config, base);
    assert.match(config, /address: "::", port/);
    assert.match(config, /exemptClients: \["::ffff:127\.0\.0\.5\/128"\]/);
    mp = await startMailplane(env, config);
  });
  after(async () => {
    if (mp) assert.equal(await mp.stop(), 0);
  });

  test('exemptClients ["::ffff:127.0.0.5/128"] lets 127.0.0.5 relay and 127.0.0.1 is refused with 554 5.7.1', async () => {
    const exempt = (await SmtpClient.connect({ port: env.ports.mx, host: '127.0.0.1', localAddress: CLIENTS.exempt })).client;
    assert.equal((await exempt.ehlo()).code, 250);
    const sent = await exempt.send('webmail@example.com', ['friend@elsewhere.example'], message('mapped-exempt'));
    assert.equal(sent.rcpt[0]!.code, 250, sent.rcpt[0]!.text);
    assert.equal(sent.data?.code, 250, sent.data?.text);
    await exempt.quit();

    const other = (await SmtpClient.connect({ port: env.ports.mx, host: '127.0.0.1', localAddress: CLIENTS.untrusted })).client;
    assert.equal((await other.ehlo()).code, 250);
    assert.equal((await other.cmd('MAIL FROM:<someone@example.net>')).code, 250);
    const r = await other.cmd('RCPT TO:<victim@elsewhere.example>');
    assert.equal(r.lines[0], '554 5.7.1 <victim@elsewhere.example>: Relay access denied');
    await other.quit();

    // Both came in on the IPv6 socket, as ::ffff:127.0.0.x (the SMTP layer logs them unmapped).
    assert.match(mp.logs, new RegExp(`"mx=:::${env.ports.mx}/starttls"`));
    await mp.waitFor('both sessions logged', () => mp.logs.includes(`"client":"${CLIENTS.untrusted}"`) && mp.logs.includes(`"client":"${CLIENTS.exempt}"`));
  });

  test('mailplane validate refuses lanNetworks ["::ffff:0:0/96"] under lanBypass (the real binary)', async () => {
    const file = join(env.dir, 'mapped-open-relay.yaml');
    writeFileSync(file, baseConfig(env).replace(`lanNetworks: [${CLIENTS.lan}/32]`, 'lanNetworks: ["::ffff:0:0/96"]'));
    const r = await mailplane(['validate', '--format', 'json', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as { files: { errors: { code: string; path: string }[] }[] };
    assert.deepEqual(
      out.files[0]!.errors.map((e) => [e.code, e.path]),
      [['MP_OPEN_RELAY', 'smtp.auth.lanNetworks[0]']],
    );
  });
});
