// Inbound authentication checks in monitor mode, against the real binary on loopback: SPF, DKIM
// (messages signed by python3-dkim), DMARC and ARC by mailauth, DNS only from the loopback
// server the config names (delivery.dns.servers). One Authentication-Results header in the
// Maildir copy, above our Received; per-method metrics; a DNS failure is a temperror and the
// message is still accepted; authenticated and trusted clients are not checked.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { dkimpyOrSkip, rsaDkimKey, signDkim } from './helpers/dkim.js';
import { TestDns } from './helpers/dns.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { SmtpClient } from './helpers/smtp.js';

const HOST = 'mail.example.com';

function stored(env: Env, user: string, subject: string): string | undefined {
  const dir = join(env.dataDir, 'mail', user, 'new');
  if (!existsSync(dir)) return undefined;
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'latin1'))
    .find((m) => m.includes(`\r\nSubject: ${subject}\r\n`));
}

/** The header section's fields, unfolded, in order. */
function fields(msg: string): string[] {
  const head = msg.slice(0, msg.indexOf('\r\n\r\n'));
  return head.split(/\r\n(?![ \t])/).map((f) => f.replace(/\r\n[ \t]+/g, ' '));
}

function authResults(msg: string): string[] {
  return fields(msg).filter((f) => /^authentication-results:/i.test(f));
}

function mail(subject: string, from = 'news@good.test', body = 'Hello there.\r\n'): string {
  return `From: ${from}\r\nTo: alice@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@good.test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n\r\n${body}`;
}

async function send(env: Env, o: { from?: string; port?: number; sender?: string; body: Buffer | string; auth?: boolean }): Promise<string> {
  const { client } = await SmtpClient.connect({ port: o.port ?? env.ports.mx, localAddress: o.from ?? CLIENTS.untrusted });
  assert.equal((await client.ehlo('client.good.test')).code, 250);
  if (o.auth) {
    assert.equal((await client.starttls()).code, 220);
    assert.equal((await client.ehlo('client.good.test')).code, 250);
    const r = await client.cmd(`AUTH PLAIN ${Buffer.from(`\0alice\0${USERS.alice.password}`).toString('base64')}`);
    assert.equal(r.code, 235, r.text);
  }
  assert.equal((await client.cmd(`MAIL FROM:<${o.sender ?? 'bounce@good.test'}>`)).code, 250);
  assert.equal((await client.cmd('RCPT TO:<alice@example.com>')).code, 250);
  const [, done] = await client.data(o.body);
  await client.quit();
  return `${done.code} ${done.text}`;
}

describe('inbound authentication checks (monitor only)', { skip: !dkimpyOrSkip() }, () => {
  let env: Env;
  let server: MailplaneProcess;
  let dns: TestDns;
  let keyFile: string;

  before(async () => {
    env = await makeEnv();
    keyFile = join(env.dir, 'dkim.pem');
    const strings = rsaDkimKey(keyFile);
    dns = await new TestDns({
      txt: {
        'good.test': [['v=spf1 ip4:127.0.0.1 -all']],
        'client.good.test': [['v=spf1 ip4:127.0.0.1 -all']],
        // only 127.0.0.7 may send for soft.test; anyone else is a softfail (~all)
        'soft.test': [['v=spf1 ip4:127.0.0.7 ~all']],
        'sel._domainkey.good.test': [strings],
        '_dmarc.good.test': [['v=DMARC1; p=reject']],
      },
      a: { 'client.good.test': ['127.0.0.1'] },
    }).startOn(env.ports.dns);
    // off by default: turned on here
    const checks = 'inbound:\n  checks: { spf: true, dkim: true, arc: true, dmarc: monitor }\n';
    server = await startMailplane(env, baseConfig(env, { authRequired: false }).replace(/^storage:\n/m, `${checks}storage:\n`));
  });

  after(async () => {
    await server?.stop();
    dns?.stop();
  });

  test('SPF pass from an allowed client, fail from another; DKIM pass; DMARC pass; one header above our Received', async () => {
    const signed = signDkim(mail('signed-ok'), 'sel', 'good.test', keyFile);
    assert.match(await send(env, { body: signed }), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'alice', 'signed-ok'));
    const ar = authResults(msg);
    assert.equal(ar.length, 1, msg);
    assert.match(ar[0]!, new RegExp(`^Authentication-Results: ${HOST.replace(/\./g, '\\.')};`));
    assert.match(ar[0]!, /\bspf=pass\b/);
    assert.match(ar[0]!, /\bdkim=pass\b.*header\.d=good\.test|\bdkim=pass\b/);
    assert.match(ar[0]!, /\bdmarc=pass\b/);
    const names = fields(msg).map((f) => f.slice(0, f.indexOf(':')).toLowerCase());
    assert.ok(names.indexOf('authentication-results') < names.indexOf('received'), names.join(','));
    assert.ok(names.indexOf('return-path') < names.indexOf('authentication-results'), names.join(','));

    assert.match(await send(env, { from: CLIENTS.other, body: signDkim(mail('spf-fail'), 'sel', 'good.test', keyFile) }), /^250/);
    const fail = authResults(await server.waitFor('stored', () => stored(env, 'alice', 'spf-fail')));
    assert.equal(fail.length, 1);
    assert.match(fail[0]!, /\bspf=fail\b/);
    assert.match(fail[0]!, /\bdkim=pass\b/);
    assert.match(fail[0]!, /\bdmarc=pass\b/, 'aligned DKIM still passes DMARC');
  });

  test('SPF softfail from a client the record does not list, pass from the one it does', async () => {
    assert.match(await send(env, { sender: 'news@soft.test', body: mail('spf-softfail', 'news@soft.test') }), /^250/);
    assert.match(await send(env, { from: CLIENTS.other, sender: 'news@soft.test', body: mail('spf-soft-listed', 'news@soft.test') }), /^250/);
    const soft = authResults(await server.waitFor('stored', () => stored(env, 'alice', 'spf-softfail')));
    assert.match(soft[0]!, /\bspf=softfail\b/);
    const listed = authResults(await server.waitFor('stored', () => stored(env, 'alice', 'spf-soft-listed')));
    assert.match(listed[0]!, /\bspf=pass\b/);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="spf",result="softfail"'))! >= 1);
  });

  test('a body changed after signing does not pass DKIM, and DMARC fails without aligned SPF', async () => {
    const signed = signDkim(mail('tampered', 'news@good.test', 'Pay 10 EUR.\r\n'), 'sel', 'good.test', keyFile)
      .toString('latin1')
      .replace('Pay 10 EUR.', 'Pay 99 EUR.');
    assert.match(await send(env, { from: CLIENTS.other, body: signed }), /^250/, 'monitor only: accepted');
    const ar = authResults(await server.waitFor('stored', () => stored(env, 'alice', 'tampered')));
    assert.equal(ar.length, 1);
    // mailauth reports a body hash mismatch as neutral (RFC 6376 §6.3: PERMFAIL); DMARC counts it as no pass
    assert.match(ar[0]!, /\bdkim=neutral \(body hash did not verify\)/);
    assert.match(ar[0]!, /\bspf=fail\b/);
    assert.match(ar[0]!, /\bdmarc=fail\b/);
  });

  test('an unsigned message: dkim=none; a forged Authentication-Results claiming our name is removed, ours is the only one', async () => {
    const forged = mail('unsigned').replace('From:', `Authentication-Results: ${HOST}; dkim=pass; spf=pass; dmarc=pass\r\nFrom:`);
    assert.match(await send(env, { body: forged, sender: 'other@nowhere.test' }), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'alice', 'unsigned'));
    const ar = authResults(msg);
    assert.equal(ar.length, 1, ar.join('\n'));
    assert.match(ar[0]!, /\bdkim=none\b/);
    assert.match(ar[0]!, /\bspf=none\b/);
  });

  test('authenticated and trusted clients get no header', async () => {
    assert.match(await send(env, { body: mail('from-authenticated'), auth: true, sender: 'alice@example.com' }), /^250/);
    assert.match(await send(env, { from: CLIENTS.exempt, body: mail('from-exempt') }), /^250/);
    assert.match(await send(env, { from: CLIENTS.lan, body: mail('from-lan') }), /^250/);
    for (const s of ['from-authenticated', 'from-exempt', 'from-lan']) {
      const msg = await server.waitFor('stored', () => stored(env, 'alice', s));
      assert.deepEqual(authResults(msg), [], s);
    }
  });

  test('metrics count each method and result', async () => {
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="spf",result="pass"'))! >= 1);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="spf",result="fail"'))! >= 2);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="dkim",result="pass"'))! >= 2);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="dkim",result="neutral"'))! >= 1);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="dmarc",result="pass"'))! >= 2);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="dmarc",result="fail"'))! >= 1);
    assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="arc",result="none"'))! >= 1);
  });

  test('DNS server down: temperror for what is not cached, and the message is still accepted; cached answers still serve', async () => {
    dns.stop();
    try {
      const started = Date.now();
      // a domain never looked up before: nothing of it in the cache
      assert.match(await send(env, { sender: 'bounce@fresh.test', body: signDkim(mail('dns-down', 'news@fresh.test'), 'sel', 'fresh.test', keyFile) }), /^250/);
      const ms = Date.now() - started;
      const ar = authResults(await server.waitFor('stored', () => stored(env, 'alice', 'dns-down')));
      assert.equal(ar.length, 1);
      assert.match(ar[0]!, /\bspf=temperror\b/);
      assert.match(ar[0]!, /\bdkim=(temperror|neutral)\b/);
      assert.ok((await server.metric('mailplane_inbound_auth_total', 'method="spf",result="temperror"'))! >= 1);
      assert.ok(ms < 15_000, `took ${ms} ms`);
      // good.test's records were answered within the last minute: kept in the checks' DNS cache
      assert.match(await send(env, { body: signDkim(mail('dns-down-cached'), 'sel', 'good.test', keyFile) }), /^250/);
      const cached = authResults(await server.waitFor('stored', () => stored(env, 'alice', 'dns-down-cached')));
      assert.match(cached[0]!, /\bspf=pass\b.*\bdmarc=pass\b/);
    } finally {
      await dns.startOn(env.ports.dns);
    }
  });

  test('a DNS server that never answers: the 250 still comes, bounded', async () => {
    dns.stop();
    const silent = createSocket('udp4');
    await new Promise<void>((r) => silent.bind(env.ports.dns, '127.0.0.1', () => r()));
    try {
      const started = Date.now();
      assert.match(await send(env, { sender: 'bounce@fresh2.test', body: signDkim(mail('dns-silent', 'news@fresh2.test'), 'sel', 'fresh2.test', keyFile) }), /^250/);
      const ms = Date.now() - started;
      const msg = await server.waitFor('stored', () => stored(env, 'alice', 'dns-silent'));
      console.log(`silent DNS: 250 after ${ms} ms; ${authResults(msg)[0] ?? 'no header'}`);
      assert.ok(ms < 5_000, `took ${ms} ms: the checks are bounded by twice the DNS timeout (1 s here)`);
      assert.match(authResults(msg)[0] ?? '', /\bspf=temperror\b/);
    } finally {
      silent.close();
      await dns.startOn(env.ports.dns);
    }
  });
});
