// accounts.type: ldap against a real OpenLDAP server (Debian's slapd) with StartTLS and a test CA.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { issueCertificate } from '../src/tls/devcert.js';
import { baseConfig, makeEnv, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { LDAP_USERS, ldapAccounts, Slapd, slapdAvailable } from './helpers/slapd.js';
import { message, SmtpClient } from './helpers/smtp.js';

const available = slapdAvailable();
if (!available) {
  if (process.env.CI) throw new Error('slapd is required in CI (Debian packages slapd and ldap-utils)');
  console.warn('\n*** SKIPPED LOUDLY: slapd is not installed (apt-get install slapd ldap-utils); LDAP accounts are not tested here ***\n');
}

function withAccounts(env: Env, accounts: string): string {
  return baseConfig(env, { extraAuth: '    maxFailures: 1000\n' }).replace(/accounts:\n {2}local:\n {4}users:\n(?: {6}- .*\n)+/, accounts);
}

async function auth(env: Env, user: string, pass: string): Promise<string> {
  const c = (await SmtpClient.connect({ port: env.ports.submissions, implicitTls: true })).client;
  await c.ehlo();
  const r = await c.authPlain(user, pass);
  await c.quit();
  return r.lines[0]!;
}

async function rcpt(env: Env, to: string): Promise<string> {
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  await c.cmd('MAIL FROM:<x@example.net>');
  const r = await c.cmd(`RCPT TO:<${to}>`);
  await c.quit();
  return r.lines[0]!;
}

describe('LDAP accounts', { skip: !available }, () => {
  let slapd: Slapd;
  let env: Env;
  let mp: MailplaneProcess;

  before(async () => {
    slapd = await new Slapd().start();
    env = await makeEnv();
    mp = await startMailplane(env, withAccounts(env, ldapAccounts(env, slapd)));
  });
  after(async () => {
    await mp?.stop();
    await slapd?.stop();
  });

  test('AUTH with the directory password as name and as name@ every domain', async () => {
    for (const login of ['carol', 'carol@example.com', 'Carol@Example.Org']) {
      assert.match(await auth(env, login, LDAP_USERS.carol.password), /^235 /, login);
    }
    assert.equal((await mp.status()).accounts.backend, 'ldap');
    assert.equal(await mp.metric('mailplane_accounts_backend_up', 'backend="ldap"'), 1);
    assert.ok((await mp.metric('mailplane_accounts_lookup_duration_seconds_count', 'backend="ldap",operation="auth"'))! >= 3);
  });

  test('wrong password, unknown user, empty password and filter injection are refused', async () => {
    assert.equal(await auth(env, 'carol', 'wrong'), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await auth(env, 'nobody', 'x'), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await auth(env, 'carol', ''), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await auth(env, '*)(uid=*', LDAP_USERS.carol.password), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await auth(env, '*', LDAP_USERS.dave.password), '535 5.7.8 Authentication credentials invalid');
  });

  test('RCPT: users and their mail aliases exist at every domain, others are unknown; mail lands in the Maildir', async () => {
    assert.match(await rcpt(env, 'carol@example.com'), /^250 /);
    assert.match(await rcpt(env, 'sales@example.com'), /^250 /, 'alias from the mail attribute');
    assert.match(await rcpt(env, 'dave@example.org'), /^250 /);
    assert.equal(await rcpt(env, 'nobody@example.com'), '550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown');
    assert.match(await rcpt(env, '*@example.com'), /^550 /);
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await c.ehlo();
    assert.equal((await c.send('x@example.net', ['sales@example.org'], message('to sales'))).data!.code, 250);
    await c.quit();
    const { readdirSync } = await import('node:fs');
    assert.equal(readdirSync(join(env.dataDir, 'mail', 'carol', 'new')).length, 1);
  });

  test('directory down: AUTH 454, RCPT 451, nothing opened; back up: works without a restart', async () => {
    await slapd.stop();
    await new Promise((r) => setTimeout(r, 600)); // past the recipient cache TTL
    assert.equal(await auth(env, 'dave', LDAP_USERS.dave.password), '454 4.7.0 Temporary authentication failure, try again later');
    assert.equal(await rcpt(env, 'dave@example.com'), '451 4.4.3 Recipient lookup failed temporarily, try again later');
    assert.equal(await rcpt(env, 'friend@elsewhere.example'), '554 5.7.1 <friend@elsewhere.example>: Relay access denied', 'still no open relay');
    assert.equal(await mp.metric('mailplane_accounts_backend_up', 'backend="ldap"'), 0);
    const s = await mp.status();
    assert.equal(s.accounts.up, false);
    await slapd.start();
    await mp.waitFor('directory back', async () => /^235 /.test(await auth(env, 'dave', LDAP_USERS.dave.password)));
    assert.match(await rcpt(env, 'dave@example.com'), /^250 /);
    assert.equal(await mp.metric('mailplane_accounts_backend_up', 'backend="ldap"'), 1);
  });

  test('certificate verification is on: a directory certificate from an unknown CA is refused (454)', async () => {
    const otherCa = issueCertificate({ commonName: 'some other CA', isCA: true });
    const caFile = join(env.dir, 'other-ca.pem');
    writeFileSync(caFile, otherCa.certPem);
    writeFileSync(env.configFile, withAccounts(env, ldapAccounts(env, slapd, caFile)));
    await mp.waitFor('reload', async () => (await mp.status()).applied.generation === 2);
    assert.equal(await auth(env, 'carol', LDAP_USERS.carol.password), '454 4.7.0 Temporary authentication failure, try again later');
    writeFileSync(env.configFile, withAccounts(env, ldapAccounts(env, slapd)));
    await mp.waitFor('reload', async () => (await mp.status()).applied.generation === 3);
    assert.match(await auth(env, 'carol', LDAP_USERS.carol.password), /^235 /);
  });
});

describe('switching accounts.type live', { skip: !available }, () => {
  test('local → ldap → local: new sessions follow, a session in progress keeps its backend', async () => {
    const slapd = await new Slapd().start();
    const env = await makeEnv();
    const mp = await startMailplane(env, baseConfig(env));
    try {
      assert.match(await auth(env, 'alice', USERS.alice.password), /^235 /);
      assert.match(await auth(env, 'carol', LDAP_USERS.carol.password), /^535 /);
      const pinned = (await SmtpClient.connect({ port: env.ports.mx })).client;
      await pinned.ehlo();
      assert.equal((await pinned.cmd('MAIL FROM:<x@example.net>')).code, 250);
      writeFileSync(env.configFile, withAccounts(env, ldapAccounts(env, slapd)));
      await mp.waitFor('ldap applied', async () => (await mp.status()).accounts.backend === 'ldap');
      assert.match(await auth(env, 'carol', LDAP_USERS.carol.password), /^235 /);
      assert.match(await auth(env, 'alice', USERS.alice.password), /^535 /);
      assert.match((await pinned.cmd('RCPT TO:<alice@example.com>')).lines[0]!, /^250 /, 'pinned to the local backend');
      await pinned.quit();
      writeFileSync(env.configFile, baseConfig(env));
      await mp.waitFor('local applied', async () => (await mp.status()).accounts.backend === 'local');
      assert.match(await auth(env, 'alice', USERS.alice.password), /^235 /);
      assert.match(await auth(env, 'carol', LDAP_USERS.carol.password), /^535 /);
    } finally {
      await mp.stop();
      await slapd.stop();
    }
  });
});
