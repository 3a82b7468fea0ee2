// Direct MX delivery with a DNS server on loopback: MX preference order with a dead first
// host, STARTTLS when offered, A fallback without MX, null MX and unknown domains bounced.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

let env: Env;
let mp: MailplaneProcess;
let dns: TestDns;
let mx: TestRelay;

before(async () => {
  env = await makeEnv();
  const port = await freePort();
  mx = await new TestRelay({ port, mode: 'starttls', name: 'mx1.remote.test' }).start();
  dns = await new TestDns({
    mx: {
      'remote.test': [
        { priority: 10, exchange: 'mx1.remote.test' },
        { priority: 5, exchange: 'mx0.remote.test' }, // preferred, but nothing listens there
      ],
      'nullmx.test': [{ priority: 0, exchange: '.' }],
    },
    a: { 'mx0.remote.test': ['127.0.0.2'], 'mx1.remote.test': ['127.0.0.1'], 'nomx.test': ['127.0.0.1'] },
  }).start();
  mp = await startMailplane(
    env,
    baseConfig(env, {
      delivery: `delivery:\n  minRetryDelay: 200ms\n  maxRetryDelay: 400ms\n  mxPort: ${port}\n  connectTimeout: 2s\n  dns: { servers: [127.0.0.1:${dns.port}], timeout: 2s }\n`,
    }),
  );
});
after(async () => {
  await mp.stop();
  await mx.stop();
  dns.stop();
});

async function submit(to: string[], subject: string): Promise<void> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  const r = await client.send('alice@example.com', to, message(subject));
  assert.equal(r.data?.code, 250);
  await client.quit();
}

function queueEmpty(): Promise<void> {
  return mp.waitQueueEmpty();
}

function bounces(): string[] {
  const dir = join(env.dataDir, 'mail', 'alice', 'new');
  try {
    return readdirSync(dir)
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .filter((m) => m.includes('Undelivered Mail'));
  } catch {
    return [];
  }
}

test('MX records in preference order: the unreachable preferred host is skipped, STARTTLS used', async () => {
  await submit(['someone@remote.test'], 'via mx');
  await queueEmpty();
  const got = mx.for('someone@remote.test');
  assert.equal(got.length, 1);
  assert.equal(got[0]!.secure, true, 'STARTTLS was offered and used');
  assert.ok(dns.queries.includes('remote.test/15'), 'an MX query went to the lab DNS server');
  assert.ok(dns.queries.indexOf('mx0.remote.test/1') >= 0);
  assert.equal(await mp.metric('mailplane_delivery_total', 'transport="mx",result="delivered"'), 1);
});

test("no MX record: the domain's own address is used", async () => {
  await submit(['someone@nomx.test'], 'implicit mx');
  await queueEmpty();
  assert.equal(mx.for('someone@nomx.test').length, 1);
});

test('null MX and non-existent domains bounce at once; several domains in one message are handled separately', async () => {
  await submit(['x@nullmx.test', 'y@nowhere.test', 'z@remote.test'], 'mixed domains');
  await queueEmpty();
  assert.equal(mx.for('z@remote.test').length, 1);
  const b = bounces();
  assert.equal(b.length, 1);
  assert.match(b[0]!, /Final-Recipient: rfc822; x@nullmx\.test\r?\nOriginal-Recipient: rfc822; x@nullmx\.test\r?\nAction: failed\r?\nStatus: 5\.1\.10/);
  assert.match(b[0]!, /Final-Recipient: rfc822; y@nowhere\.test\r?\nOriginal-Recipient: rfc822; y@nowhere\.test\r?\nAction: failed\r?\nStatus: 5\.1\.2/);
});

test('a DNS outage defers, and the message goes out once DNS answers again', async () => {
  dns.stop();
  await submit(['later@remote.test'], 'dns outage');
  await mp.waitFor('a deferral', async () => ((await mp.metric('mailplane_delivery_total', 'transport="mx",result="deferred"')) ?? 0) >= 1);
  assert.equal(mx.for('later@remote.test').length, 0);
  const port = dns.port;
  dns = new TestDns(dns.zone);
  await dns.startOn(port);
  await queueEmpty();
  assert.equal(mx.for('later@remote.test').length, 1);
});
