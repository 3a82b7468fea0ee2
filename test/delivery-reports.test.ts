// Delivery as people see it (issue 18): a delivery in progress in `queue list` and /status, a
// retry asked for during an attempt honoured when it ends, a relay that hangs not reported up;
// bounces sent after the attempt that failed a recipient, with the original message up to
// ORIGINAL_LIMIT and its headers above; delivery errors as sentences, an MX deferral naming
// every host tried.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';

async function submit(env: Env, from: string, to: string[], subject: string, body = 'Body line.\r\n'): Promise<string> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  const r = await client.send(from, to, message(subject, body));
  await client.quit();
  assert.equal(r.data?.code, 250, JSON.stringify(r));
  return r.data.lines[0]!.match(/queued as (\w+)/)![1]!;
}

function bounces(env: Env, user: string): string[] {
  try {
    const dir = join(env.dataDir, 'mail', user, 'new');
    return readdirSync(dir)
      .map((f) => readFileSync(join(dir, f), 'latin1'))
      .filter((m) => m.includes('Undelivered Mail Returned to Sender'));
  } catch {
    return [];
  }
}

/**
 * A plain SMTP relay that answers RCPT for hang-* only when told to (with `release`), and 250
 * otherwise: an attempt stays in flight for as long as the test wants.
 */
class HangingRelay {
  readonly held: ((reply: string) => void)[] = [];
  rcpts: string[] = [];
  delivered: string[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(readonly port: number) {}

  async start(): Promise<this> {
    this.server = createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
      let buf = '';
      let data = false;
      let to: string[] = [];
      s.write('220 hanging.test ESMTP\r\n');
      s.on('data', (d) => {
        buf += d.toString('latin1');
        for (let nl = buf.indexOf('\r\n'); nl >= 0; nl = buf.indexOf('\r\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 2);
          if (data) {
            if (line === '.') {
              data = false;
              this.delivered.push(...to);
              s.write('250 2.0.0 queued\r\n');
            }
            continue;
          }
          const cmd = line.slice(0, 4).toUpperCase();
          if (cmd === 'EHLO') s.write('250-hanging.test\r\n250 8BITMIME\r\n');
          else if (cmd === 'MAIL') {
            to = [];
            s.write('250 2.1.0 ok\r\n');
          } else if (cmd === 'RCPT') {
            const addr = line.match(/<([^>]*)>/)?.[1] ?? '';
            this.rcpts.push(addr);
            to.push(addr);
            if (addr.startsWith('hang')) this.held.push((reply) => s.write(`${reply}\r\n`));
            else s.write('250 2.1.5 ok\r\n');
          } else if (cmd === 'DATA') {
            data = true;
            s.write('354 go on\r\n');
          } else if (cmd === 'RSET' || cmd === 'NOOP') s.write('250 ok\r\n');
          else if (cmd === 'QUIT') s.end('221 bye\r\n');
          else s.write('502 5.5.2 not here\r\n');
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', () => r()));
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

test('a delivery in progress: shown by queue list and /status, a retry asked meanwhile honoured when it ends, the hanging relay not up', async () => {
  const env = await makeEnv();
  const relay = await new HangingRelay(await freePort()).start();
  const mp = await startMailplane(
    env,
    baseConfig(env, {
      relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.port}\n  secure: false\n`,
      delivery: `delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  connectTimeout: 1s\n  dns: { servers: [127.0.0.1:${env.ports.dns}] }\n`,
    }),
  );
  const q = (...args: string[]) => mailplane(['queue', ...args, '--config', env.configFile]);
  try {
    await submit(env, 'webmail@example.com', ['ok@remote.example'], 'goes through');
    await mp.waitFor('the first message relayed', async () => (await mp.metric('mailplane_relay_up')) === 1);
    const id = await submit(env, 'webmail@example.com', ['hang@remote.example'], 'hangs');
    await mp.waitFor('the attempt hanging at RCPT', () => relay.held.length === 1);

    const delivering = await mp.waitFor('the delivery in /status', async () => (await mp.status()).queue.deliveries.find((d: { id: string }) => d.id === id));
    assert.deepEqual({ ...delivering, since: typeof delivering.since }, { id, destination: 'relay', since: 'string', attempt: 1, host: `127.0.0.1:${relay.port}` });
    // more than delivery.connectTimeout without an answer: the relay is not up
    const status = await mp.waitFor('the relay reported down', async () => {
      const s = await mp.status();
      return s.relay.up === false ? s : undefined;
    });
    assert.match(status.relay.lastError, new RegExp(`^the relay 127\\.0\\.0\\.1:${relay.port} has not answered for \\d+ s: a delivery is waiting for its reply$`));
    assert.equal(await mp.metric('mailplane_relay_up'), 0);

    const listed = await q('list');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`^${id} +\\S+ old  from <webmail@example\\.com>  \\d+ bytes  delivering since \\d\\d:\\d\\d:\\d\\d \\(\\d+s\\), attempt 1, 127\\.0\\.0\\.1:${relay.port}  \\(0 attempts\\)$`, 'm'),
    );
    const json = JSON.parse((await q('list', '--format', 'json')).stdout) as { deliveries: { id: string; host: string }[] };
    assert.deepEqual(
      json.deliveries.map((d) => [d.id, d.host]),
      [[id, `127.0.0.1:${relay.port}`]],
    );

    const retry = await q('retry', id);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(retry.stdout, `${id} is being delivered now: it will be attempted again as soon as that attempt ends\n`);
    // the attempt ends with a deferral: attempted again at once, not in an hour
    relay.held.shift()!('451 4.3.0 try again later');
    await mp.waitFor('the second attempt', () => relay.held.length === 1, 10_000);
    relay.held.shift()!('250 2.1.5 ok');
    await mp.waitQueueEmpty();
    assert.deepEqual(relay.delivered, ['ok@remote.example', 'hang@remote.example']);
    assert.equal((await mp.status()).relay.up, true);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('a failed recipient is bounced after its attempt, with the message; other recipients go on', async () => {
  const env = await makeEnv();
  writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem);
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls' }).start();
  const mp = await startMailplane(
    env,
    baseConfig(env, {
      maxMessageSize: '3MB',
      relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.o.port}\n  caFile: ca.pem\n`,
      delivery: `delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  dns: { servers: [127.0.0.1:${env.ports.dns}] }\n`,
    }),
  );
  try {
    // fail-1 is refused, defer-1 waits an hour: the sender hears about fail-1 now
    const id = await submit(env, 'alice@example.com', ['fail-1@remote.example', 'defer-1@remote.example'], 'small one', 'Body line, returned whole.\r\n');
    await mp.waitFor('the bounce', () => bounces(env, 'alice').length === 1);
    const dsn = bounces(env, 'alice')[0]!;
    await mp.waitFor('defer-1 still queued, deferred', async () => (await mp.status()).queue.deferred === 1);
    assert.match(dsn, /Your message could not be delivered to one or more recipients\. It's attached below\./);
    assert.match(dsn, /Delivery to the other recipient of this message is still being tried; you will be told if it fails too\./);
    assert.match(dsn, /Final-Recipient: rfc822; fail-1@remote\.example/);
    assert.doesNotMatch(dsn, /defer-1@remote\.example>:/, 'only the failed recipient is reported');
    assert.match(
      dsn,
      /Content-Type: message\/rfc822\r\nContent-Description: Undelivered Message\r\n\r\nReceived: from client\.test[^]*Subject: small one\r\n[^]*\r\n\r\nBody line, returned whole\.\r\n\r\n--=_mailplane_\w+--\r\n$/,
    );
    assert.match(mp.logs, new RegExp(`"msg":"bounce sent","id":"${id}".*"original":"message"`));

    // above ORIGINAL_LIMIT (1 MiB): the headers only, and the report says so
    const big = `${'x'.repeat(998)}\r\n`.repeat(1500); // 1.5 MB
    await submit(env, 'alice@example.com', ['fail-2@remote.example'], 'big one', big);
    await mp.waitFor('the second bounce', () => bounces(env, 'alice').length === 2);
    const bigDsn = bounces(env, 'alice').find((m) => m.includes('fail-2@remote.example'))!;
    assert.match(bigDsn, /It was 1\.4 MiB, more than the 1 MiB a report returns whole, so only its headers are attached below\./);
    assert.match(bigDsn, /Content-Type: text\/rfc822-headers\r\nContent-Description: Undelivered Message Headers\r\n\r\nReceived: from client\.test[^]*Subject: big one\r\n/);
    assert.ok(!bigDsn.includes('x'.repeat(998)), 'no body');
    assert.doesNotMatch(bigDsn, /still being tried/);
    assert.ok(bigDsn.length < 10_000, `${bigDsn.length} bytes`);

    // defer-1 is delivered later: no second report about the first message
    relay.deferring = false;
    assert.equal((await mailplane(['queue', 'retry', '--config', env.configFile])).code, 0);
    await mp.waitQueueEmpty();
    assert.equal(relay.for('defer-1@remote.example').length, 1);
    assert.equal(bounces(env, 'alice').length, 2);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('delivery errors read as sentences: a relay without STARTTLS, and an MX deferral naming every host tried', async () => {
  const env = await makeEnv();
  const mxPort = await freePort();
  // mx1 accepts connections and never greets; nothing listens on mx0's address
  const silent = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => silent.listen(mxPort, '127.0.0.1', () => r()));
  const dns = await new TestDns({
    mx: {
      'two.test': [
        { priority: 5, exchange: 'mx0.two.test' },
        { priority: 10, exchange: 'mx1.two.test' },
      ],
    },
    a: { 'mx0.two.test': ['127.0.0.2'], 'mx1.two.test': ['127.0.0.1'] },
  }).start();
  const mp = await startMailplane(
    env,
    baseConfig(env, { delivery: `delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  mxPort: ${mxPort}\n  connectTimeout: 1s\n  dns: { servers: [127.0.0.1:${dns.port}], timeout: 2s }\n` }),
  );
  let relayMp: MailplaneProcess | null = null;
  const plain = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  try {
    await submit(env, 'alice@example.com', ['someone@two.test'], 'two hosts');
    await mp.waitFor('the deferral', async () => (await mp.status()).queue.deferred === 1, 15_000);
    const listed = await mailplane(['queue', 'list', '--config', env.configFile]);
    const line = listed.stdout.split('\n').find((l) => l.includes('someone@two.test'))!;
    assert.equal(
      line.replace(/^ +someone@two\.test +pending +/, ''),
      `none of the 2 mail exchangers of two.test could be reached: (1) mx0.two.test[127.0.0.2]:${mxPort} refused the connection (nothing listens on that port); (2) mx1.two.test[127.0.0.1]:${mxPort} did not answer within 1 s (no connection, or no greeting)`,
    );
    assert.match(mp.logs, /"msg":"recipient deferred".*none of the 2 mail exchangers of two\.test could be reached/);

    // secure: true, and the relay offers no STARTTLS
    const other = await makeEnv();
    writeFileSync(join(other.dir, 'ca.pem'), testCa().certPem);
    relayMp = await startMailplane(
      other,
      baseConfig(other, { relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${plain.o.port}\n  caFile: ca.pem\n`, delivery: 'delivery:\n  minRetryDelay: 1h\n' }),
    );
    await submit(other, 'alice@example.com', ['friend@remote.example'], 'no tls');
    const expected = `the relay 127.0.0.1:${plain.o.port} does not offer STARTTLS, and relay.secure requires it (it answered STARTTLS with 500 Error: command not recognized)`;
    await relayMp.waitFor('the deferral', async () => (await relayMp!.status()).queue.deferred === 1);
    assert.equal((await relayMp.status()).relay.lastError, expected);
    const relayList = await mailplane(['queue', 'list', '--config', other.configFile]);
    assert.match(relayList.stdout, new RegExp(`^ +friend@remote\\.example +pending +${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  } finally {
    await mp.stop();
    await relayMp?.stop();
    await plain.stop();
    dns.stop();
    silent.close();
  }
});
