// Stopping and limits: SIGTERM lets a transaction in progress finish while new connections
// are refused; a second signal exits at once; connection limits answer 421 without harming others.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accepts } from './helpers/ports.js';
import { baseConfig, makeEnv, startMailplane, waitFor } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

test('SIGTERM: no new connections, the open transaction completes with 250, then exit 0', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  assert.equal((await c.cmd('MAIL FROM:<x@example.net>')).code, 250);
  mp.child.kill('SIGTERM');
  await waitFor('listener to stop accepting', async () => !(await accepts(env.ports.mx)));
  assert.equal((await c.cmd('RCPT TO:<bob@example.com>')).code, 250);
  const [, done] = await c.data(message('during shutdown'));
  assert.equal(done.code, 250, done.text);
  assert.ok(mp.running, 'still running while the session is open');
  await c.quit();
  assert.equal(await mp.exited, 0);
  assert.match(mp.logs, /"msg":"stopped"/);
});

test('a second signal exits at once, even with sessions open', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  mp.child.kill('SIGTERM');
  await waitFor('first signal seen', () => mp.logs.includes('stopping'));
  mp.child.kill('SIGINT');
  assert.equal(await mp.exited, 1);
  c.destroy();
});

test('connections per listener and per client address are bounded: 421, others unharmed', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env, { extraSmtp: '  limits: { maxConnections: 4, maxConnectionsPerClient: 2 }\n' }));
  try {
    const a1 = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.50' });
    const a2 = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.50' });
    assert.equal(a1.greeting.code, 220);
    assert.equal(a2.greeting.code, 220);
    const a3 = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.50' });
    assert.equal(a3.greeting.lines[0], '421 4.7.0 Too many connections, try again later');
    const b1 = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.51' });
    const b2 = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.52' });
    assert.equal(b1.greeting.code, 220);
    assert.equal(b2.greeting.code, 220);
    const full = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.53' });
    assert.equal(full.greeting.lines[0], '421 4.7.0 Too many connections, try again later');
    // the sessions already open keep working
    await a1.client.ehlo();
    const r = await a1.client.send('x@example.net', ['bob@example.com'], message('still served'));
    assert.equal(r.data!.code, 250);
    // another listener has its own limit
    const sub = await SmtpClient.connect({ port: env.ports.submission, localAddress: '127.0.0.53' });
    assert.equal(sub.greeting.code, 220);
    for (const c of [a1, a2, b1, b2, sub]) await c.client.quit();
    await waitFor('sessions to close', async () => (await mp.metric('mailplane_smtp_sessions_active', 'listener="mx"')) === 0);
    const again = await SmtpClient.connect({ port: env.ports.mx, localAddress: '127.0.0.50' });
    assert.equal(again.greeting.code, 220, 'slots are released when sessions end');
    await again.client.quit();
    assert.equal(await mp.metric('mailplane_smtp_rejections_total', 'listener="mx",reason="connection_limit"'), 2);
  } finally {
    await mp.stop();
  }
});
