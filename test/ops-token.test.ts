// The ops endpoint is not an open door: beyond loopback a token is required by validation;
// with a token, /status and POST /-/reload answer 401 without it (and log the refusal), while
// /metrics and the probes stay open; a new token applies in place; `mailplane plan --server`
// sends it. Nothing derived from a secret is published: secrets are only "set".
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { baseConfig, makeEnv, startMailplane } from './helpers/server.js';

const TOKEN = 'ops-token-0123456789abcdef';

test('an ops endpoint beyond loopback without a token, or with a short one, is a config error', async () => {
  const env = await makeEnv();
  const open = baseConfig(env).replace(`listen: 127.0.0.1:${env.ports.ops}`, 'listen: 0.0.0.0:9465');
  writeFileSync(env.configFile, open);
  const r = await mailplane(['validate', env.configFile]);
  assert.equal(r.code, 1);
  assert.match(r.stdout + r.stderr, /observability\.listen: 0\.0\.0\.0 is not a loopback address: set observability\.tokenFile/);
  writeFileSync(join(env.dir, 'token'), 'short\n');
  writeFileSync(env.configFile, open.replace('listen: 0.0.0.0:9465', 'listen: 0.0.0.0:9465\n  tokenFile: token'));
  const short = await mailplane(['validate', '--format', 'json', env.configFile]);
  assert.equal(short.code, 1);
  assert.equal(JSON.parse(short.stdout).files[0].errors[0].code, 'MP_OPS_TOKEN');
  writeFileSync(join(env.dir, 'token'), `${TOKEN}\n`);
  assert.equal((await mailplane(['validate', env.configFile])).code, 0);
});

test('with a token: /status and /-/reload need it, the probes and /metrics do not; a new token applies in place', async () => {
  const env = await makeEnv();
  writeFileSync(join(env.dir, 'token'), `${TOKEN}\n`);
  writeFileSync(join(env.dir, 'relay-pw'), 'relay-secret-value\n');
  const config = baseConfig(env, { relay: `relay:\n  enabled: true\n  host: smtp.provider.example\n  auth: { username: u, passwordFile: relay-pw }\n` }).replace(
    `listen: 127.0.0.1:${env.ports.ops}`,
    `listen: 127.0.0.1:${env.ports.ops}\n  tokenFile: token`,
  );
  const mp = await startMailplane(env, config);
  const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
  try {
    for (const open of ['/healthz', '/readyz', '/metrics']) assert.equal((await mp.http(open)).status, 200, open);
    const refused = await mp.http('/status');
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('www-authenticate'), 'Bearer realm="mailplane"');
    assert.equal((await mp.http('/status', auth('wrong-token-wrong-token'))).status, 401);
    assert.equal((await mp.http('/-/reload', { method: 'POST' })).status, 401);
    await mp.waitFor('the refusal logged', () => /ops request refused: missing or wrong bearer token.*"path":"\/-\/reload"/.test(mp.logs));
    const res = await mp.http('/status', auth(TOKEN));
    assert.equal(res.status, 200);
    const text = await res.text();
    const s = JSON.parse(text);
    assert.deepEqual(s.specs.transport.relay.auth.password, { secret: 'set' });
    assert.deepEqual(s.specs.opsAccess.token, { secret: 'set' });
    for (const secret of [TOKEN, 'relay-secret-value', 'PRIVATE KEY']) assert.ok(!text.includes(secret) && !mp.logs.includes(secret), secret);

    // the plan command sends the token
    const plan = await mailplane(['plan', env.configFile, '--server', `http://127.0.0.1:${env.ports.ops}`, '--token-file', join(env.dir, 'token')]);
    assert.equal(plan.code, 0, plan.stderr);
    const without = await mailplane(['plan', env.configFile, '--server', `http://127.0.0.1:${env.ports.ops}`]);
    assert.equal(without.code, 1);
    assert.match(without.stderr, /HTTP 401: the server wants its token/);

    // a new token: no socket moves, the old one stops working at once
    const renewed = 'renewed-token-abcdef0123456789';
    writeFileSync(join(env.dir, 'token'), `${renewed}\n`);
    await mp.waitFor('the new token applied', async () => (await mp.http('/status', auth(renewed))).status === 200);
    assert.equal((await mp.http('/status', auth(TOKEN))).status, 401);
    const after = (await (await mp.http('/status', auth(renewed))).json()) as { applied: { generation: number } };
    assert.equal(after.applied.generation, 2);
    assert.match(mp.logs, /update access to \/status and \/-\/reload: applies to the next request \(observability\.token: changed\)/);
    const reload = await mp.http('/-/reload', { method: 'POST', ...auth(renewed) });
    assert.equal(reload.status, 200);
  } finally {
    await mp.stop();
  }
});
