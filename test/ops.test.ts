// The ops endpoint: health, readiness, status without secrets, Prometheus metrics that pass
// promtool and carry no addresses or user names in labels.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { baseConfig, CLIENTS, makeEnv, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { aliceSubmits } from './helpers/traffic.js';

let env: Env;
let mp: MailplaneProcess;

before(async () => {
  env = await makeEnv();
  writeFileSync(join(env.dir, 'relay-pw'), 'relay-secret-value\n');
  mp = await startMailplane(env, baseConfig(env, { relay: `relay:\n  enabled: true\n  host: smtp.provider.example\n  port: 587\n  auth: { username: mailer@example.com, passwordFile: relay-pw }\n` }));
  // some traffic of every kind
  const c = await aliceSubmits(env, 'ops');
  await c.send('bob@example.com', ['bob@example.com'], message('mismatch'));
  await c.quit();
  const m = (await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.other })).client;
  await m.ehlo();
  await m.send('x@example.net', ['nobody@example.com', 'victim@elsewhere.example'], message('refused'));
  await m.quit();
});
after(async () => {
  await mp.stop();
});

test('/healthz and /readyz', async () => {
  assert.equal((await mp.http('/healthz')).status, 200);
  assert.equal((await mp.http('/readyz')).status, 200);
  assert.equal((await mp.http('/nope')).status, 404);
  assert.equal((await mp.http('/status', { method: 'DELETE' })).status, 405);
});

test('/status describes the running config without secrets', async () => {
  const res = await mp.http('/status');
  const text = await res.text();
  const s = JSON.parse(text);
  assert.equal(s.ready, true);
  assert.equal(s.configPath, env.configFile);
  assert.equal(s.applied.generation, 1);
  assert.match(s.applied.hash, /^[0-9a-f]{64}$/);
  assert.deepEqual(
    s.listeners.map((l: { name: string; state: string }) => [l.name, l.state]),
    [
      ['mx', 'serving'],
      ['submission', 'serving'],
      ['submissions', 'serving'],
    ],
  );
  assert.equal(s.listeners[0].port, env.ports.mx);
  assert.ok(s.listeners[0].certificateExpiry);
  assert.equal(s.accounts.backend, 'local');
  assert.equal(s.relay.host, 'smtp.provider.example');
  assert.equal(s.relay.username, 'mailer@example.com');
  for (const secret of ['relay-secret-value', USERS.alice.hash, USERS.bob.hash, 'PRIVATE KEY', 'alice-pw']) assert.ok(!text.includes(secret), secret);
});

test('/metrics has the documented series and passes promtool', async () => {
  const text = await mp.metrics();
  for (const name of [
    'mailplane_smtp_connections_total{listener="submission"}',
    'mailplane_smtp_sessions_active{listener="mx"}',
    'mailplane_smtp_messages_total{listener="submission",result="accepted"}',
    'mailplane_smtp_rejections_total{listener="mx",reason="relay_denied"}',
    'mailplane_smtp_rejections_total{listener="mx",reason="unknown_recipient"}',
    'mailplane_smtp_rejections_total{listener="submission",reason="sender_mismatch"}',
    'mailplane_smtp_rejections_total{listener="submission",reason="auth_failed"}',
    'mailplane_smtp_auth_total{listener="submission",result="success"}',
    'mailplane_smtp_auth_total{listener="submission",result="failure"}',
    'mailplane_smtp_message_size_bytes_bucket{le="1024",listener="submission"}',
    'mailplane_delivery_total{transport="local",result="delivered"}',
    'mailplane_queue_messages{state="active"}',
    'mailplane_queue_messages{state="deferred"}',
    'mailplane_queue_oldest_message_age_seconds',
    'mailplane_config_last_reload_successful',
    'mailplane_listener_up{listener="mx"}',
  ]) {
    assert.ok(text.includes(name), `missing ${name}`);
  }
  assert.equal(await mp.metric('mailplane_smtp_messages_total', 'listener="submission",result="accepted"'), 1);
  const queued = (await mp.metric('mailplane_queue_messages', 'state="active"'))! + (await mp.metric('mailplane_queue_messages', 'state="deferred"'))!;
  assert.equal(queued, 1, 'the message to elsewhere.example waits in the queue (no DNS server in this test)');
  assert.ok((await mp.metric('mailplane_queue_oldest_message_age_seconds'))! >= 0);
  assert.equal(await mp.metric('mailplane_smtp_sessions_active', 'listener="mx"'), 0);
  for (const line of text.split('\n').filter((l) => l.startsWith('mailplane_'))) {
    assert.ok(!/@|alice|bob|127\.0\.0/.test(line), `label leaks an address or user: ${line}`);
  }
  const promtool = spawnSync('promtool', ['--version']);
  if (promtool.error) {
    if (process.env.CI) assert.fail('promtool is required in CI (Debian package prometheus)');
    console.warn('\n*** SKIPPED LOUDLY: promtool not installed (apt-get install prometheus); metrics format not checked ***\n');
    return;
  }
  const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(out.trim(), '');
});
