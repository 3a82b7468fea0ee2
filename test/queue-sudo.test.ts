// Operator commands that are safe under sudo (issue 18): the server runs as a service user
// (nobody) and owns its data dir; the operator runs `mailplane queue` and `unlock` as root, or as
// some other user. Requests are given to the data dir's owner, a request folder an earlier root
// run left behind is repaired, a request the server cannot read is answered with why, and no
// command prints a stack trace for a failure it expects.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from './helpers/ports.js';
import { baseConfig, CLIENTS, makeEnv, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { cliAs, IS_ROOT, NOBODY, prepareFor, spawnAs } from './helpers/unprivileged.js';

const STRANGER = { uid: 12345, gid: 12345 }; // neither root nor the server's user

async function submit(env: Env, to: string): Promise<string> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  const r = await client.send('webmail@example.com', [to], message(to));
  await client.quit();
  assert.equal(r.data?.code, 250);
  return r.data.lines[0]!.match(/queued as (\w+)/)![1]!;
}

const count = (mp: MailplaneProcess, re: RegExp) => mp.logs.split('\n').filter((l) => re.test(l)).length;

test('queue commands run as root for a server that runs as a service user', { skip: !IS_ROOT && 'needs root to run the server as nobody' }, async () => {
  const env = await makeEnv();
  const relayPort = await freePort(); // nothing listens: every attempt defers
  prepareFor(
    env,
    baseConfig(env, {
      relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relayPort}\n  secure: false\n`,
      delivery: `delivery:\n  minRetryDelay: 1h\n  maxRetryDelay: 2h\n  dns: { servers: [127.0.0.1:${env.ports.dns}] }\n`,
    }),
  );
  const queueDir = join(env.dataDir, 'queue');
  const requests = join(queueDir, 'requests');
  let mp = spawnAs(env);
  const q = (args: string[], user?: { uid: number; gid: number }) => cliAs(['queue', ...args, '--config', env.configFile], user);
  try {
    await mp.waitReady();
    const first = await submit(env, 'one@remote.example');
    const second = await submit(env, 'two@remote.example');
    await mp.waitFor('first attempts', async () => (await mp.status()).queue.deferred === 2);

    // what an earlier version run with sudo left: a root-owned request folder, and a request in it
    mkdirSync(requests, { mode: 0o700 });
    writeFileSync(join(requests, '1-left-by-root.json'), JSON.stringify({ op: 'retry', id: null }), { mode: 0o600 });
    await mp.waitFor('the unreadable folder logged', () => count(mp, /cannot read operator requests/) === 1);
    await new Promise((r) => setTimeout(r, 1000)); // polled three more times: logged once
    assert.equal(count(mp, /cannot read operator requests/), 1, mp.logs);
    assert.match(mp.logs, new RegExp(`cannot read operator requests in ${requests}.*uid 65534.*"code":"EACCES"`));

    // root, now: the folder is given back, the old request answered, this one done
    const retry = await q(['retry', first]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(retry.stdout, 'retrying 1 message now\n');
    assert.equal(statSync(requests).uid, NOBODY.uid);
    assert.equal(count(mp, /operator requests can be read again/), 1);
    await mp.waitFor('the old request answered', () => existsSync(join(requests, '1-left-by-root.json.result')));
    const answered = JSON.parse(readFileSync(join(requests, '1-left-by-root.json.result'), 'utf8')) as { ok: boolean; message: string };
    assert.equal(answered.ok, false);
    assert.match(answered.message, /^the server \(uid 65534\) may not read the request file .*1-left-by-root\.json: run the command as that user or as root$/);
    assert.ok(!existsSync(join(requests, '1-left-by-root.json')), 'removed once answered');
    assert.match(mp.logs, /"msg":"operator request refused".*may not read/);

    // a request the server cannot read, written by root into the server's own folder
    writeFileSync(join(requests, '2-unreadable.json'), JSON.stringify({ op: 'retry', id: null }), { mode: 0o600 });
    await mp.waitFor('answered', () => existsSync(join(requests, '2-unreadable.json.result')));
    assert.match(readFileSync(join(requests, '2-unreadable.json.result'), 'utf8'), /may not read the request file/);

    const listed = await q(['list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^2 messages in the queue/);
    const del = await q(['delete', second]);
    assert.equal(del.stdout, `deleted ${second}\n`, del.stderr);

    // another user: one line that says what to do, exit 1, no stack trace
    for (const args of [
      ['queue', 'list'],
      ['queue', 'retry'],
      ['unlock', '--all'],
    ]) {
      const r = await cliAs([...args, '--config', env.configFile], STRANGER);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `${args.join(' ')} printed a stack:\n${r.stderr}`);
      assert.match(r.stderr, /permission denied: cannot (read|create the folder) .*; run this as the user the server runs as \(uid 65534\), or as root\n$/, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }

    // stopped: root changes the files directly, and gives what it writes to the server's user
    await mp.stop();
    const offline = await q(['retry']);
    assert.equal(offline.stdout, '1 message will be attempted as soon as the server runs\n', offline.stderr);
    assert.equal(statSync(join(queueDir, `${first}.json`)).uid, NOBODY.uid);
    mp = spawnAs(env);
    await mp.waitReady();
    await mp.waitFor('the message read and attempted again', async () => (await mp.status()).queue.deferred === 1);
    assert.doesNotMatch(mp.logs, /delivery attempt failed|EACCES/);
  } finally {
    await mp.stop();
  }
});
