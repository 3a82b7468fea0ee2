// The outbound queue at scale and under a bad destination: a big queue on disk is loaded in the
// background (never listed whole, never blocking readiness for long) and delivers what is due;
// a destination that does not answer cannot take the delivery slots of the others, and once
// it is known to be unreachable its other messages wait without a connection each.
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { newQueueId } from '../src/store/queue-entry.js';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, spawnMailplane, startMailplane } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

const COUNT = 20_000;
const DUE = 100;

test(`${COUNT.toLocaleString('en')} queued messages: loaded in the background, the due ones delivered, the rest kept; crash leftovers cleared`, async () => {
  const env = await makeEnv();
  const queue = join(env.dataDir, 'queue');
  mkdirSync(join(queue, 'tmp'), { recursive: true });
  const now = Date.now();
  const body = join(env.dir, 'body.eml');
  writeFileSync(body, 'Received: from a (b)\r\nSubject: queued\r\n\r\nhello\r\n');
  const ids: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const id = newQueueId(now - 60_000);
    ids.push(id);
    const due = i < DUE;
    const entry = {
      version: 1,
      id,
      sender: 'alice@example.com',
      arrivedAt: now - 60_000,
      size: 40,
      recipients: [{ address: `r${i}@d${i % 50}.example`, state: 'pending', attempts: due ? 0 : 1, lastResponse: due ? null : '451 later', updatedAt: now }],
      attempts: due ? 0 : 1,
      nextAttemptAt: due ? now - 1000 : now + 3_600_000,
      lastError: null,
      bounced: false,
    };
    writeFileSync(join(queue, `${id}.json`), JSON.stringify(entry));
    linkSync(body, join(queue, `${id}.eml`));
  }
  // what a crash can leave: an update cut short, a message file without state, an unreadable entry
  writeFileSync(join(queue, `${ids[5000]}.json.1a2b3c4d`), '{"half');
  const orphan = newQueueId(now - 120_000);
  linkSync(body, join(queue, `${orphan}.eml`));
  const broken = newQueueId(now - 120_000);
  writeFileSync(join(queue, `${broken}.json`), '{ not json');
  linkSync(body, join(queue, `${broken}.eml`));

  const relay = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  const mp = await startMailplane(
    env,
    baseConfig(env, {
      relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.o.port}\n  secure: false\n`,
      delivery: 'delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n',
    }),
  );
  try {
    const loaded = await mp.waitFor(
      'the queue loaded',
      async () => {
        const s = await mp.status();
        return s.queue.load.state === 'loaded' ? s.queue : undefined;
      },
      60_000,
    );
    assert.equal(loaded.load.entries, COUNT);
    await mp.waitFor('the due messages delivered', () => relay.messages.length === DUE, 30_000);
    assert.deepEqual(
      relay.messages.map((m) => m.to[0]).sort(),
      ids
        .slice(0, DUE)
        .map((_, i) => `r${i}@d${i % 50}.example`)
        .sort(),
    );
    // delivered entries are gone (removed just after the relay's answer), the others wait
    const s = await mp.waitFor('the delivered entries removed', async () => {
      const st = await mp.status();
      // and their jobs ended (an entry leaves the index just before its job ends)
      return st.queue.active + st.queue.deferred === COUNT - DUE && st.queue.schedule.running === 0 ? st : undefined;
    });
    assert.equal(s.queue.schedule.jobs, COUNT - DUE);
    assert.ok(s.queue.oldestAgeSeconds >= 60);
    assert.match(mp.logs, new RegExp(`"msg":"queue loaded".*"entries":${COUNT}`));
    const names = new Set(readdirSync(queue));
    assert.ok(!names.has(`${ids[5000]}.json.1a2b3c4d`), 'the cut-short update is removed');
    assert.ok(!names.has(`${orphan}.eml`), 'the message file without state is removed');
    assert.deepEqual(readdirSync(join(queue, 'corrupt')).sort(), [`${broken}.eml`, `${broken}.json`]);
    assert.equal(relay.messages.length, DUE, 'nothing that is not due went out');
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('a destination that never answers holds at most its share of the slots; once unreachable, its other messages wait without a connection each', async () => {
  const env = await makeEnv();
  const port = await freePort();
  const fast = await new TestRelay({ port, mode: 'plain', name: 'mx.fast.test' }).start();
  // a tarpit: accepts connections on 127.0.0.3 and never says a word
  const held: Socket[] = [];
  let connections = 0;
  let peak = 0;
  const tarpit = createServer((s) => {
    connections++;
    held.push(s);
    peak = Math.max(peak, held.filter((x) => !x.destroyed).length);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => tarpit.listen(port, '127.0.0.3', () => r()));
  const dns = await new TestDns({
    mx: { 'slow.test': [{ priority: 10, exchange: 'mx.slow.test' }], 'fast.test': [{ priority: 10, exchange: 'mx.fast.test' }] },
    a: { 'mx.slow.test': ['127.0.0.3'], 'mx.fast.test': ['127.0.0.1'] },
  }).start();
  const mp = await startMailplane(
    env,
    baseConfig(env, {
      delivery: `delivery:\n  concurrency: 4\n  destinationConcurrency: 2\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  mxPort: ${port}\n  connectTimeout: 3s\n  dns: { servers: [127.0.0.1:${dns.port}], timeout: 2s }\n`,
    }),
  );
  try {
    const c = (await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt })).client;
    await c.ehlo();
    for (let i = 0; i < 8; i++) assert.equal((await c.send('alice@example.com', [`s${i}@slow.test`], message(`slow ${i}`))).data!.code, 250);
    await mp.waitFor('the slow destination holding its two slots', () => connections === 2);
    for (let i = 0; i < 5; i++) assert.equal((await c.send('alice@example.com', [`f${i}@fast.test`], message(`fast ${i}`))).data!.code, 250);
    await c.quit();
    // the fast destination is served by the two free slots while the slow one still hangs
    await mp.waitFor('the fast destination delivered', () => fast.messages.length === 5);
    assert.equal(peak, 2, 'never more than destinationConcurrency connections to one destination');
    // after the greeting timeout the slow destination is suspended: its six other messages are
    // deferred without a connection of their own
    const s = await mp.waitFor(
      'every slow message deferred',
      async () => {
        const st = await mp.status();
        return st.queue.deferred === 8 ? st : undefined;
      },
      20_000,
    );
    assert.equal(await mp.metric('mailplane_delivery_total', 'transport="mx",result="deferred"'), 8);
    assert.equal(connections, 2, 'no new connection to a destination known to be unreachable');
    assert.equal(s.queue.schedule.suspended, 1);
    assert.match(mp.logs, /destination unreachable: its messages wait for the retry.*"destination":"slow.test"/);
  } finally {
    await mp.stop();
    await fast.stop();
    dns.stop();
    for (const s of held) s.destroy();
    tarpit.close();
  }
});

test('a queue that cannot be loaded keeps the server out of service and says why', async () => {
  const env = await makeEnv();
  mkdirSync(join(env.dataDir, 'queue'), { recursive: true });
  writeFileSync(join(env.dataDir, 'queue', 'tmp'), 'a file where the queue needs a folder');
  writeFileSync(env.configFile, baseConfig(env));
  const mp = spawnMailplane(env);
  try {
    await mp.waitFor('the ops endpoint', async () => (await mp.http('/healthz').catch(() => null))?.status === 200);
    const s = await mp.waitFor('the load to fail', async () => {
      const st = await mp.status();
      return st.queue?.load?.state === 'failed' ? st : undefined;
    });
    assert.match(s.queue.load.error, /EEXIST|ENOTDIR|file already exists|not a directory/);
    assert.equal((await mp.http('/readyz')).status, 503);
    assert.equal(s.ready, false);
    assert.match(mp.logs, /cannot load the outbound queue/);
    assert.ok(mp.running);
  } finally {
    await mp.stop();
  }
});
