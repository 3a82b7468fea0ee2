// mailboxes.store: lmtp and mailboxes.dovecot.passwdFile with a real Dovecot (Debian's 2.3),
// configured with the blocks docs/dovecot.md prints (read from there: only paths, ports, group
// names and the certificate are moved): mail comes in over SMTP, is queued, delivered over LMTP
// and read over IMAPS and POP3S byte for byte; the accounts Dovecot checks are the passwd-file
// mailplane writes on every reload; Dovecot stopped keeps the mail queued until it is back; a
// recipient Dovecot refuses is bounced alone. Then the maildir store with the same file, and
// Dovecot's LDAP passdb/userdb against the slapd the LDAP tests use.
// Needs root (users, Dovecot's privilege drop) and Debian's dovecot-imapd, -pop3d, -lmtpd, -ldap.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';
import { baseConfig, makeEnv, startMailplane, waitFor, type Env, type MailplaneProcess } from './helpers/server.js';
import { TestDns } from './helpers/dns.js';
import { LDAP_USERS, SERVICE, Slapd, slapdAvailable } from './helpers/slapd.js';
import { SmtpClient } from './helpers/smtp.js';
import { tempDir } from './helpers/tmp.js';
import { docBlock } from './helpers/docs.js';
import { ensureUser, idOf } from './helpers/system-users.js';
import { imapLogin, pop3Retr, type Imap } from './helpers/imap.js';
import { Dovecot, dovecotDir, dovecotMissing, lmtpDovecotBlock, lmtpMailplaneBlock } from './helpers/dovecot.js';

// test-only name for the docs' `vmail` (Dovecot's mail user, and the group of the passwd-file)
const VMAIL = 'mptest-lmtp-vmail';
// one user per hash scheme mailplane accepts; the same password for SMTP AUTH and IMAP
const USERS = {
  alice: { password: 'pw-ARGON2ID', hash: '$argon2id$v=19$m=65536,t=3,p=1$stNB+b+aPhYWfaiBFHIlfA$hDSzLob3mmdUsCYl99uM31rjinDhxXMaBiVrEns4/ko', scheme: 'ARGON2ID' },
  bob: { password: 'pw-BLF-CRYPT', hash: '$2y$05$laK2miUAfEPNtK8YByficeQqvNZhQSYqOPyGw1bgTDh81BCjSBEDi', scheme: 'BLF-CRYPT' },
  carol: { password: 'pw-SHA512-CRYPT', hash: '$6$iGOUrWoHAbgE0chq$nLI7oZ2xv65PjvEdyu3Tw/2j7Qsocx22wsNK9EPRgUEUv2pfVcgBF8DL9iby6Uuv/DLYZ5YHYUUBZ7s1C8iq..', scheme: 'SHA512-CRYPT' },
  dave: { password: 'pw-SHA256-CRYPT', hash: '$5$2Wb9XnXzCCpOHvRb$9Juc3rnfPfOSqT9oSSkUQ2bHLre0lycQzpHhq/8a5rC', scheme: 'SHA256-CRYPT' },
} as const;
type User = keyof typeof USERS;

const missing = dovecotMissing();
const available = missing === null;
if (!available) {
  if (process.env.CI) throw new Error(`the Dovecot LMTP test cannot run in CI: ${missing}`);
  console.warn(`\n*** SKIPPED LOUDLY: ${missing}; delivery over LMTP and the Dovecot passwd-file are not tested here ***\n`);
}
const ldapAvailable = available && slapdAvailable() && existsSync('/usr/lib/dovecot/modules/auth/libauthdb_ldap.so');
if (available && !ldapAvailable) {
  if (process.env.CI) throw new Error('the Dovecot LDAP test needs slapd and dovecot-ldap in CI');
  console.warn('\n*** SKIPPED LOUDLY: slapd or dovecot-ldap is missing; Dovecot with LDAP accounts is not tested here ***\n');
}

async function imapAs(port: number, user: User): Promise<Imap> {
  const c = await imapLogin(port, user, USERS[user].password);
  assert.ok(c, `${user} logs in to IMAP`);
  return c;
}

/** SMTP to the mx listener: MAIL (with BODY=8BITMIME), RCPT each, DATA; the final reply must be 250. */
async function deliver(env: Env, from: string, to: string[], body: Buffer | string): Promise<void> {
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  assert.equal((await c.cmd(`MAIL FROM:<${from}> BODY=8BITMIME`)).code, 250);
  for (const t of to) assert.equal((await c.cmd(`RCPT TO:<${t}>`)).code, 250, t);
  const [, done] = await c.data(body);
  assert.equal(done.code, 250, done.text);
  await c.quit();
}

function usersYaml(names: readonly User[]): string {
  return names.map((n) => `      - { name: ${n}, passwordHash: "${USERS[n].hash}"${n === 'alice' ? ', aliases: [postmaster, info]' : ''} }\n`).join('');
}

/** The TLS block of the docs, on the test's ports and certificate. */
function tlsBlock(env: Env, imaps: number, pop3s: number): string {
  return docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (ports moved")
    .replace('port = 993', `port = ${imaps}`)
    .replace('port = 995', `port = ${pop3s}`)
    .replaceAll('/etc/mailplane/tls.crt', env.certFile)
    .replaceAll('/etc/mailplane/tls.key', env.keyFile);
}

/** A data dir like /var/lib/mailplane: others pass through (the passwd-file's folder is in the group). */
function prepareEnv(env: Env): void {
  chmodSync(env.dir, 0o711);
}

describe('store lmtp: mailplane delivers to Dovecot over LMTP, IMAPS and POP3S read it, accounts from the passwd-file', { skip: !available }, () => {
  let env: Env;
  let mp: MailplaneProcess;
  let dovecot: Dovecot;
  let imaps: number;
  let pop3s: number;
  let lmtp: number;
  let passwdFile: string;
  let config: (users: readonly User[], extra?: string) => string;
  let dns: TestDns | undefined;
  const deferred = async () => (await mp.metric('mailplane_delivery_total', 'transport="lmtp",result="deferred"')) ?? 0;
  const reload = async () => {
    const r = await mp.http('/-/reload', { method: 'POST' });
    const body = (await r.json()) as { outcome: string; errors: string[] };
    assert.equal(r.status, 200, JSON.stringify(body));
    return body;
  };

  before(async () => {
    ensureUser(VMAIL);
    env = await makeEnv();
    prepareEnv(env);
    [imaps, pop3s, lmtp] = [await freePort(), await freePort(), await freePort()];
    const { dir, store } = dovecotDir('dovecot-lmtp', VMAIL);
    passwdFile = join(env.dataDir, 'dovecot', 'passwd');

    const mailplaneBlock = lmtpMailplaneBlock({ dataDir: env.dataDir, vmail: VMAIL, lmtp });
    assert.match(mailplaneBlock, /store: lmtp/);
    config = (users, extra = '') =>
      baseConfig(env, {
        maxMessageSize: '5MB',
        users: usersYaml(users),
        delivery: `delivery:\n  minRetryDelay: 1s\n  maxRetryDelay: 2s\n  dns: { servers: [127.0.0.1:${env.ports.dns}], timeout: 1s }\n`,
      }).replace(
        /storage:\n {2}dataDir: .*\n/,
        // spoofed mail from our own domains is junk (DNS: a loopback server that knows nothing)
        `inbound:\n  checks: { ownDomains: junk }\n${extra}${mailplaneBlock}`,
      );
    dns = await new TestDns({}).startOn(env.ports.dns);
    mp = await startMailplane(env, config(['alice', 'bob', 'carol', 'dave']));

    dovecot = new Dovecot(dir, [imaps, pop3s, lmtp]);
    const lmtpBlock = lmtpDovecotBlock({ dataDir: env.dataDir, store, vmail: VMAIL, lmtp });
    dovecot.write(`${lmtpBlock}\n${tlsBlock(env, imaps, pop3s)}`);
    await dovecot.start();
  });

  after(async () => {
    await dovecot?.stop();
    await mp?.stop();
    dns?.stop();
  });

  test('the passwd-file: every user with its hash in Dovecot scheme syntax, mode 0640, the mail group; no hash in logs or /status', async () => {
    const text = readFileSync(passwdFile, 'utf8');
    for (const [name, u] of Object.entries(USERS)) assert.ok(text.includes(`\n${name}:{${u.scheme}}${u.hash}::::::\n`), `${name} in\n${text}`);
    assert.doesNotMatch(text, /^postmaster:/m, 'alice receives postmaster@: no locked stand-in');
    const st = statSync(passwdFile);
    assert.equal(st.mode & 0o7777, 0o640);
    assert.equal(st.gid, idOf('-g', VMAIL));
    const status = JSON.stringify(await mp.status());
    for (const u of Object.values(USERS)) {
      assert.ok(!status.includes(u.hash), 'no hash in /status');
      assert.ok(!mp.logs.includes(u.hash), 'no hash in the log');
    }
    const s = (await mp.status()).mailboxes;
    assert.equal(s.store, 'lmtp');
    assert.equal(s.lmtp.address, `127.0.0.1:${lmtp}`);
    assert.equal(s.dovecotPasswdFile.path, passwdFile);
    assert.equal(s.dovecotPasswdFile.users, 4);
  });

  test('SMTP in → LMTP → IMAP FETCH byte for byte, and POP3 RETR; an alias is delivered to its user once', async () => {
    const line = `${'y'.repeat(76)}\r\n`;
    const original = Buffer.concat([
      Buffer.from(
        'From: sender@example.net\r\nTo: alice@example.com\r\nSubject: byte for byte\r\nMessage-ID: <bytes@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
      ),
      Buffer.from('.a line that starts with a dot\r\n..two dots\r\nGrüße, ½ € — 8-bit text\r\n\r\n', 'utf8'),
      Buffer.from(line.repeat(Math.ceil((1200 * 1024) / line.length))), // over 1 MiB: the body is spooled on the way in
      Buffer.from('.\r\nthe end\r\n'),
    ]);
    await deliver(env, 'sender@example.net', ['alice@example.com', 'info@example.org'], original);
    await mp.waitQueueEmpty();
    const c = await imapAs(imaps, 'alice');
    try {
      assert.equal(await c.count(), 1, 'alice@ and her alias info@: one copy');
      const got = await c.fetch(1);
      const at = got.length - original.length;
      assert.ok(got.subarray(at).equals(original), 'the message as sent, byte for byte, after the trace headers');
      const head = got.subarray(0, at).toString('latin1');
      assert.match(head, /^Return-Path: <sender@example\.net>\r\n/, 'Dovecot writes the Return-Path');
      assert.match(head, /with LMTP/, "Dovecot's Received line");
      assert.match(head, /Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.com \(mailplane\) with ESMTP id \w+\r\n\t[^\r]+\r\n$/, 'our Received line last');
      assert.equal((head.match(/^Return-Path:/gm) ?? []).length, 1, 'one Return-Path: ours is not sent');
    } finally {
      c.close();
    }
    const popped = await pop3Retr(pop3s, 'alice', USERS.alice.password);
    assert.ok(popped.subarray(popped.length - original.length).equals(original), 'POP3 RETR gives the same bytes');
    assert.equal(await mp.metric('mailplane_delivery_total', 'transport="lmtp",result="delivered"'), 1);
    assert.ok(((await mp.metric('mailplane_delivery_duration_seconds_count', 'transport="lmtp"')) ?? 0) >= 1);
    assert.equal(await mp.metric('mailplane_delivery_total', 'transport="local",result="delivered"'), undefined, 'nothing written into Maildirs');
    assert.equal(await mp.metric('mailplane_lmtp_up'), 1);
    assert.match(mp.logs, /"msg":"recipient delivered".*"to":"alice@example\.com".*"transport":"lmtp","relay":"lmtp:127\.0\.0\.1:\d+".*"reply":"250 2\.0\.0 <alice> /);
    assert.ok(!existsSync(join(env.dataDir, 'mail', 'alice')), 'no Maildir of mailplane’s own');
  });

  test('the same password works for SMTP AUTH and IMAP, for every hash scheme; a wrong one for neither', async () => {
    for (const [name, u] of Object.entries(USERS) as [User, (typeof USERS)[User]][]) {
      const s = (await SmtpClient.connect({ port: env.ports.submission })).client;
      await s.ehlo();
      assert.equal((await s.starttls()).code, 220);
      await s.ehlo();
      assert.equal((await s.authPlain(name, u.password)).code, 235, `${name} (${u.scheme}) over SMTP`);
      await s.quit();
      const c = await imapLogin(imaps, name, u.password);
      assert.ok(c, `${name} (${u.scheme}) over IMAP\n${dovecot.log.slice(-2000)}`);
      c.close();
      assert.equal(await imapLogin(imaps, name, `${u.password}x`), null, `${name}: a wrong password is refused`);
    }
  });

  test('a user added to mailserver.yaml logs in after the reload, a removed one no longer can; an unchanged file is not rewritten', async () => {
    const before = statSync(passwdFile);
    // a change elsewhere: the file's content is the same, so it stays as it was
    writeFileSync(env.configFile, config(['alice', 'bob', 'carol', 'dave']).replace('maxMessageSize: "5MB"', 'maxMessageSize: "6MB"'));
    assert.equal((await reload()).outcome, 'applied');
    const same = statSync(passwdFile);
    assert.equal(same.ino, before.ino, 'not replaced');
    assert.equal(same.mtimeMs, before.mtimeMs, 'not written');
    assert.equal(await imapLogin(imaps, 'erin', 'erin-pw'), null);
    // erin is added (bcrypt, as `htpasswd -nbB` makes it) and dave removed
    const erin = '$2y$05$YJSwcfwVFsT4I5XNMhTXre7JYZPRiDwgVbuULAodMOStve10VAx1C';
    writeFileSync(
      env.configFile,
      config(['alice', 'bob', 'carol'])
        .replace(/( {6}- \{ name: carol.*\n)/, `$1      - { name: erin, passwordHash: "${erin}" }\n`)
        .replace('maxMessageSize: "5MB"', 'maxMessageSize: "6MB"'),
    );
    const r = await reload();
    assert.equal(r.outcome, 'applied');
    assert.ok(
      (r as unknown as { plan: string[] }).plan.some((p) => /update Dovecot's passwd-file/.test(p) && /users added: erin/.test(p) && /users removed: dave/.test(p)),
      JSON.stringify(r),
    );
    assert.notEqual(statSync(passwdFile).ino, before.ino, 'replaced by a rename');
    const c = await imapLogin(imaps, 'erin', 'erin-pw');
    assert.ok(c, `erin logs in after the reload\n${dovecot.log.slice(-1500)}`);
    c.close();
    assert.equal(await imapLogin(imaps, 'dave', USERS.dave.password), null, 'dave no longer can');
    // a new password for bob applies the same way
    writeFileSync(env.configFile, config(['alice', 'bob', 'carol', 'dave']));
    await reload();
    assert.ok(await imapLogin(imaps, 'dave', USERS.dave.password).then((x) => (x?.close(), x !== null)));
  });

  test('Dovecot stopped: the message waits in the queue; delivered exactly once when Dovecot is back', async () => {
    await dovecot.stop();
    const before = await deferred();
    await deliver(env, 'sender@example.net', ['bob@example.com'], 'Subject: while Dovecot was down\r\n\r\nqueued\r\n');
    await mp.waitFor('the deferral', async () => (await deferred()) > before, 15_000);
    const s = await mp.status();
    assert.equal(s.queue.active + s.queue.deferred, 1, 'in the queue');
    assert.equal(await mp.metric('mailplane_lmtp_up'), 0);
    assert.match(s.mailboxes.lmtp.lastError, /refused the connection/);
    const list = spawnSync(process.execPath, [join(ROOT, 'bin', 'mailplane.js'), 'queue', 'list', '--data-dir', env.dataDir], { encoding: 'utf8' });
    assert.match(list.stdout, /bob@example\.com\s+pending/, list.stdout + list.stderr);
    await dovecot.start();
    await mp.waitQueueEmpty(30_000);
    const c = await imapAs(imaps, 'bob');
    try {
      assert.equal(await c.count(), 1, 'delivered once');
      assert.match((await c.fetch(1)).toString('latin1'), /Subject: while Dovecot was down/);
      await new Promise((r) => setTimeout(r, 2500)); // past the next retry time: nothing comes twice
      assert.equal(await c.count(), 1, 'still once');
    } finally {
      c.close();
    }
    assert.equal(await mp.metric('mailplane_lmtp_up'), 1);
  });

  test('a recipient Dovecot refuses with 550 is bounced alone, the other is delivered', async () => {
    // carol is removed while a message for her and dave waits (Dovecot down): Dovecot no longer knows her
    await dovecot.stop();
    const before = await deferred();
    await deliver(env, 'bob@example.com', ['carol@example.com', 'dave@example.com'], 'From: Bob <bob@example.net>\r\nSubject: for two\r\n\r\nhello\r\n');
    await mp.waitFor('both deferred', async () => (await deferred()) >= before + 2, 15_000);
    writeFileSync(env.configFile, config(['alice', 'bob', 'dave']));
    await reload();
    await dovecot.start();
    await mp.waitQueueEmpty(30_000);
    await mp.waitFor('the bounce delivered to bob', async () => ((await mp.metric('mailplane_delivery_total', 'transport="lmtp",result="bounced"')) ?? 0) >= 1);
    const d = await imapAs(imaps, 'dave');
    try {
      assert.equal(await d.count(), 1);
    } finally {
      d.close();
    }
    const b = await imapAs(imaps, 'bob');
    try {
      await waitFor('the DSN in bob’s inbox', async () => (await b.count()) === 2, 15_000);
      const dsn = (await b.fetch(2)).toString('latin1');
      assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/);
      assert.match(dsn, /Final-Recipient: rfc822; ?carol@example\.com/);
      assert.match(dsn, /Status: 5\.1\.1/);
      assert.match(dsn, /550 5\.1\.1 <carol> User doesn't exist/);
      assert.doesNotMatch(dsn, /Final-Recipient: rfc822; ?dave@/, 'dave was delivered: not in the bounce');
    } finally {
      b.close();
    }
    assert.match(mp.logs, /"msg":"recipient bounced".*"to":"carol@example\.com".*"transport":"lmtp"/);
  });

  test('junk (inbound.checks) goes to RCPT TO:<alice+Junk>: Dovecot files it in the folder Junk', async () => {
    const spoof = 'From: ceo@example.com\r\nTo: alice@example.com\r\nSubject: wire the money\r\nMessage-ID: <spoof-lmtp@x.test>\r\n\r\nUrgent.\r\n';
    const c = await imapAs(imaps, 'alice');
    try {
      const inbox = await c.count();
      await deliver(env, 'ceo@example.com', ['alice@example.com'], spoof);
      await mp.waitQueueEmpty();
      assert.match(await c.cmd('LIST "" "*"'), /^\* LIST \([^)]*\) "\." "?Junk"?\r$/m, dovecot.log.slice(-1500));
      assert.equal(await c.count('Junk'), 1);
      assert.match((await c.fetch(1, 'Junk')).toString('latin1'), /Subject: wire the money/);
      assert.equal(await c.count(), inbox, 'not in the inbox');
    } finally {
      c.close();
    }
    assert.match(mp.logs, /"msg":"recipient delivered".*"to":"alice@example\.com".*"reply":"250 2\.0\.0 <alice\+Junk> /);
  });
});

describe('store maildir with the passwd-file: Dovecot reads the Maildirs mailplane writes, homes from the file', { skip: !available }, () => {
  let env: Env;
  let mp: MailplaneProcess;
  let dovecot: Dovecot;
  let imaps: number;
  let pop3s: number;

  before(async () => {
    ensureUser(VMAIL);
    env = await makeEnv();
    prepareEnv(env);
    [imaps, pop3s] = [await freePort(), await freePort()];
    const block = docBlock('dovecot.md', '<!-- test/dovecot-lmtp.test.ts runs mailplane with this block (maildir store')
      .replaceAll('/var/lib/mailplane', env.dataDir)
      .replace(/\bvmail\b/g, VMAIL);
    assert.match(block, /store: maildir/);
    mp = await startMailplane(env, baseConfig(env, { users: usersYaml(['alice', 'bob']) }).replace(/storage:\n {2}dataDir: .*\n/, block));
    const dir = tempDir('dovecot-maildir');
    chmodSync(dir, 0o711);
    dovecot = new Dovecot(dir, [imaps, pop3s]);
    const snippet = docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (maildir store")
      .replaceAll('/var/lib/mailplane', env.dataDir)
      .replace(/\bvmail\b/g, VMAIL);
    dovecot.write(`${snippet}\n${tlsBlock(env, imaps, pop3s)}`);
    await dovecot.start();
  });

  after(async () => {
    await dovecot?.stop();
    await mp?.stop();
  });

  test('each user’s Maildir is their home in the file; mail written by mailplane is read and flagged over IMAPS, with the documented modes', async () => {
    const text = readFileSync(join(env.dataDir, 'dovecot', 'passwd'), 'utf8');
    assert.ok(text.includes(`\nbob:{BLF-CRYPT}${USERS.bob.hash}::::${env.dataDir}/mail/bob::\n`), text);
    await deliver(env, 'sender@example.net', ['bob@example.com'], 'Subject: shared maildir\r\n\r\nread by Dovecot\r\n');
    const files = readdirSync(join(env.dataDir, 'mail', 'bob', 'new'));
    assert.equal(files.length, 1);
    const st = statSync(join(env.dataDir, 'mail', 'bob', 'new', files[0]!));
    assert.equal(st.mode & 0o7777, 0o640);
    assert.equal(st.gid, idOf('-g', VMAIL));
    const c = await imapAs(imaps, 'bob');
    try {
      const sel = await c.cmd('SELECT INBOX');
      assert.match(sel, /^\* 1 EXISTS/m);
      assert.match(sel, /\[READ-WRITE\]/, 'the group may write');
      assert.match((await c.fetch(1)).toString('latin1'), /^Return-Path: <sender@example\.net>\r\nDelivered-To: bob@example\.com\r\n/);
      await c.cmd('SELECT INBOX');
      await c.cmd('STORE 1 +FLAGS (\\Seen)');
    } finally {
      c.close();
    }
    assert.ok(
      readdirSync(join(env.dataDir, 'mail', 'bob', 'cur')).some((f) => f.endsWith(':2,S')),
      dovecot.log.slice(-1500),
    );
    const popped = await pop3Retr(pop3s, 'bob', USERS.bob.password);
    assert.match(popped.toString('latin1'), /Subject: shared maildir/);
  });
});

describe('LDAP accounts: Dovecot’s passdb and userdb ask the directory mailplane asks', { skip: !ldapAvailable }, () => {
  let env: Env;
  let mp: MailplaneProcess;
  let dovecot: Dovecot;
  let slapd: Slapd;
  let imaps: number;
  let lmtp: number;

  before(async () => {
    ensureUser(VMAIL);
    slapd = await new Slapd().start();
    env = await makeEnv();
    prepareEnv(env);
    [imaps, lmtp] = [await freePort(), await freePort()];
    const pop3s = await freePort();
    const accounts = `accounts:
  type: ldap
  ldap:
    url: ${slapd.url}
    startTls: true
    caFile: ${slapd.caFile}
    bindDn: ${SERVICE.dn}
    bindPasswordFile: ldap-bind-password
    userBase: ou=people,dc=example,dc=com
    userFilter: "(&(objectClass=inetOrgPerson)(uid={user}))"
`;
    writeFileSync(join(env.dir, 'ldap-bind-password'), `${SERVICE.password}\n`);
    const config = baseConfig(env)
      .replace(/accounts:\n {2}local:\n {4}users:\n(?: {6}- .*\n)+/, accounts)
      .replace(/storage:\n {2}dataDir: .*\n/, `storage:\n  dataDir: ${env.dataDir}\nmailboxes:\n  store: lmtp\n  lmtp: { address: 127.0.0.1:${lmtp} }\n`);
    mp = await startMailplane(env, config);

    const { dir, store } = dovecotDir('dovecot-ldap', VMAIL);
    // the CA, where Dovecot's auth process (user dovecot) reads it
    writeFileSync(join(dir, 'ldap-ca.pem'), readFileSync(slapd.caFile), { mode: 0o644 });
    const ext = docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (LDAP; the test")
      .replace('ldap://ldap.example.com', slapd.url)
      .replace('/etc/mailplane/ldap-ca.pem', join(dir, 'ldap-ca.pem'))
      .replace('the-bind-password', SERVICE.password);
    assert.match(ext, new RegExp(`^dn = ${SERVICE.dn}$`, 'm'), 'the docs name the same service account');
    writeFileSync(join(dir, 'dovecot-ldap.conf.ext'), ext, { mode: 0o600 });
    // the lmtp store's block, with LDAP in place of the passwd-file
    const lmtpBlock = lmtpDovecotBlock({ dataDir: env.dataDir, store, vmail: VMAIL, lmtp })
      .replace(/passdb \{[^}]*\}\n/, '')
      .replace(/userdb \{[^}]*\}\n/, '')
      .replace(/service auth \{[^}]*\}\n/, '');
    assert.doesNotMatch(lmtpBlock, /passwd-file/);
    const ldapBlock = docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (LDAP)").replaceAll(
      '/etc/dovecot/dovecot-ldap.conf.ext',
      join(dir, 'dovecot-ldap.conf.ext'),
    );
    dovecot = new Dovecot(dir, [imaps, pop3s, lmtp]);
    dovecot.write(`${lmtpBlock}\n${ldapBlock}\n${tlsBlock(env, imaps, pop3s)}`);
    await dovecot.start();
  });

  after(async () => {
    await dovecot?.stop();
    await mp?.stop();
    await slapd?.stop();
  });

  test('mail to a directory user and an alias of theirs is delivered over LMTP once; they log in to IMAP with their directory password', async () => {
    await deliver(env, 'sender@example.net', ['carol@example.com', 'sales@example.org'], 'Subject: for carol\r\n\r\nfrom the directory\r\n');
    await mp.waitQueueEmpty(20_000);
    const c = await imapLogin(imaps, 'carol', LDAP_USERS.carol.password);
    assert.ok(c, `carol logs in with her directory password\n${dovecot.log.slice(-2000)}`);
    try {
      assert.equal(await c.count(), 1, 'carol@ and sales@ (her alias): one copy');
      assert.match((await c.fetch(1)).toString('latin1'), /Subject: for carol/);
    } finally {
      c.close();
    }
    assert.equal(await imapLogin(imaps, 'carol', 'wrong'), null);
    const d = await imapLogin(imaps, 'dave', LDAP_USERS.dave.password);
    assert.ok(d);
    d.close();
  });
});
