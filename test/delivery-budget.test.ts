// Big mail after a restart: the deliveries in flight are bounded by bytes as well as by count
// (delivery.maxBytesInFlight), and what was queued before a start goes out gradually
// (delivery.startupRamp), never every due message at once. Queue entries are written to disk as
// a relay outage leaves them, then a server starts on them and delivers to a relay that holds
// every message a little; the relay counts how many transactions it has open at once.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { newQueueId } from '../src/store/queue-entry.js';
import { freePort } from './helpers/ports.js';
import { baseConfig, makeEnv, startMailplane, type Env } from './helpers/server.js';

/** A relay that keeps each message 150 ms after its last byte and counts the transactions open at once. */
async function holdingRelay(): Promise<{ port: number; delivered: string[]; peak: () => number; stop: () => Promise<void> }> {
  const port = await freePort();
  const delivered: string[] = [];
  let open = 0;
  let peak = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    size: 50_000_000,
    onMailFrom: (_a, _s, cb) => {
      open++;
      peak = Math.max(peak, open);
      cb();
    },
    onData: (stream, session, cb) => {
      stream.on('data', () => {});
      stream.on('end', () =>
        setTimeout(() => {
          open--;
          delivered.push(...session.envelope.rcptTo.map((r) => r.address));
          cb(null, 'held and taken');
        }, 150),
      );
    },
  });
  server.on('error', () => {});
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return {
    port,
    delivered,
    peak: () => peak,
    stop: async () => {
      for (const c of server.connections) c.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** `count` messages of `bytes` each in the queue folder, due now after an attempt that failed. */
function queueBig(env: Env, count: number, bytes: number): string[] {
  const queue = join(env.dataDir, 'queue');
  mkdirSync(join(queue, 'tmp'), { recursive: true });
  const head = 'From: <alice@example.com>\r\nSubject: big\r\n\r\n';
  const body = Buffer.from(head + `${'y'.repeat(998)}\r\n`.repeat(Math.ceil(bytes / 1000))).subarray(0, bytes);
  const now = Date.now();
  const to: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = newQueueId(now - 60_000);
    to.push(`r${i}@remote.example`);
    const entry = {
      version: 1,
      id,
      sender: 'alice@example.com',
      arrivedAt: now - 60_000,
      size: body.length,
      dkim: '',
      recipients: [{ address: to[i], state: 'pending', attempts: 1, lastResponse: '451 4.4.1 relay unreachable', updatedAt: now - 30_000 }],
      attempts: 1,
      nextAttemptAt: now - 1000,
      lastError: '451 4.4.1 relay unreachable',
      bounced: false,
    };
    writeFileSync(join(queue, `${id}.eml`), body);
    writeFileSync(join(queue, `${id}.json`), JSON.stringify(entry));
  }
  return to;
}

async function restartOn(count: number, bytes: number, delivery: string): Promise<{ peak: number; delivered: string[]; expected: string[] }> {
  const env = await makeEnv();
  const expected = queueBig(env, count, bytes);
  const relay = await holdingRelay();
  const mp = await startMailplane(
    env,
    baseConfig(env, {
      maxMessageSize: '10MB',
      relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.port}\n  secure: false\n`,
      delivery: `delivery:\n${delivery}`,
    }),
  );
  try {
    await mp.waitFor('every queued message at the relay', () => relay.delivered.length >= count, 60_000);
    await mp.waitFor('the queue empty', async () => {
      const s = await mp.status();
      return s.queue.active + s.queue.deferred === 0;
    });
    return { peak: relay.peak(), delivered: [...relay.delivered].sort(), expected: expected.sort() };
  } finally {
    await mp.stop();
    await relay.stop();
  }
}

test('after a restart, big messages go out within the byte budget: 8 × 400 kB with a 1 MB budget, at most 2 at once though 10 are allowed by count', async () => {
  const r = await restartOn(8, 400_000, '  concurrency: 10\n  maxBytesInFlight: 1MB\n  startupRamp: 0\n');
  assert.deepEqual(r.delivered, r.expected, 'every message delivered once');
  assert.ok(r.peak <= 2, `${r.peak} transactions at once`);
});

test('a message larger than the byte budget still goes (alone)', async () => {
  const r = await restartOn(3, 600_000, '  concurrency: 10\n  maxBytesInFlight: 500KB\n  startupRamp: 0\n');
  assert.deepEqual(r.delivered, r.expected);
  assert.equal(r.peak, 1);
});

test('after a restart the queue starts gradually: with a ramp of an hour, one delivery at a time (concurrency 10)', async () => {
  const r = await restartOn(6, 20_000, '  concurrency: 10\n  startupRamp: 1h\n');
  assert.deepEqual(r.delivered, r.expected);
  assert.equal(r.peak, 1, 'the ramp starts at one attempt');
});

test('without a ramp or a tight budget, the same queue goes out several at a time (what the two tests above hold back)', async () => {
  const r = await restartOn(6, 20_000, '  concurrency: 10\n  startupRamp: 0\n');
  assert.deepEqual(r.delivered, r.expected);
  assert.ok(r.peak > 1, `${r.peak} transactions at once`);
});
