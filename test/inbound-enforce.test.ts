// Inbound rules enforced, against the real binary on loopback with the loopback DNS server:
// `dmarc: enforce` applies the sender domain's published policy (reject → 550 5.7.1 and nothing
// stored, quarantine → the junk folder, none → the inbox), `ownDomains` refuses or files
// unauthenticated mail that claims one of our domains (with and without a DMARC record of
// ours), a passing ARC chain from a trusted sealer overrides (sealed by python3-dkim, an
// independent implementation), forged Authentication-Results claiming our host name are removed,
// spooled bodies (over 1 MiB) get the same treatment, and a DNS outage defers (451), never refuses.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { arcSeal, dkimpyOrSkip, rsaDkimKey, signDkim } from './helpers/dkim.js';
import { TestDns } from './helpers/dns.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { SmtpClient } from './helpers/smtp.js';

const HOST = 'mail.example.com';

/** The stored copy with this subject in alice's inbox, or in a folder of hers (`.Junk`). */
function stored(env: Env, subject: string, folder = ''): string | undefined {
  const dir = join(env.dataDir, 'mail', 'alice', folder, 'new');
  if (!existsSync(dir)) return undefined;
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'latin1'))
    .find((m) => m.includes(`\r\nSubject: ${subject}\r\n`));
}

function anywhere(env: Env, subject: string): string | undefined {
  return stored(env, subject) ?? stored(env, subject, '.Junk');
}

function fields(msg: string): string[] {
  const head = msg.slice(0, msg.indexOf('\r\n\r\n'));
  return head.split(/\r\n(?![ \t])/).map((f) => f.replace(/\r\n[ \t]+/g, ' '));
}

function authResults(msg: string): string[] {
  return fields(msg).filter((f) => /^authentication-results:/i.test(f));
}

function mail(subject: string, from: string, body = 'Hello there.\r\n', extra = ''): string {
  return `${extra}From: ${from}\r\nTo: alice@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@x.test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n\r\n${body}`;
}

/** A body of about `bytes` (short lines), to push a message past the 1 MiB memory threshold. */
function big(bytes: number): string {
  const line = 'All work and no play makes a long message, line after line after line.\r\n';
  return line.repeat(Math.ceil(bytes / line.length));
}

async function send(env: Env, o: { from?: string; sender: string; body: Buffer | string }): Promise<string> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: o.from ?? CLIENTS.untrusted });
  assert.equal((await client.ehlo('client.x.test')).code, 250);
  assert.equal((await client.cmd(`MAIL FROM:<${o.sender}>`)).code, 250);
  assert.equal((await client.cmd('RCPT TO:<alice@example.com>')).code, 250);
  const [, done] = await client.data(o.body);
  await client.quit();
  return `${done.code} ${done.text}`;
}

const enforceChecks = (ownDomains: string) => `inbound:\n  checks: { spf: true, dkim: true, arc: true, dmarc: enforce, ownDomains: ${ownDomains}, arcTrustedSealers: [lists.test] }\n`;

describe('inbound rules enforced: DMARC policies, our own domains, ARC, forged results', { skip: !dkimpyOrSkip() }, () => {
  let env: Env;
  let server: MailplaneProcess;
  let dns: TestDns;
  let keyFile: string;
  const sign = (m: string, domain: string) => signDkim(m, 'sel', domain, keyFile);
  const config = (ownDomains: string) => baseConfig(env, { authRequired: false, maxMessageSize: '10MB' }).replace(/^storage:\n/m, `${enforceChecks(ownDomains)}storage:\n`);

  before(async () => {
    env = await makeEnv();
    keyFile = join(env.dir, 'dkim.pem');
    const key = rsaDkimKey(keyFile);
    const dkimFor = (...domains: string[]) => Object.fromEntries(domains.map((d) => [`sel._domainkey.${d}`, [key]]));
    dns = await new TestDns({
      txt: {
        ...dkimFor('reject.test', 'quarantine.test', 'example.com', 'lists.test', 'other-list.test'),
        'reject.test': [['v=spf1 -all']],
        '_dmarc.reject.test': [['v=DMARC1; p=reject']],
        'quarantine.test': [['v=spf1 -all']],
        '_dmarc.quarantine.test': [['v=DMARC1; p=quarantine']],
        'none.test': [['v=spf1 -all']],
        '_dmarc.none.test': [['v=DMARC1; p=none']],
        // ours: example.com publishes SPF for 127.0.0.7 and no DMARC record; example.org publishes p=none
        'example.com': [['v=spf1 ip4:127.0.0.7 -all']],
        'example.org': [['v=spf1 -all']],
        '_dmarc.example.org': [['v=DMARC1; p=none']],
        'lists.test': [['v=spf1 ip4:127.0.0.1 -all']],
        'other-list.test': [['v=spf1 ip4:127.0.0.1 -all']],
      },
      a: { 'client.x.test': ['127.0.0.1'] },
    }).startOn(env.ports.dns);
    writeFileSync(env.configFile, config('reject'));
    server = await startMailplane(env, config('reject'));
  });

  after(async () => {
    await server?.stop();
    dns?.stop();
  });

  test('DMARC p=reject: a failing message is refused with 550 5.7.1 after DATA, and nothing is stored', async () => {
    const reply = await send(env, { sender: 'bounce@reject.test', body: mail('dmarc-reject', 'ceo@reject.test') });
    assert.match(reply, /^550 5\.7\.1 .*reject\.test.*DMARC/);
    // an aligned DKIM signature of the same domain passes and is never held up
    assert.match(await send(env, { sender: 'bounce@reject.test', body: sign(mail('dmarc-signed', 'ceo@reject.test'), 'reject.test') }), /^250/);
    const ok = await server.waitFor('stored', () => stored(env, 'dmarc-signed'));
    assert.match(authResults(ok)[0]!, /\bdmarc=pass\b/);
    assert.equal(anywhere(env, 'dmarc-reject'), undefined, 'the refused message is nowhere');
    assert.equal(readdirSync(join(env.dataDir, 'spool')).length, 0, 'no spool file left');
    assert.equal(await server.metric('mailplane_inbound_auth_actions_total', 'rule="dmarc",action="reject"'), 1);
    assert.match(server.logs, /"msg":"refused".*"command":"DATA".*"reason":"dmarc"/);
  });

  test('DMARC p=quarantine: delivered into the junk folder (Maildir++ .Junk), with our results; p=none: the inbox', async () => {
    assert.match(await send(env, { sender: 'bounce@quarantine.test', body: mail('dmarc-quarantine', 'news@quarantine.test') }), /^250/);
    const junk = await server.waitFor('junked', () => stored(env, 'dmarc-quarantine', '.Junk'));
    assert.match(authResults(junk)[0]!, /\bdmarc=fail\b/);
    assert.equal(stored(env, 'dmarc-quarantine'), undefined, 'not in the inbox');
    assert.ok(existsSync(join(env.dataDir, 'mail', 'alice', '.Junk', 'maildirfolder')), 'marked as a Maildir++ folder');
    assert.equal(await server.metric('mailplane_inbound_auth_actions_total', 'rule="dmarc",action="junk"'), 1);
    assert.match(server.logs, /"relay":"maildir alice\/\.Junk"/);

    assert.match(await send(env, { sender: 'bounce@none.test', body: mail('dmarc-none', 'news@none.test') }), /^250/);
    const inbox = await server.waitFor('stored', () => stored(env, 'dmarc-none'));
    assert.match(authResults(inbox)[0]!, /\bdmarc=fail\b/);
  });

  test('our own domains: unauthenticated mail claiming them is refused, with or without a DMARC record of ours', async () => {
    // example.com publishes no DMARC record; SPF passes for good.test's envelope but is not aligned
    assert.match(await send(env, { sender: 'bounce@lists.test', body: mail('spoof-com', 'ceo@example.com') }), /^550 5\.7\.1 .*example\.com/);
    // example.org publishes p=none: DMARC alone would deliver; the own-domain rule does not
    assert.match(await send(env, { sender: 'ceo@example.org', body: mail('spoof-org', 'ceo@example.org') }), /^550 5\.7\.1 .*example\.org/);
    // an outside service that sends as us: SPF of example.com allows 127.0.0.7
    assert.match(await send(env, { from: CLIENTS.other, sender: 'billing@example.com', body: mail('own-spf', 'billing@example.com') }), /^250/);
    // or a DKIM signature of example.com from anywhere
    assert.match(await send(env, { sender: 'bounce@lists.test', body: sign(mail('own-dkim', 'billing@example.com'), 'example.com') }), /^250/);
    await server.waitFor('stored', () => stored(env, 'own-spf') && stored(env, 'own-dkim'));
    assert.equal(anywhere(env, 'spoof-com'), undefined);
    assert.equal(anywhere(env, 'spoof-org'), undefined);
    assert.equal(await server.metric('mailplane_inbound_auth_actions_total', 'rule="own_domain",action="reject"'), 2);
  });

  test('forged Authentication-Results claiming our host name are removed; others are kept', async () => {
    const forged =
      `Authentication-Results: ${HOST}; dkim=pass; spf=pass; dmarc=pass\r\n` +
      'Authentication-Results:\r\n (we checked) MAIL.EXAMPLE.COM.;\r\n dmarc=pass header.from=reject.test\r\n' +
      `Authentication-Results: "${HOST}"; arc=pass\r\n` +
      'Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=x.test\r\n';
    const body = sign(mail('forged', 'ceo@reject.test', 'Hello.\r\n', forged), 'reject.test');
    assert.match(await send(env, { sender: 'bounce@reject.test', body }), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'forged'));
    const ar = authResults(msg);
    assert.equal(ar.length, 2, ar.join('\n'));
    assert.match(ar[0]!, new RegExp(`^Authentication-Results: ${HOST.replace(/\./g, '\\.')};.*\\bdkim=pass\\b.*\\bdmarc=pass\\b`));
    assert.match(ar[1]!, /^Authentication-Results: mx\.elsewhere\.test; spf=pass/);
    assert.ok((await server.metric('mailplane_inbound_auth_forged_headers_total'))! >= 3);
  });

  test('a passing ARC chain from a trusted sealer overrides a DMARC failure; an untrusted sealer does not', async () => {
    // a mailing list re-sent a reject.test message from its own server: reject.test's SPF and
    // DKIM no longer align, but the list checked it on arrival and sealed what it found
    const seen = (srv: string) => `Authentication-Results: ${srv}; dkim=pass header.d=reject.test; dmarc=pass header.from=reject.test\r\n`;
    const viaList = arcSeal(mail('via-list', 'ceo@reject.test', 'Hello list.\r\n', seen('lists.test')), 'sel', 'lists.test', keyFile, 'lists.test');
    assert.match(await send(env, { sender: 'bounce@lists.test', body: viaList }), /^250/);
    const msg = await server.waitFor('stored', () => stored(env, 'via-list'));
    assert.match(authResults(msg)[0]!, /\barc=pass\b/);
    assert.match(authResults(msg)[0]!, /\bdmarc=fail\b/);
    assert.equal(await server.metric('mailplane_inbound_auth_actions_total', 'rule="dmarc",action="arc_override"'), 1);

    const viaOther = arcSeal(mail('via-other', 'ceo@reject.test', 'Hello list.\r\n', seen('other-list.test')), 'sel', 'other-list.test', keyFile, 'other-list.test');
    assert.match(await send(env, { sender: 'bounce@other-list.test', body: viaOther }), /^550 5\.7\.1/);
  });

  test('spooled bodies (over 1 MiB) are checked from the file: refused, filed as junk, or stored with the header and no forgery', async () => {
    const size = 1_200_000;
    assert.match(await send(env, { sender: 'bounce@reject.test', body: mail('big-reject', 'ceo@reject.test', big(size)) }), /^550 5\.7\.1/);
    assert.match(await send(env, { sender: 'bounce@quarantine.test', body: mail('big-quarantine', 'news@quarantine.test', big(size)) }), /^250/);
    const forged = `Authentication-Results: ${HOST}; dmarc=pass\r\n`;
    assert.match(await send(env, { sender: 'bounce@reject.test', body: sign(mail('big-signed', 'ceo@reject.test', big(size), forged), 'reject.test') }), /^250/);
    const junk = await server.waitFor('junked', () => stored(env, 'big-quarantine', '.Junk'));
    assert.match(authResults(junk)[0]!, /\bdmarc=fail\b/);
    const signed = await server.waitFor('stored', () => stored(env, 'big-signed'));
    const ar = authResults(signed);
    assert.equal(ar.length, 1, ar.join('\n'));
    assert.match(ar[0]!, /\bdkim=pass\b.*\bdmarc=pass\b/);
    assert.ok(signed.length > size, 'the whole body is there');
    assert.ok(signed.endsWith(big(size)), 'the body is intact');
    assert.equal(anywhere(env, 'big-reject'), undefined);
    await server.waitFor('spool empty', () => readdirSync(join(env.dataDir, 'spool')).length === 0);
  });

  test('ownDomains: junk files the spoof instead (after a reload); DNS down under enforce: 451 4.7.0, then delivered on retry', async () => {
    writeFileSync(env.configFile, config('junk'));
    assert.equal((await server.http('/-/reload', { method: 'POST' })).status, 200);
    assert.match(await send(env, { sender: 'bounce@lists.test', body: mail('spoof-junk', 'ceo@example.com') }), /^250/);
    await server.waitFor('junked', () => stored(env, 'spoof-junk', '.Junk'));
    assert.equal(await server.metric('mailplane_inbound_auth_actions_total', 'rule="own_domain",action="junk"'), 1);

    dns.stop();
    try {
      const reply = await send(env, { sender: 'bounce@none.test', body: mail('dns-down', 'news@none.test') });
      assert.match(reply, /^451 4\.7\.0/);
      assert.equal(anywhere(env, 'dns-down'), undefined, 'deferred: nothing stored, the sender keeps it');
    } finally {
      await dns.startOn(env.ports.dns);
    }
    assert.match(await send(env, { sender: 'bounce@none.test', body: mail('dns-down', 'news@none.test') }), /^250/);
    await server.waitFor('stored on retry', () => stored(env, 'dns-down'));
    assert.ok((await server.metric('mailplane_inbound_auth_actions_total', 'rule="dmarc",action="tempfail"'))! >= 1);
  });
});
