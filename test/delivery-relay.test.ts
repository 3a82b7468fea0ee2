// Outbound delivery through a real second SMTP server acting as smarthost: STARTTLS + AUTH and
// implicit TLS, refusal to send in clear, wrong then fixed credentials, outages, per-recipient
// results, bounces (parseable DSNs), lifetime expiry, loops, and exactly-once across kill -9.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, spawnMailplane, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';

const ACCOUNT = { user: 'mailer@example.com', pass: 'relay-s3cret' };

function relayConfig(env: Env, o: { port: number; secure?: boolean; implicit?: boolean; lifetime?: string }): string {
  writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem);
  if (!readdirSync(env.dir).includes('relay-password')) writeFileSync(join(env.dir, 'relay-password'), `${ACCOUNT.pass}\n`);
  return baseConfig(env, {
    relay: `relay:
  enabled: true
  host: 127.0.0.1
  port: ${o.port}
  secure: ${o.secure ?? true}
${o.implicit ? '  implicitTls: true\n' : ''}  caFile: ca.pem
  auth: { username: ${ACCOUNT.user}, passwordFile: relay-password }
`,
    delivery: `delivery:
  minRetryDelay: 200ms
  maxRetryDelay: 400ms
  maxLifetime: ${o.lifetime ?? '1h'}
  dns: { servers: [127.0.0.1:${env.ports.dns}], timeout: 1s }
`,
  });
}

async function submit(env: Env, from: string, to: string[], subject: string, extraHeaders = ''): Promise<{ code: number; id: string | null; body: string }> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  const body = message(subject, 'Body line.\r\n', extraHeaders);
  const r = await client.send(from, to, body);
  await client.quit();
  const code = r.data?.code ?? r.rcpt[0]!.code;
  return { code, id: r.data?.lines[0]!.match(/queued as (\w+)/)?.[1] ?? null, body };
}

function queueEmpty(mp: MailplaneProcess): Promise<void> {
  return mp.waitQueueEmpty();
}

function mailbox(env: Env, user: string): string[] {
  try {
    const dir = join(env.dataDir, 'mail', user, 'new');
    return readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8'));
  } catch {
    return [];
  }
}

/**
 * The parts of a multipart/report DSN, checked for the structure RFC 3464 asks for; `headers`
 * is the third part: the original message (message/rfc822) or its headers (text/rfc822-headers).
 */
function parseDsn(raw: string): { status: Map<string, string>[]; headers: string; human: string; returned: 'message' | 'headers' } {
  const text = raw.replace(/\r\n/g, '\n');
  const boundary = text.match(/Content-Type: multipart\/report; report-type=delivery-status; boundary="([^"]+)"/)?.[1];
  assert.ok(boundary, 'multipart/report with a boundary');
  const parts = text
    .split(`--${boundary}`)
    .slice(1, -1)
    .map((p) => p.replace(/^\n/, ''));
  assert.equal(parts.length, 3);
  const [human, status, headers] = parts as [string, string, string];
  assert.match(human, /^Content-Type: text\/plain/);
  assert.match(status, /^Content-Type: message\/delivery-status/);
  assert.match(headers, /^Content-Type: (message\/rfc822|text\/rfc822-headers)\n/);
  const groups = status
    .split(/\n\n/)
    .slice(1)
    .filter((g) => g.trim());
  const fields = groups.map(
    (g) =>
      new Map(
        g
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()] as [string, string]),
      ),
  );
  return { status: fields.slice(1), headers, human, returned: headers.startsWith('Content-Type: message/rfc822') ? 'message' : 'headers' };
}

test('relay on a STARTTLS port with AUTH: delivered with the queued bytes and envelope, unchanged', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port }));
  try {
    const c = (await SmtpClient.connect({ port: env.ports.submission })).client;
    await c.ehlo();
    await c.starttls();
    await c.ehlo();
    await c.authPlain('alice', USERS.alice.password);
    const body = message('through the relay');
    const r = await c.send('alice@example.com', ['friend@remote.example', 'bob@example.com'], body);
    assert.equal(r.data!.code, 250);
    await c.quit();
    await queueEmpty(mp);
    assert.equal(relay.messages.length, 1);
    const m = relay.messages[0]!;
    assert.deepEqual([m.from, m.to, m.secure, m.user], ['alice@example.com', ['friend@remote.example'], true, ACCOUNT.user]);
    assert.match(m.raw.toString(), /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.com \(mailplane\) with ESMTPSA id \w+\r\n/);
    assert.ok(m.raw.toString().endsWith(body), 'message bytes unchanged');
    assert.equal(mailbox(env, 'bob').length, 1, 'the local recipient never left through the relay');
    assert.equal(await mp.metric('mailplane_delivery_total', 'transport="relay",result="delivered"'), 1);
    assert.equal(await mp.metric('mailplane_relay_up'), 1);
    assert.ok((await mp.metric('mailplane_delivery_duration_seconds_count', 'transport="relay"'))! >= 1);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('relay with implicit TLS (465-style)', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'implicit', account: ACCOUNT }).start();
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port, implicit: true }));
  try {
    assert.equal((await submit(env, 'webmail@example.com', ['friend@remote.example'], 'implicit')).code, 250);
    await queueEmpty(mp);
    assert.equal(relay.messages.length, 1);
    assert.equal(relay.messages[0]!.secure, true);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('secure: true against a relay without TLS defers and never sends in clear', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port }));
  try {
    assert.equal((await submit(env, 'webmail@example.com', ['friend@remote.example'], 'no tls')).code, 250);
    await mp.waitFor('a deferral', async () => ((await mp.metric('mailplane_delivery_total', 'transport="relay",result="deferred"')) ?? 0) >= 2);
    assert.equal(relay.messages.length, 0);
    assert.equal(relay.authFailures.length, 0, 'credentials never offered in clear');
    const s = await mp.status();
    assert.equal(s.queue.deferred + s.queue.active, 1);
    assert.equal(s.relay.up, false);
    assert.match(s.relay.lastError, /STARTTLS|TLS/i);
    assert.equal(await mp.metric('mailplane_relay_up'), 0);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('a wrong relay password defers; fixing the password file delivers, without a restart', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  writeFileSync(join(env.dir, 'relay-password'), 'wrong-password\n');
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port }));
  try {
    assert.equal((await submit(env, 'webmail@example.com', ['friend@remote.example'], 'creds')).code, 250);
    await mp.waitFor('auth refusal', () => relay.authFailures.length >= 2);
    const st = await mp.status();
    assert.equal(st.relay.up, false);
    assert.match(st.relay.lastError, /535/);
    assert.ok(!JSON.stringify(st).includes('wrong-password'));
    assert.equal(relay.messages.length, 0);
    writeFileSync(join(env.dir, 'relay-password'), `${ACCOUNT.pass}\n`);
    await mp.waitFor('the new password applied', async () => (await mp.status()).applied.generation === 2);
    await queueEmpty(mp);
    assert.equal(relay.messages.length, 1);
    assert.equal((await mp.status()).relay.up, true);
    assert.ok(!mp.logs.includes('wrong-password') && !mp.logs.includes(ACCOUNT.pass));
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('relay down, then up: everything is delivered exactly once', async () => {
  const env = await makeEnv();
  const port = await freePort();
  const mp = await startMailplane(env, relayConfig(env, { port }));
  try {
    for (let i = 0; i < 5; i++) assert.equal((await submit(env, 'webmail@example.com', [`user${i}@remote.example`], `outage ${i}`)).code, 250);
    await mp.waitFor('deferrals', async () => ((await mp.metric('mailplane_delivery_total', 'transport="relay",result="deferred"')) ?? 0) >= 5);
    const relay = await new TestRelay({ port, mode: 'starttls', account: ACCOUNT }).start();
    try {
      await queueEmpty(mp);
      for (let i = 0; i < 5; i++) assert.equal(relay.for(`user${i}@remote.example`).length, 1, `user${i}`);
      assert.equal(relay.messages.length, 5);
    } finally {
      await relay.stop();
    }
  } finally {
    await mp.stop();
  }
});

test('mixed results: delivered once, 5xx bounced to the local sender as a DSN, 4xx retried until delivered', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port }));
  try {
    const sent = await submit(env, 'alice@example.com', ['ok@remote.example', 'defer-1@remote.example', 'fail-1@remote.example'], 'mixed');
    assert.equal(sent.code, 250);
    await mp.waitFor('a few retries of the deferred recipient', () => relay.rcptSeen.filter((a) => a === 'defer-1@remote.example').length >= 3);
    assert.equal(relay.for('ok@remote.example').length, 1, 'the delivered recipient is not sent again');
    assert.equal(relay.rcptSeen.filter((a) => a === 'fail-1@remote.example').length, 1, 'a 5xx is final');
    relay.deferring = false;
    await queueEmpty(mp);
    assert.equal(relay.for('defer-1@remote.example').length, 1);
    assert.equal(relay.for('ok@remote.example').length, 1);
    const bounces = mailbox(env, 'alice').filter((m) => m.includes('Undelivered Mail Returned to Sender'));
    assert.equal(bounces.length, 1, 'one bounce per message');
    const dsn = parseDsn(bounces[0]!);
    assert.match(bounces[0]!, /^Return-Path: <>\r\n/);
    assert.equal(dsn.status.length, 1);
    assert.equal(dsn.status[0]!.get('Final-Recipient'), 'rfc822; fail-1@remote.example');
    assert.equal(dsn.status[0]!.get('Action'), 'failed');
    assert.equal(dsn.status[0]!.get('Status'), '5.1.1');
    assert.match(dsn.status[0]!.get('Diagnostic-Code')!, /^smtp; 550 5\.1\.1 <fail-1@remote\.example>: no such user here/);
    assert.match(dsn.headers, /Subject: mixed/);
    assert.equal(await mp.metric('mailplane_delivery_total', 'transport="relay",result="bounced"'), 1);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('the null sender is never bounced; a looping message is bounced', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port }));
  try {
    assert.equal((await submit(env, '', ['fail-2@remote.example'], 'bounce of a bounce')).code, 250);
    const loop = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.example by hop${i + 1}.example; Sun, 29 Nov 2026 10:00:00 +0000\r\n`).join('');
    assert.equal((await submit(env, 'alice@example.com', ['friend@remote.example'], 'loop', loop)).code, 250);
    await queueEmpty(mp);
    assert.equal(relay.for('friend@remote.example').length, 0, 'the looping message was not sent on');
    const bounces = mailbox(env, 'alice').filter((m) => m.includes('Undelivered Mail'));
    assert.equal(bounces.length, 1);
    assert.equal(parseDsn(bounces[0]!).status[0]!.get('Status'), '5.4.6');
    assert.match(mp.logs, /undeliverable message from the null sender dropped/);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('lifetime expiry bounces what is still pending', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const mp = await startMailplane(env, relayConfig(env, { port: relay.o.port, lifetime: '1500ms' }));
  try {
    assert.equal((await submit(env, 'alice@example.com', ['defer-9@remote.example'], 'expires')).code, 250);
    await queueEmpty(mp);
    const bounces = mailbox(env, 'alice').filter((m) => m.includes('Undelivered Mail'));
    assert.equal(bounces.length, 1);
    const st = parseDsn(bounces[0]!).status[0]!;
    assert.equal(st.get('Status'), '4.4.7');
    assert.match(st.get('Diagnostic-Code')!, /delivery time expired; last error: 451 4\.2\.0/);
    assert.equal(relay.for('defer-9@remote.example').length, 0);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('kill -9 with queued and half-delivered messages: after restart everything is delivered exactly once', async () => {
  const env = await makeEnv();
  const port = await freePort();
  const relay = await new TestRelay({ port, mode: 'starttls', account: ACCOUNT }).start();
  const first = await startMailplane(env, relayConfig(env, { port }));
  // half-delivered: ok-* go through, defer-* wait
  for (let i = 0; i < 3; i++) assert.equal((await submit(env, 'alice@example.com', [`ok${i}@remote.example`, `defer${i}@remote.example`], `half ${i}`)).code, 250);
  await first.waitFor('ok recipients delivered', () => [0, 1, 2].every((i) => relay.for(`ok${i}@remote.example`).length === 1));
  await relay.stop();
  // queued only: the relay is gone
  for (let i = 0; i < 3; i++) assert.equal((await submit(env, 'alice@example.com', [`later${i}@remote.example`], `queued ${i}`)).code, 250);
  await first.kill9();
  const relay2 = await new TestRelay({ port, mode: 'starttls', account: ACCOUNT }).start();
  relay2.deferring = false;
  const second = spawnMailplane(env);
  try {
    await second.waitReady();
    await queueEmpty(second);
    for (let i = 0; i < 3; i++) {
      assert.equal(relay.for(`ok${i}@remote.example`).length + relay2.for(`ok${i}@remote.example`).length, 1, `ok${i} once`);
      assert.equal(relay2.for(`defer${i}@remote.example`).length, 1, `defer${i} once\n${first.logs}\n---\n${second.logs}`);
      assert.equal(relay2.for(`later${i}@remote.example`).length, 1, `later${i} once`);
    }
    const queueDir = join(env.dataDir, 'queue');
    assert.deepEqual(
      readdirSync(queueDir).filter((f) => /\.(eml|json)$/.test(f)),
      [],
    );
  } finally {
    await second.stop();
    await relay2.stop();
  }
});

test('an LMTP store that is down holds only local mail: mail through the relay keeps going out at once', async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const lmtp = await freePort(); // nothing listens: every LMTP attempt fails and suspends the LMTP destination
  const config = relayConfig(env, { port: relay.o.port })
    .replace(/minRetryDelay: .*\n/, 'minRetryDelay: 1h\n')
    .replace(/maxRetryDelay: .*\n/, 'maxRetryDelay: 2h\n')
    .replace(/storage:\n/, `mailboxes:\n  store: lmtp\n  lmtp: { address: 127.0.0.1:${lmtp} }\nstorage:\n`);
  const mp = await startMailplane(env, config);
  try {
    assert.equal((await submit(env, 'webmail@example.com', ['bob@example.com'], 'local')).code, 250);
    await mp.waitFor('the LMTP attempt to fail', async () => (await mp.metric('mailplane_delivery_total', 'transport="lmtp",result="deferred"')) === 1);
    // the LMTP destination is suspended for an hour now; the relay is not
    for (let i = 0; i < 3; i++) assert.equal((await submit(env, 'webmail@example.com', [`next${i}@remote.example`], `after ${i}`)).code, 250);
    await mp.waitFor('the later messages relayed without waiting for the LMTP server', () => [0, 1, 2].every((i) => relay.for(`next${i}@remote.example`).length === 1), 10_000);
    assert.equal(await mp.metric('mailplane_delivery_total', 'transport="relay",result="deferred"'), undefined, 'nothing for the relay was deferred');
    const status = await mp.status();
    assert.equal(status.queue.deferred, 1, 'bob’s copy waits for the LMTP server');
  } finally {
    await mp.stop();
    await relay.stop();
  }
});
