// Several replicas, one set of limits: three mailplane processes on 127.0.0.2, .3 and .4 share a real Redis
// (cluster.redis), so a lockout earned on one is seen by the others, a sending rate is spent
// across them, connections per client and refused recipients are counted across them — three
// replicas allow what one allows. Redis paused or killed mid-test: each replica falls back to its
// own counters at once (sessions keep being answered), logs it and exports it, and shares again
// once Redis is back. `mailplane unlock` lifts a lockout for every replica.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';
import { TestRedis } from './helpers/redis.js';
import { baseConfig, CLIENTS, makeEnv, onAddress, startMailplane, USERS, waitFor, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

const REDIS_PASSWORD = 'redis-test-password-4f1c';

let redis: TestRedis;
const replicas: MailplaneProcess[] = [];

/** Each replica listens on an address of its own: 127.0.0.2, .3 and .4. */
const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'] as const;
const hosts = new Map<MailplaneProcess, string>();
const hostOf = (mp: MailplaneProcess) => hosts.get(mp)!;

function clusterConfig(env: Env, address: string, lmtpPort: number): string {
  writeFileSync(join(env.dir, 'redis-password'), `${REDIS_PASSWORD}\n`);
  return `${onAddress(
    baseConfig(env, {
      extraAuth: '    maxFailures: 3\n',
      extraSmtp: `  limits:
    maxConnectionsPerClient: 3
    sendRate: { messages: 3, recipients: 100, window: 1h }
    rejectedRecipients: { delayAfter: 100, disconnectAfter: 4, window: 10m }
`,
    }),
    address,
  )}mailboxes:
  store: lmtp
  lmtp: { address: 127.0.0.1:${lmtpPort} }
cluster:
  redis: { url: "${redis.url}", passwordFile: redis-password, timeout: 150ms }
`;
}

before(async () => {
  redis = await TestRedis.start({ password: REDIS_PASSWORD });
  const lmtpPort = await freePort(); // nothing listens: local mail waits in the queues
  for (const address of ADDRESSES) {
    const env = await makeEnv();
    const mp = await startMailplane(env, clusterConfig(env, address, lmtpPort));
    hosts.set(mp, address);
    replicas.push(mp);
  }
  for (const r of replicas) await r.waitFor('Redis to be up', async () => (await r.metric('mailplane_cluster_redis_up')) === 1);
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await redis?.stop();
});

/** One AUTH with a wrong password on a replica's implicit-TLS submission listener: the reply (or the refusal at connect). */
async function failAuth(mp: MailplaneProcess): Promise<number> {
  const { client, greeting } = await SmtpClient.connect({ host: hostOf(mp), port: mp.env.ports.submissions, implicitTls: true });
  if (greeting.code !== 220) return greeting.code;
  await client.ehlo();
  const r = await client.authPlain('alice', 'wrong-password');
  client.destroy();
  return r.code;
}

/** alice sends one message to bob through a replica's submission; the reply to MAIL, or to DATA. */
async function sendAsAlice(mp: MailplaneProcess, subject: string): Promise<number> {
  const { client } = await SmtpClient.connect({ host: hostOf(mp), port: mp.env.ports.submissions, implicitTls: true, localAddress: CLIENTS.other });
  await client.ehlo();
  assert.equal((await client.authPlain('alice', USERS.alice.password)).code, 235);
  const r = await client.send('alice@example.com', ['bob@example.com'], message(subject));
  await client.quit();
  return r.mail.code !== 250 ? r.mail.code : r.data!.code;
}

test('a lockout earned across three replicas is one replica’s worth, and unlock lifts it everywhere', async () => {
  const [a, b, c] = replicas as [MailplaneProcess, MailplaneProcess, MailplaneProcess];
  // maxFailures 3: one failure on each replica is three, so the third one locks the address out
  assert.equal(await failAuth(a), 535);
  assert.equal(await failAuth(b), 535);
  assert.equal(await failAuth(c), 421);
  for (const r of replicas) assert.equal(await failAuth(r), 421, 'refused at connect on every replica');
  await waitFor('the lockout in every /status', async () => {
    for (const r of replicas) if (!(await r.status()).authLockouts.some((l: { address: string }) => l.address === CLIENTS.untrusted)) return false;
    return true;
  });
  const u = await mailplane(['unlock', '--all', '--config', a.env.configFile]);
  assert.equal(u.code, 0, u.stderr);
  assert.match(u.stdout, /lifted 1 lockout/);
  // lifted in Redis: another replica lets the address in again
  assert.equal(await failAuth(c), 535);
  await mailplane(['unlock', CLIENTS.untrusted, '--config', a.env.configFile]);
});

test('unlock reaches Redis without a running server on the data dir', async () => {
  const [a, b] = replicas as [MailplaneProcess, MailplaneProcess];
  for (let i = 0; i < 3; i++) await failAuth(b);
  assert.equal(await failAuth(a), 421);
  // a config of its own (another data dir, where no server runs), the same Redis
  const env = await makeEnv();
  writeFileSync(env.configFile, clusterConfig(env, ADDRESSES[0], await freePort()));
  const u = await mailplane(['unlock', CLIENTS.untrusted, '--config', env.configFile]);
  assert.equal(u.code, 0, u.stderr);
  assert.match(u.stdout, /lifted the lockout of 127\.0\.0\.1 in Redis/);
  assert.equal(await failAuth(a), 535);
  await mailplane(['unlock', '--all', '--config', a.env.configFile]);
});

test('a sending rate is spent across replicas', async () => {
  const [a, b, c] = replicas as [MailplaneProcess, MailplaneProcess, MailplaneProcess];
  // 3 messages per hour for alice, wherever she sends them
  assert.equal(await sendAsAlice(a, 'rate one'), 250);
  assert.equal(await sendAsAlice(b, 'rate two'), 250);
  assert.equal(await sendAsAlice(c, 'rate three'), 250);
  for (const r of replicas) assert.equal(await sendAsAlice(r, 'rate four'), 451);
  assert.match(a.logs + b.logs + c.logs, /sending rate limit reached/);

  // 100 recipients per hour for bob, wherever he sends them: 60 on one replica leave 40 on the others
  const bobSends = async (mp: MailplaneProcess, n: number, tag: string) => {
    const { client } = await SmtpClient.connect({ host: hostOf(mp), port: mp.env.ports.submissions, implicitTls: true, localAddress: CLIENTS.other });
    await client.ehlo();
    assert.equal((await client.authPlain('bob', USERS.bob.password)).code, 235);
    const r = await client.send(
      'bob@example.com',
      Array.from({ length: n }, (_, i) => `${tag}-${i}@remote.example`),
      message(tag),
    );
    await client.quit();
    return { mail: r.mail.code, accepted: r.rcpt.filter((x) => x.code === 250).length, refused: r.rcpt.filter((x) => x.code !== 250).map((x) => x.code), data: r.data?.code };
  };
  assert.deepEqual(await bobSends(a, 60, 'sixty'), { mail: 250, accepted: 60, refused: [], data: 250 });
  assert.deepEqual(await bobSends(b, 50, 'fifty'), { mail: 250, accepted: 40, refused: Array(10).fill(451), data: 250 }, 'the 41st recipient is over 100');
  assert.equal((await bobSends(c, 1, 'one-more')).mail, 451, 'the 101st recipient: refused at MAIL');
  assert.match(a.logs + b.logs + c.logs, /sending rate limit reached.*"limit":"100 recipients per 1h"/);
});

test('connections per client and refused recipients are counted across replicas', async () => {
  const [a, b, c] = replicas as [MailplaneProcess, MailplaneProcess, MailplaneProcess];
  // maxConnectionsPerClient 3: two open on a, one on b, so c refuses a fourth
  const open: SmtpClient[] = [];
  for (const r of [a, a, b]) {
    const { client, greeting } = await SmtpClient.connect({ host: hostOf(r), port: r.env.ports.mx, localAddress: CLIENTS.untrusted });
    assert.equal(greeting.code, 220);
    open.push(client);
  }
  const refused = await SmtpClient.connect({ host: hostOf(c), port: c.env.ports.mx, localAddress: CLIENTS.untrusted });
  assert.equal(refused.greeting.code, 421);
  assert.match(refused.greeting.text, /Too many connections/);
  refused.client.destroy();
  await open.pop()!.quit();
  await waitFor('a connection slot on c once one closed on b', async () => {
    const { client, greeting } = await SmtpClient.connect({ host: hostOf(c), port: c.env.ports.mx, localAddress: CLIENTS.untrusted });
    client.destroy();
    return greeting.code === 220;
  });
  for (const x of open) await x.quit();

  // disconnectAfter 4 refused RCPTs: two in a session on a, then the fourth of the address on b
  const first = (await SmtpClient.connect({ host: hostOf(a), port: a.env.ports.mx, localAddress: CLIENTS.untrusted })).client;
  await first.ehlo();
  assert.equal((await first.cmd('MAIL FROM:<someone@example.net>')).code, 250);
  assert.equal((await first.cmd('RCPT TO:<nobody1@example.com>')).code, 550);
  assert.equal((await first.cmd('RCPT TO:<nobody2@example.com>')).code, 550);
  await first.quit();
  const second = (await SmtpClient.connect({ host: hostOf(b), port: b.env.ports.mx, localAddress: CLIENTS.untrusted })).client;
  await second.ehlo();
  assert.equal((await second.cmd('MAIL FROM:<someone@example.net>')).code, 250);
  assert.equal((await second.cmd('RCPT TO:<nobody3@example.com>')).code, 550);
  const closing = await second.cmd('RCPT TO:<nobody4@example.com>');
  assert.equal(closing.code, 421);
  assert.match(closing.text, /Too many rejected recipients/);
  await second.waitClosed();
});

/** A session whose every decision asks the limits: connect, MAIL, a refused RCPT; how long it took. */
async function session(mp: MailplaneProcess): Promise<number> {
  const t0 = Date.now();
  const { client, greeting } = await SmtpClient.connect({ host: hostOf(mp), port: mp.env.ports.mx, localAddress: CLIENTS.other });
  assert.equal(greeting.code, 220);
  await client.ehlo();
  assert.equal((await client.cmd('MAIL FROM:<someone@example.net>')).code, 250);
  assert.equal((await client.cmd('RCPT TO:<nobody@example.com>')).code, 550);
  assert.equal((await client.cmd('RCPT TO:<bob@example.com>')).code, 250);
  await client.quit();
  return Date.now() - t0;
}

test('Redis paused or killed: sessions are answered on local counters at once, logged and exported; shared again when it is back', async () => {
  const [a] = replicas as [MailplaneProcess];
  const localBefore = (await a.metric('mailplane_cluster_limit_decisions_total', 'store="local"')) ?? 0;

  redis.pause(); // answers nothing: every decision waits at most cluster.redis.timeout
  try {
    const took = await session(a);
    assert.ok(took < 10_000, `the session took ${took} ms`); // generous: each decision waits 150 ms at most
    await a.waitFor('redis_up 0', async () => (await a.metric('mailplane_cluster_redis_up')) === 0);
    assert.match(a.logs, /"msg":"cluster: Redis unavailable, limits fall back to this replica's own counters"/);
    assert.ok(((await a.metric('mailplane_cluster_limit_decisions_total', 'store="local"')) ?? 0) > localBefore);
    assert.ok((await a.metric('mailplane_cluster_redis_state_changes_total', 'state="down"'))! >= 1);
    await session(a); // and again, now without even asking
    const st = await a.status();
    assert.equal(st.cluster.redis.up, false);
    assert.ok(st.cluster.redis.lastError.message);
  } finally {
    redis.resume();
  }
  await a.waitFor('redis_up 1 after SIGCONT', async () => (await a.metric('mailplane_cluster_redis_up')) === 1);
  assert.match(a.logs, /cluster: Redis answers again, limits are shared across replicas again/);

  await redis.kill(); // a crash: connections drop
  await a.waitFor('redis_up 0 after the kill', async () => (await a.metric('mailplane_cluster_redis_up')) === 0);
  const took = await session(a);
  assert.ok(took < 10_000, `the session took ${took} ms`);
  await redis.restart(); // same port, empty (no persistence)
  for (const r of replicas) await r.waitFor('redis_up 1 after the restart', async () => (await r.metric('mailplane_cluster_redis_up')) === 1, 20_000);
  await session(a);
  const st = await a.status();
  assert.equal(st.cluster.redis.up, true);
  assert.equal(st.cluster.redis.password, 'set');
  assert.ok(!JSON.stringify(st).includes(REDIS_PASSWORD), '/status never shows the password');
  assert.ok(!a.logs.includes(REDIS_PASSWORD), 'the log never shows the password');
});
