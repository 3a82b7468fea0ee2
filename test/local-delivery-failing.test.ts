// A mailbox that cannot be written (issue 18): its mail waits in the journal and is retried with
// backoff, logged once when it starts failing and once when it recovers, counted by
// mailplane_local_deliveries_pending and _oldest_pending_age_seconds and listed in /status — and
// it holds up nothing else: the other mailboxes and the outbound queue go on, and a restart
// meanwhile neither fails nor forgets it. The server runs as an unprivileged user (as a
// service does), so that a folder without permissions stops it.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';
import { IS_ROOT, prepareFor, spawnAs } from './helpers/unprivileged.js';

async function submit(env: Env, to: string[], subject: string): Promise<void> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  const r = await client.send('someone@example.net', to, message(subject));
  await client.quit();
  assert.equal(r.data?.code, 250, JSON.stringify(r));
}

const subjects = (env: Env, user: string) =>
  readdirSync(join(env.dataDir, 'mail', user, 'new'))
    .map((f) => readFileSync(join(env.dataDir, 'mail', user, 'new', f), 'utf8').match(/^Subject: (.*)$/m)![1]!)
    .sort();
const lines = (mp: MailplaneProcess, re: RegExp) => mp.logs.split('\n').filter((l) => re.test(l));

test(
  'a Maildir without permissions: backoff, one line when failing and one when recovered, metrics; nothing else held up',
  { skip: !IS_ROOT && 'needs root to run the server as nobody' },
  async () => {
    const env = await makeEnv();
    writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem, { mode: 0o644 });
    const relay = await new TestRelay({ port: await freePort(), mode: 'starttls' }).start();
    prepareFor(env, baseConfig(env, { relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.o.port}\n  caFile: ca.pem\n` }));
    let mp = spawnAs(env);
    const newDir = join(env.dataDir, 'mail', 'bob', 'new');
    try {
      await mp.waitReady();
      await submit(env, ['bob@example.com'], 'before');
      await mp.waitFor('the first copy', () => existsSync(newDir) && readdirSync(newDir).length === 1);
      chmodSync(newDir, 0o000);

      await submit(env, ['bob@example.com', 'alice@example.com'], 'second');
      await mp.waitFor('alice has hers at once', () => existsSync(join(env.dataDir, 'mail', 'alice', 'new')) && subjects(env, 'alice').includes('second'));
      await submit(env, ['bob@example.com', 'friend@remote.example'], 'third');
      await mp.waitFor('the remote copy relayed meanwhile', () => relay.for('friend@remote.example').length === 1);
      assert.equal(await mp.metric('mailplane_local_deliveries_pending'), 2);
      const st = (await mp.status()).storage.unwritten;
      assert.equal(st.count, 2);
      assert.deepEqual(
        st.destinations.map((d: { destination: string; count: number }) => [d.destination, d.count]),
        [['bob', 2]],
      );
      assert.match(st.destinations[0].error, /^EACCES: permission denied/);

      // a few retries later: still one line, and none per retry
      await mp.waitFor('backing off', async () => ((await mp.metric('mailplane_local_deliveries_oldest_pending_age_seconds')) ?? 0) >= 4, 15_000);
      const failing = lines(mp, /local delivery to mailbox bob is failing/);
      assert.equal(failing.length, 1, mp.logs);
      assert.match(failing[0]!, /"level":"error".*"destination":"bob","error":"EACCES: permission denied.*"code":"EACCES","waiting":1/);
      assert.equal(lines(mp, /writing mail files failed/).length, 0, mp.logs);

      // a crash meanwhile: the server starts, and still knows what waits
      await mp.kill9();
      mp = spawnAs(env);
      await mp.waitReady();
      assert.equal(await mp.metric('mailplane_local_deliveries_pending'), 2);
      assert.ok((await mp.metric('mailplane_local_deliveries_oldest_pending_age_seconds'))! >= 4);
      assert.equal(lines(mp, /local delivery to mailbox bob is failing/).length, 1);

      chmodSync(newDir, 0o700);
      await mp.waitFor('written once the folder is fixed', () => subjects(env, 'bob').length === 3, 20_000);
      assert.deepEqual(subjects(env, 'bob'), ['before', 'second', 'third']);
      await mp.waitFor('the recovery logged', () => lines(mp, /local delivery to mailbox bob has recovered/).length === 1);
      assert.equal(await mp.metric('mailplane_local_deliveries_pending'), 0);
      assert.equal(await mp.metric('mailplane_local_deliveries_oldest_pending_age_seconds'), 0);
      await mp.waitFor('nothing kept for it', () => !existsSync(join(env.dataDir, 'journal', 'backlog.wal')) && readdirSync(join(env.dataDir, 'spool')).length === 0);
      assert.equal(relay.for('friend@remote.example').length, 1, 'relayed once');
    } finally {
      chmodSync(newDir, 0o700);
      await mp.stop();
      await relay.stop();
    }
  },
);
