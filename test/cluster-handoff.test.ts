// Queues never stranded: `mailplane queue handoff` makes a replica stop accepting, hand every
// queued message (its undelivered recipients, its sender, BODY=8BITMIME/SMTPUTF8 and its arrival
// time) to a second mailplane's peer listener over SMTP with the peer secret, and exit when its
// queue is empty. Each undelivered recipient arrives once, none of the delivered ones again; a
// kill -9 during the hand-off duplicates at most the message in flight and loses none. A peer
// listener refuses whoever is not a peer.
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, spawnMailplane, startMailplane, waitFor, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

const SECRET = 'the-peer-secret-of-this-cluster';

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

interface Replica {
  env: Env;
  peerPort: number;
}

async function replica(cert?: Env): Promise<Replica> {
  const env = await makeEnv();
  if (cert) {
    // the replicas of one cluster share the config, and so the certificate
    env.certFile = cert.certFile;
    env.keyFile = cert.keyFile;
  }
  return { env, peerPort: await freePort() };
}

/** A replica's config: relay to `relay`, a peer listener, the hand-off to `to`; local mail over LMTP to a port where nothing listens. */
function config(r: Replica, o: { relay: number; to: Replica; lmtp: number }): string {
  writeFileSync(join(r.env.dir, 'peer-secret'), `${SECRET}\n`);
  const base = baseConfig(r.env, {
    relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${o.relay}\n  secure: false\n`,
    delivery: `delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  dns: { servers: [127.0.0.1:${r.env.ports.dns}], timeout: 1s }\n`,
  });
  const submissions = base.split('\n').find((l) => l.includes('name: submissions'))!;
  return `${base.replace(submissions, `${submissions}\n    - { name: peer, address: 127.0.0.1, port: ${r.peerPort}, role: peer, tls: starttls }`)}mailboxes:
  store: lmtp
  lmtp: { address: 127.0.0.1:${o.lmtp} }
cluster:
  peers: { handoff: "127.0.0.1:${o.to.peerPort}", secretFile: peer-secret }
`;
}

/** Sends one message to a replica's mx as the exempt client; the reply to DATA. */
async function submit(mp: MailplaneProcess, to: string[], body: string, mailParams = ''): Promise<number> {
  const { client } = await SmtpClient.connect({ port: mp.env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  assert.equal((await client.cmd(`MAIL FROM:<alice@example.com>${mailParams}`)).code, 250);
  for (const t of to) assert.equal((await client.cmd(`RCPT TO:<${t}>`)).code, 250);
  const [, done] = await client.data(body);
  await client.quit();
  return done.code;
}

interface Listed {
  id: string;
  arrivedAt: number;
  body?: string;
  smtputf8?: boolean;
  recipients: { address: string; state: string; lmtp?: { user: string } }[];
}

async function queued(env: Env): Promise<Listed[]> {
  const r = await mailplane(['queue', 'list', '--data-dir', env.dataDir, '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { messages: Listed[] }).messages;
}

function queueFiles(env: Env): number {
  return readdirSync(join(env.dataDir, 'queue')).filter((f) => f.endsWith('.json')).length;
}

/**
 * Two replicas that hand off to each other, stopped when the file ends: A's relay defers
 * defer-* (that mail waits at A), B's relays everything; local mail goes over LMTP to a port
 * where nothing listens.
 */
async function pair() {
  const relayA = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  const relayB = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  relayB.deferring = false;
  const lmtp = await freePort();
  const a = await replica();
  const b = await replica(a.env);
  const B = await startMailplane(b.env, config(b, { relay: relayB.o.port, to: a, lmtp }));
  const A = await startMailplane(a.env, config(a, { relay: relayA.o.port, to: b, lmtp }));
  cleanup.push(
    () => relayA.stop(),
    () => relayB.stop(),
    () => A.stop(),
    () => B.stop(),
  );
  return { relayA, relayB, a, b, A, B };
}

test('hand-off: every undelivered recipient reaches the peer once, with its envelope and arrival time; the leaving replica exits', async () => {
  const { relayA, relayB, a, b, A, B } = await pair();

  // partly delivered: ok-* go out through A's relay, defer-* wait there (451, retried in an hour)
  for (let i = 0; i < 5; i++) {
    const body = message(`handoff ${i}`, `Line one.\r\n.a line that starts with a dot\r\n..and two\r\nLast.\r\n`);
    assert.equal(await submit(A, [`ok-${i}@remote.example`, `defer-${i}@remote.example`], body), 250);
  }
  // 8-bit, SMTPUTF8, a local recipient (LMTP down: it waits) and a remote one
  const eight = Buffer.from(message('huit bits', 'Caf\u00e9 cr\u00e8me.\r\n'), 'latin1');
  assert.equal(await submit(A, ['bob@example.com', 'defer-8@remote.example'], eight.toString('latin1'), ' BODY=8BITMIME SMTPUTF8'), 250);
  await A.waitFor('the first attempts', async () => relayA.messages.length === 5 && (await A.status()).queue.deferred === 6 && (await A.status()).queue.active === 0, 20_000);
  const before = await queued(a.env);
  assert.equal(before.length, 6);

  const r = await mailplane(['queue', 'handoff', '--config', a.env.configFile]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${A.logs}`);
  assert.match(r.stdout, /stopped accepting; handing 6 messages to 127\.0\.0\.1:\d+, then exiting/);
  assert.match(r.stdout, /handed off: the queue is empty and the server has exited/);
  assert.equal(await A.exited, 0);
  assert.equal(queueFiles(a.env), 0);
  assert.match(A.logs, /"msg":"hand-off complete: the queue is empty, exiting"/);
  assert.match(A.logs, /"msg":"recipient delivered".*"transport":"handoff"/);

  await B.waitFor('B to relay what it was handed', () => [0, 1, 2, 3, 4, 8].every((i) => relayB.for(`defer-${i}@remote.example`).length > 0), 20_000);
  await B.waitFor('B to settle', async () => (await B.status()).queue.active === 0);
  for (const i of [0, 1, 2, 3, 4, 8]) assert.equal(relayB.for(`defer-${i}@remote.example`).length, 1, `defer-${i} once`);
  for (let i = 0; i < 5; i++) {
    assert.equal(relayA.for(`ok-${i}@remote.example`).length, 1, `ok-${i} once, from A`);
    assert.equal(relayB.for(`ok-${i}@remote.example`).length, 0, `ok-${i} not again`);
  }
  // the bytes: A's Received and B's, dots as they were, 8-bit intact
  const handed = relayB.for('defer-0@remote.example')[0]!.raw.toString('latin1');
  assert.equal(handed.match(/^Received: /gm)?.length, 2);
  assert.match(handed, /\r\n\.a line that starts with a dot\r\n\.\.and two\r\n/);
  assert.match(relayB.for('defer-8@remote.example')[0]!.raw.toString('latin1'), /Caf\u00e9 cr\u00e8me\./);
  assert.equal(relayB.for('defer-0@remote.example')[0]!.from, 'alice@example.com');

  // the local recipient waits at B (its LMTP is down too): arrival time and envelope kept
  const atB = await queued(b.env);
  assert.equal(atB.length, 1);
  const original = before.find((m) => m.recipients.some((x) => x.address === 'bob@example.com'))!;
  assert.equal(atB[0]!.arrivedAt, original.arrivedAt);
  assert.equal(atB[0]!.body, '8BITMIME');
  assert.equal(atB[0]!.smtputf8, true);
  assert.deepEqual(
    atB[0]!.recipients.map((x) => [x.address, x.state, x.lmtp?.user]),
    [['bob@example.com', 'pending', 'bob']],
  );
});

test('a peer listener refuses whoever is not a peer: outsiders, LAN clients, a wrong secret; the arrival parameter is refused elsewhere', async () => {
  const relay = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  cleanup.push(() => relay.stop());
  const a = await replica();
  const b = await replica(a.env);
  const A = await startMailplane(a.env, config(a, { relay: relay.o.port, to: b, lmtp: await freePort() }));
  cleanup.push(() => A.stop());

  for (const from of [CLIENTS.untrusted, CLIENTS.lan, CLIENTS.other]) {
    const { client } = await SmtpClient.connect({ port: a.peerPort, localAddress: from });
    const ehlo = await client.ehlo();
    assert.match(ehlo.text, /X-MAILPLANE-HANDOFF/);
    const mail = await client.cmd('MAIL FROM:<spammer@example.net>');
    assert.equal(mail.code, 530, `${from}: ${mail.text}`);
    assert.equal((await client.cmd('RCPT TO:<victim@remote.example>')).code, 503);
    await client.quit();
  }
  const { client } = await SmtpClient.connect({ port: a.peerPort, localAddress: CLIENTS.untrusted });
  await client.ehlo();
  assert.equal((await client.starttls()).code, 220);
  await client.ehlo();
  assert.equal((await client.authPlain('peer', 'not-the-secret-at-all')).code, 535);
  assert.equal((await client.authPlain('alice', 'alice-pw')).code, 535, 'user accounts do not log in on a peer listener');
  assert.equal((await client.cmd('MAIL FROM:<spammer@example.net> X-MAILPLANE-ARRIVED=1000')).code, 555);
  await client.quit();

  // the exempt client is a peer
  const exempt = (await SmtpClient.connect({ port: a.peerPort, localAddress: CLIENTS.exempt })).client;
  await exempt.ehlo();
  assert.equal((await exempt.cmd('MAIL FROM:<alice@example.com> X-MAILPLANE-ARRIVED=1000')).code, 250);
  assert.equal((await exempt.cmd('RCPT TO:<someone@remote.example>')).code, 250);
  await exempt.quit();

  // elsewhere the parameter does not exist, not even for an exempt client
  const mx = (await SmtpClient.connect({ port: a.env.ports.mx, localAddress: CLIENTS.exempt })).client;
  await mx.ehlo();
  assert.equal((await mx.cmd('MAIL FROM:<alice@example.com> X-MAILPLANE-ARRIVED=1000')).code, 555);
  await mx.quit();
  assert.equal(relay.messages.length, 0);
});

test('kill -9 during a hand-off: after a restart the rest is handed off; at most the message in flight twice, none lost', async () => {
  const p = await pair();
  const { relayB, a, B } = p;
  let A = p.A;
  const N = 24;
  const big = `${'x'.repeat(900)}\r\n`.repeat(500); // ~450 KB each: the hand-off takes a while
  for (let i = 0; i < N; i++) assert.equal(await submit(A, [`defer-${i}@remote.example`], message(`big ${i}`, big)), 250);
  await A.waitFor('the first attempts', async () => (await A.status()).queue.deferred === N, 30_000);

  const first = mailplane(['queue', 'handoff', '--config', a.env.configFile]);
  await waitFor('B to take a few', async () => ((await B.metric('mailplane_smtp_messages_total', 'listener="peer",result="accepted"')) ?? 0) >= 3, 30_000);
  await A.kill9();
  const r1 = await first;
  assert.equal(r1.code, 1, 'the command says the server stopped before the queue was empty');
  const left = queueFiles(a.env);
  assert.ok(left > 0 && left < N, `${left} of ${N} left after the kill`);

  A = spawnMailplane(a.env);
  cleanup.push(() => A.stop());
  await A.waitReady();
  const r2 = await mailplane(['queue', 'handoff', '--config', a.env.configFile]);
  assert.equal(r2.code, 0, `${r2.stdout}\n${r2.stderr}\n${A.logs}`);
  assert.equal(queueFiles(a.env), 0);

  await B.waitFor('every recipient relayed by B', () => Array.from({ length: N }, (_, i) => i).every((i) => relayB.for(`defer-${i}@remote.example`).length > 0), 60_000);
  const copies = Array.from({ length: N }, (_, i) => relayB.for(`defer-${i}@remote.example`).length);
  assert.ok(
    copies.every((n) => n >= 1),
    'none lost',
  );
  assert.ok(copies.reduce((s, n) => s + n - 1, 0) <= 1, `at most one duplicate: ${copies.join(',')}`);
});
