// The mail log through the real binary: one line per accepted message, one per recipient
// outcome (local, relayed, deferred, bounced, deleted by an operator), one per refusal naming the
// client and the address; with observability.logAddresses: redact, the domain and a keyed hash.
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, makeEnv, startMailplane, waitFor, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';

type Line = Record<string, unknown>;

function lines(mp: MailplaneProcess, msg: string): Line[] {
  return mp.logs
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line)
    .filter((l) => l.msg === msg);
}

async function open(port: number, from = '127.0.0.1'): Promise<SmtpClient> {
  const { client } = await SmtpClient.connect({ port, localAddress: from });
  assert.equal((await client.ehlo()).code, 250);
  return client;
}

function config(env: Env, relayPort: number, extra = ''): string {
  writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem);
  return baseConfig(env, {
    relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relayPort}\n  caFile: ca.pem\n`,
    delivery: `delivery:\n  minRetryDelay: 200ms\n  maxRetryDelay: 400ms\n  dns: { servers: [127.0.0.1:${env.ports.dns}], timeout: 1s }\n`,
  }).replace(/observability:\n/, `observability:\n${extra}`);
}

/** A server relaying through a TestRelay, for one describe block; `extra` goes under observability. */
function serverWithRelay(extra = '') {
  const h = {} as { env: Env; mp: MailplaneProcess; relay: TestRelay };
  before(async () => {
    h.env = await makeEnv();
    h.relay = await new TestRelay({ port: await freePort(), mode: 'starttls' }).start();
    h.mp = await startMailplane(h.env, config(h.env, h.relay.o.port, extra));
  });
  after(async () => {
    assert.equal(await h.mp.stop(), 0);
    await h.relay.stop();
  });
  return h;
}

describe('logAddresses: full (the default)', () => {
  const h = serverWithRelay();

  test('an accepted message: one line with id, from, size, recipient count, client', async () => {
    const c = await open(h.env.ports.mx, '127.0.0.60');
    const r = await c.send('Sender@example.net', ['Postmaster@example.com', 'bob@example.com'], message('to an alias and a user'));
    assert.equal(r.data?.code, 250);
    await c.quit();
    const id = /queued as (\S+)/.exec(r.data.text)![1]!;
    const accepted = await waitFor('the accepted line', () => lines(h.mp, 'message accepted').find((l) => l.id === id));
    assert.deepEqual([accepted.from, accepted.nrcpt, accepted.client, accepted.listener], ['Sender@example.net', 2, '127.0.0.60', 'mx']);
    assert.equal(typeof accepted.size, 'number');
    const delivered = lines(h.mp, 'recipient delivered').filter((l) => l.id === id);
    assert.deepEqual(
      delivered.map((l) => [l.to, l.origTo, l.transport, l.dsn, l.status]).sort(),
      [
        ['alice@example.com', 'Postmaster@example.com', 'local', '2.0.0', 'delivered'],
        ['bob@example.com', undefined, 'local', '2.0.0', 'delivered'],
      ],
      'one line per local recipient; the alias is kept as origTo',
    );
  });

  test('relayed, deferred, bounced and deleted recipients: one line each, with the next hop, the DSN code and the reply', async () => {
    const c = await open(h.env.ports.submission, '127.0.0.5'); // exempt: may h.relay without AUTH
    const r = await c.send('alice@example.com', ['friend@remote.example', 'defer-me@remote.example', 'fail-me@remote.example'], message('three fates'));
    assert.equal(r.data?.code, 250);
    await c.quit();
    const id = /queued as (\S+)/.exec(r.data.text)![1]!;
    const mine = (msg: string) => lines(h.mp, msg).filter((l) => l.id === id);
    const sent = await waitFor('delivered', () => mine('recipient delivered')[0]);
    assert.deepEqual([sent.to, sent.from, sent.transport, sent.dsn, sent.status], ['friend@remote.example', 'alice@example.com', 'relay', '2.0.0', 'delivered']);
    assert.equal(sent.relay, `127.0.0.1:${h.relay.o.port}`, 'the next hop');
    assert.equal(typeof sent.delay, 'number');
    const bounced = await waitFor('bounced', () => mine('recipient bounced')[0]);
    assert.deepEqual([bounced.to, bounced.dsn, bounced.status], ['fail-me@remote.example', '5.1.1', 'bounced']);
    assert.match(bounced.reply as string, /^550/);
    const deferred = await waitFor('deferred', () => mine('recipient deferred')[0]);
    assert.deepEqual([deferred.to, deferred.status], ['defer-me@remote.example', 'deferred']);
    assert.match(deferred.dsn as string, /^4\./);
    const del = await mailplane(['queue', 'delete', id, '--config', h.env.configFile]);
    assert.equal(del.code, 0, del.stderr);
    const deleted = await waitFor('deleted', () => mine('recipient deleted')[0]);
    assert.deepEqual([deleted.to, deleted.status, deleted.reply], ['defer-me@remote.example', 'deleted', 'deleted by an operator']);
  });

  test('refusals name the client and the address refused', async () => {
    const c = await open(h.env.ports.mx, '127.0.0.61');
    assert.equal((await c.cmd('MAIL FROM:<probe@example.net>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<nobody@example.com>')).code, 550);
    assert.equal((await c.cmd('RCPT TO:<victim@elsewhere.example>')).code, 554);
    await c.quit();
    const refused = await waitFor('two refusals', () => {
      const mine = lines(h.mp, 'refused').filter((l) => l.client === '127.0.0.61');
      return mine.length === 2 ? mine : undefined;
    });
    assert.deepEqual(
      refused.map((l) => [l.command, l.address, l.reason, l.reply]),
      [
        ['RCPT', 'nobody@example.com', 'unknown_recipient', '550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown'],
        ['RCPT', 'victim@elsewhere.example', 'relay_denied', '554 5.7.1 <victim@elsewhere.example>: Relay access denied'],
      ],
    );
  });
});

describe('logAddresses: redact', () => {
  const h = serverWithRelay('  logAddresses: redact\n');

  test('addresses are the domain and a keyed hash of the local part, stable across lines; the key is private', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await open(h.env.ports.mx, '127.0.0.62');
      assert.equal((await c.send('secret.sender@example.net', ['bob@example.com'], message(`redacted ${i}`))).data?.code, 250);
      assert.equal((await c.cmd('MAIL FROM:<secret.sender@example.net>')).code, 250);
      assert.equal((await c.cmd('RCPT TO:<hidden.name@example.com>')).code, 550);
      await c.quit();
    }
    const accepted = await waitFor('two accepted lines', () => (lines(h.mp, 'message accepted').length === 2 ? lines(h.mp, 'message accepted') : undefined));
    const froms = new Set(accepted.map((l) => l.from));
    assert.equal(froms.size, 1, 'the same sender gives the same hash');
    assert.match([...froms][0] as string, /^[0-9a-f]{12}@example\.net$/);
    const refused = await waitFor('two refusals', () => (lines(h.mp, 'refused').length === 2 ? lines(h.mp, 'refused') : undefined));
    assert.match(refused[0]!.address as string, /^[0-9a-f]{12}@example\.com$/);
    for (const name of ['secret.sender', 'hidden.name']) assert.ok(!h.mp.logs.includes(name), `${name} appears in the log`);
    assert.equal(statSync(join(h.env.dataDir, 'log-redact.key')).mode & 0o777, 0o600);
  });

  test('plan shows the change; a reload back to full applies in place', async () => {
    const full = config(h.env, h.relay.o.port);
    writeFileSync(join(h.env.dir, 'next.yaml'), full);
    const plan = await mailplane(['plan', join(h.env.dir, 'next.yaml'), '--server', `http://127.0.0.1:${h.env.ports.ops}`]);
    assert.match(plan.stdout, /observability\.logging\.addresses: redact → full/, plan.stdout);
    writeFileSync(h.env.configFile, full);
    assert.equal(((await (await h.mp.http('/-/reload', { method: 'POST' })).json()) as { outcome: string }).outcome, 'applied');
    const c = await open(h.env.ports.mx, '127.0.0.63');
    assert.equal((await c.send('visible@example.net', ['bob@example.com'], message('full again'))).data?.code, 250);
    await c.quit();
    await waitFor('the full address', () => lines(h.mp, 'message accepted').some((l) => l.from === 'visible@example.net'));
  });
});
