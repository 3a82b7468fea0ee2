// Operator queue commands against the data dir of a running server, and of a stopped one.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';

test('queue list, retry and delete on a running server, then on a stopped one', async () => {
  const env = await makeEnv();
  const relayPort = await freePort();
  writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem);
  const config = baseConfig(env, {
    relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relayPort}\n  caFile: ca.pem\n`,
    delivery: `delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  dns: { servers: [127.0.0.1:${env.ports.dns}] }\n`,
  });
  const mp = await startMailplane(env, config);
  const ids: string[] = [];
  for (const to of ['one@remote.example', 'two@remote.example', 'three@remote.example']) {
    const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
    await client.ehlo();
    const r = await client.send('webmail@example.com', [to], message(to));
    ids.push(r.data!.lines[0]!.match(/queued as (\w+)/)![1]!);
    await client.quit();
  }
  const q = (...args: string[]) => mailplane(['queue', ...args, '--config', env.configFile]);
  try {
    await mp.waitFor('first attempts', async () => (await mp.status()).queue.deferred === 3);
    const listed = await q('list');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^3 messages in the queue \(0 new, 3 deferred\)/);
    for (const id of ids) assert.match(listed.stdout, new RegExp(`^${id} +\\S+ old  from <webmail@example\\.com>  \\d+ bytes  next attempt in ((4\\d|5\\d)m\\d\\ds|1h\\d\\dm)  \\(1 attempt\\)$`, 'm'));
    assert.match(listed.stdout, new RegExp(`^ {4}one@remote\\.example +pending +the relay 127\\.0\\.0\\.1:${relayPort} refused the connection \\(nothing listens on that port\\)$`, 'm'));
    const json = JSON.parse((await q('list', '--format', 'json')).stdout) as { messages: { id: string; recipients: { state: string }[] }[] };
    assert.deepEqual(json.messages.map((m) => m.id).sort(), [...ids].sort());

    const del = await q('delete', ids[0]!);
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(del.stdout, `deleted ${ids[0]}\n`);
    assert.equal((await q('delete', ids[0]!)).code, 1, 'already gone');
    assert.equal((await mp.status()).queue.deferred, 2);

    const relay = await new TestRelay({ port: relayPort, mode: 'starttls' }).start();
    try {
      const retry = await q('retry', ids[1]!);
      assert.equal(retry.stdout, 'retrying 1 message now\n');
      await mp.waitFor('retried message delivered', () => relay.for('two@remote.example').length === 1);
      assert.equal(relay.for('three@remote.example').length, 0, 'only the one asked for');
      assert.equal(relay.for('one@remote.example').length, 0, 'deleted messages are never sent');
      assert.equal((await q('retry', 'nosuchid')).code, 1);
    } finally {
      await relay.stop();
    }
    await mp.stop();
    // stopped server: the command works on the files directly
    const offline = await q('list');
    assert.match(offline.stdout, /^1 message in the queue/);
    assert.equal((await q('retry')).stdout, '1 message will be attempted as soon as the server runs\n');
    assert.equal((await q('delete', ids[2]!)).code, 0);
    assert.equal((await q('list')).stdout, 'The queue is empty.\n');
  } finally {
    await mp.stop();
  }
});

test('two servers never share a data dir', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const other = await makeEnv();
    writeFileSync(other.configFile, baseConfig({ ...other, dataDir: env.dataDir }));
    const r = await mailplane(['run', '--config', other.configFile, '--log-format', 'json']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`data directory ${env.dataDir} is in use by another mailplane \\(pid ${mp.pid}\\)`));
  } finally {
    await mp.stop();
  }
});
