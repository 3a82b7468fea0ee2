// Spam filtering through a real Rspamd (Debian's, started on loopback with no network lookups):
// GTUBE refused with 554 and nothing stored; its add-header variant filed in the junk folder and
// rewrite-subject variant with Rspamd's subject; soft reject and greylist answered 451; a clean
// message delivered with the score headers; headers Rspamd adds or removes applied; an
// authenticated user's spam refused; trusted clients sent as such; a message over maxSize
// delivered unscanned and marked; one scan for 25 recipients; a spooled body scanned from its
// file; Rspamd stopped → onError (accept marks and delivers, tempfail answers 451) and recovery;
// a silent Rspamd never holds a message longer than the timeout.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { GTUBE, rspamdOrSkip, TestRspamd } from './helpers/rspamd.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { SmtpClient } from './helpers/smtp.js';

function stored(env: Env, user: string, subject: string, folder = ''): string | undefined {
  const dir = join(env.dataDir, 'mail', user, folder, 'new');
  if (!existsSync(dir)) return undefined;
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'latin1'))
    .find((m) => m.includes(`\r\nX-Test-Id: ${subject}\r\n`));
}

function anywhere(env: Env, id: string): string | undefined {
  return stored(env, 'alice', id) ?? stored(env, 'alice', id, '.Junk');
}

function field(msg: string, name: string): string[] {
  const head = msg.slice(0, msg.indexOf('\r\n\r\n'));
  return head
    .split(/\r\n(?![ \t])/)
    .map((f) => f.replace(/\r\n[ \t]+/g, ' '))
    .filter((f) => f.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((f) => f.slice(name.length + 1).trim());
}

function mail(id: string, body = 'Hello, a perfectly ordinary message.\r\n', extra = '', subject = id): string {
  return `From: sender@example.net\r\nTo: alice@example.com\r\nSubject: ${subject}\r\nX-Test-Id: ${id}\r\nMessage-ID: <${id.replace(/\W/g, '')}@x.test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n${extra}\r\n${body}`;
}

async function send(env: Env, body: string, o: { from?: string; to?: string[]; auth?: boolean; sender?: string } = {}): Promise<string> {
  const { client } = await SmtpClient.connect({ port: o.auth ? env.ports.submission : env.ports.mx, localAddress: o.from ?? CLIENTS.untrusted });
  await client.ehlo('client.x.test');
  if (o.auth) {
    await client.starttls();
    await client.ehlo('client.x.test');
    assert.equal((await client.authPlain('alice', USERS.alice.password)).code, 235);
  }
  const r = await client.send(o.sender ?? (o.auth ? 'alice@example.com' : 'sender@example.net'), o.to ?? ['alice@example.com'], body);
  await client.quit();
  const d = r.data ?? r.rcpt.find((x) => x.code !== 250) ?? r.mail;
  return `${d.code} ${d.text}`;
}

describe('spam filtering through Rspamd', { skip: !rspamdOrSkip() }, () => {
  let env: Env;
  let server: MailplaneProcess;
  let dns: TestDns;
  let rspamd: TestRspamd;
  const users = Array.from({ length: 25 }, (_, i) => `      - { name: u${i + 1}, passwordHash: "${USERS.alice.hash}" }\n`).join('');
  const config = (spam: string) =>
    baseConfig(env, {
      maxMessageSize: '5MB',
      users: `      - { name: alice, passwordHash: "${USERS.alice.hash}", aliases: [postmaster, info] }\n      - { name: bob, passwordHash: "${USERS.bob.hash}" }\n${users}`,
    }).replace(/^storage:\n/m, `inbound:\n  spamFilter: { ${spam} }\nstorage:\n`);
  const normal = () => `type: rspamd, url: "${rspamd.url}", timeout: 3s, onError: accept, maxSize: 2MB`;

  before(async () => {
    env = await makeEnv();
    dns = await new TestDns({}).startOn(env.ports.dns);
    rspamd = await new TestRspamd(env.ports.dns).start();
    writeFileSync(env.configFile, config(normal()));
    server = await startMailplane(env, config(normal()));
  });

  after(async () => {
    await server?.stop();
    await rspamd?.stop();
    dns?.stop();
  });

  test("GTUBE: 554 5.7.1 with Rspamd's message, nothing stored", async () => {
    assert.match(await send(env, mail('gtube', `${GTUBE.reject}\r\n`)), /^554 5\.7\.1 Message rejected as spam: Gtube pattern/);
    assert.equal(anywhere(env, 'gtube'), undefined);
    assert.equal(await server.metric('mailplane_spam_scans_total', 'action="reject"'), 1);
    assert.match(server.logs, /"msg":"refused".*"command":"DATA".*"reason":"spam"/);
  });

  test('a clean message: delivered with X-Spamd-Result and X-Spam-Score', async () => {
    assert.match(await send(env, mail('clean')), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'alice', 'clean'));
    assert.match(field(msg, 'X-Spamd-Result')[0]!, /^default: False \[-?\d+\.\d\d \/ 15\.00\]/);
    assert.match(field(msg, 'X-Spam-Score')[0]!, /^-?\d+\.\d\d$/);
    assert.deepEqual(field(msg, 'X-Spam'), []);
  });

  test("add header: X-Spam: Yes, filed in the junk folder; rewrite subject: Rspamd's subject", async () => {
    assert.match(await send(env, mail('add-header', `${GTUBE.addHeader}\r\n`)), /^250/);
    const junk = await server.waitFor('junked', () => stored(env, 'alice', 'add-header', '.Junk'));
    assert.deepEqual(field(junk, 'X-Spam'), ['Yes']);
    assert.match(field(junk, 'X-Spamd-Result')[0]!, /^default: True \[6\.00 \/ 15\.00\]; GTUBE/);
    assert.equal(stored(env, 'alice', 'add-header'), undefined, 'not in the inbox');

    assert.match(await send(env, mail('rewrite', `${GTUBE.rewriteSubject}\r\n`, '', 'Cheap watches')), /^250/);
    const rewritten = await server.waitFor('stored', () => stored(env, 'alice', 'rewrite'));
    assert.deepEqual(field(rewritten, 'Subject'), ['*** SPAM *** Cheap watches']);
    assert.equal(await server.metric('mailplane_spam_scans_total', 'action="add_header"'), 1);
    assert.equal(await server.metric('mailplane_spam_scans_total', 'action="rewrite_subject"'), 1);
  });

  test('soft reject and greylist: 451 4.7.1, nothing stored', async () => {
    assert.match(await send(env, mail('soft', 'x\r\n', 'X-Test-Verdict: soft reject\r\n')), /^451 4\.7\.1 Message deferred by the spam filter: test verdict soft reject, try again later/);
    assert.match(await send(env, mail('grey', 'x\r\n', 'X-Test-Verdict: greylist\r\n')), /^451 4\.7\.1 Greylisted/);
    assert.equal(anywhere(env, 'soft'), undefined);
    assert.equal(anywhere(env, 'grey'), undefined);
  });

  test('headers Rspamd asks to add or remove are applied', async () => {
    assert.match(await send(env, mail('milter', 'x\r\n', 'X-Test-Milter: yes\r\nX-Test-Remove: one\r\nX-Test-Remove: two\r\n')), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'alice', 'milter'));
    assert.deepEqual(field(msg, 'X-Test-Added'), ['by rspamd']);
    assert.deepEqual(field(msg, 'X-Test-Remove'), []);
    assert.match(field(msg, 'X-Spamd-Result')[0]!, /MP_TEST_MILTER\(1\.50\)/);
  });

  test("an authenticated user's spam is refused and the user logged; a trusted client is scanned as trusted", async () => {
    assert.match(await send(env, mail('from-alice', `${GTUBE.reject}\r\n`), { auth: true, to: ['friend@elsewhere.example'] }), /^554 5\.7\.1/);
    assert.match(server.logs, /"msg":"message refused by the spam filter".*"user":"alice"/);
    assert.match(await send(env, mail('from-exempt'), { from: CLIENTS.exempt }), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'alice', 'from-exempt'));
    assert.match(field(msg, 'X-Spamd-Result')[0]!, /MP_TRUSTED_CLIENT/);
  });

  test('25 recipients: one scan; over maxSize: delivered unscanned and marked; a spooled body is scanned from its file', async () => {
    const before = await server.metric('mailplane_spam_scans_total', 'action="no_action"');
    const to = Array.from({ length: 25 }, (_, i) => `u${i + 1}@example.com`);
    assert.match(await send(env, mail('many'), { to }), /^250/);
    const copies = await server.waitFor('all copies', () => {
      const all = to.map((a) => stored(env, a.split('@')[0]!, 'many'));
      return all.every(Boolean) ? all : undefined;
    });
    assert.equal(new Set(copies.map((c) => field(c!, 'X-Spamd-Result')[0])).size, 1);
    assert.equal(await server.metric('mailplane_spam_scans_total', 'action="no_action"'), before! + 1, 'scanned once');

    const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n';
    assert.match(await send(env, mail('too-big', line.repeat(Math.ceil(2_200_000 / line.length)))), /^250/);
    const big = await server.waitFor('stored', () => stored(env, 'alice', 'too-big'));
    assert.match(field(big, 'X-Spam-Unscanned')[0]!, /maxSize/);
    assert.equal(await server.metric('mailplane_spam_scans_total', 'action="too_big"'), 1);

    // (Rspamd looks for GTUBE in small text parts only: the test rule gives the action here)
    const tail = 'The end.\r\n';
    assert.match(await send(env, mail('spooled', `${line.repeat(Math.ceil(1_200_000 / line.length))}${tail}`, 'X-Test-Verdict: add header\r\n')), /^250/);
    const spooled = await server.waitFor('junked', () => stored(env, 'alice', 'spooled', '.Junk'));
    assert.deepEqual(field(spooled, 'X-Spam'), ['Yes']);
    assert.ok(spooled.endsWith(`${line}${tail}`) && spooled.length > 1_200_000, 'the body is whole');
  });

  test('Rspamd stopped: onError accept delivers marked, tempfail answers 451; it is seen coming back', async () => {
    await rspamd.stop();
    assert.match(await send(env, mail('down-accept')), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'alice', 'down-accept'));
    assert.match(field(msg, 'X-Spam-Unscanned')[0]!, /spam filter unavailable \(ECONNREFUSED/);
    assert.equal(await server.metric('mailplane_spam_filter_up', 'type="rspamd"'), 0);
    assert.match(server.logs, /"msg":"spam filter unavailable"/);
    const status = await server.status();
    assert.equal(status.spamFilter.up, false);
    assert.match(status.spamFilter.lastError.message, /ECONNREFUSED/);

    writeFileSync(env.configFile, config(normal().replace('onError: accept', 'onError: tempfail')));
    assert.equal((await server.http('/-/reload', { method: 'POST' })).status, 200);
    assert.match(await send(env, mail('down-tempfail')), /^451 4\.7\.1 Spam filter unavailable/);
    assert.equal(anywhere(env, 'down-tempfail'), undefined);

    await rspamd.start();
    assert.match(await send(env, mail('back')), /^250/);
    await server.waitFor('stored', () => stored(env, 'alice', 'back'));
    assert.equal(await server.metric('mailplane_spam_filter_up', 'type="rspamd"'), 1);
    assert.match(server.logs, /"msg":"spam filter answers again"/);
  });

  test('a silent Rspamd: the message waits no longer than the timeout', async () => {
    const silent: Server = createServer(() => {});
    const port = await freePort();
    await new Promise<void>((r) => silent.listen(port, '127.0.0.1', () => r()));
    try {
      writeFileSync(env.configFile, config(`type: rspamd, url: "http://127.0.0.1:${port}", timeout: 1s, onError: accept`));
      assert.equal((await server.http('/-/reload', { method: 'POST' })).status, 200);
      const t0 = Date.now();
      assert.match(await send(env, mail('silent')), /^250/);
      const ms = Date.now() - t0;
      const msg = await server.waitFor('stored', () => stored(env, 'alice', 'silent'));
      assert.match(field(msg, 'X-Spam-Unscanned')[0]!, /no answer within 1000 ms/);
      assert.ok(ms < 4000, `took ${ms} ms`);
    } finally {
      silent.close();
    }
  });
});
