// What `validate` says about cluster settings: the rule that several replicas need the LMTP
// store, peer listeners the internet could relay through, a Redis URL with a password in it, a
// peer secret too short, a hand-off address that is not host:port — and a good cluster config.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile } from '../src/config/load.js';
import { mailplane } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const HASH = '$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK';

interface Parts {
  listeners?: string;
  auth?: string;
  mailboxes?: string;
  cluster?: string;
  secret?: string;
}

function write(p: Parts): string {
  const dir = tempDir('cluster-config');
  writeFileSync(join(dir, 'peer-secret'), `${p.secret ?? 'a-long-enough-peer-secret'}\n`);
  writeFileSync(join(dir, 'redis-password'), 'redis-pw\n');
  const file = join(dir, 'mailserver.yaml');
  writeFileSync(
    file,
    `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  listeners:
    - { name: mx, port: 2525, role: mx, tls: none }
${p.listeners ?? '    - { name: peer, address: 10.0.0.7, port: 2526, role: peer, tls: none }\n'}  auth:
    required: true
${p.auth ?? ''}accounts:
  local:
    users:
      - { name: alice, passwordHash: "${HASH}", aliases: [postmaster] }
storage:
  dataDir: ${join(dir, 'data')}
${p.mailboxes ?? 'mailboxes: { store: lmtp, lmtp: { address: "dovecot:24" } }\n'}${
      p.cluster ??
      `cluster:
  redis: { url: "redis://redis.mail.svc:6379/0", passwordFile: redis-password }
  peers: { handoff: "mailplane-smtp-peers:2526", secretFile: peer-secret }
`
    }`,
  );
  return file;
}

async function load(p: Parts) {
  const r = await loadConfigFile(write(p));
  return { state: r.state, errors: r.errors.map((i) => ({ code: i.code, path: i.path, message: i.message })), warnings: r.warnings.map((i) => i.code) };
}

test('a cluster config with the LMTP store, Redis and a peer listener on a private address is valid', async () => {
  const r = await load({});
  assert.deepEqual(r.errors, []);
  const c = r.state!.cluster;
  assert.equal(c.redis!.url, 'redis://redis.mail.svc:6379/0');
  assert.equal(c.redis!.password!.reveal(), 'redis-pw');
  assert.equal(c.redis!.timeoutMs, 150);
  assert.equal(c.redis!.keyPrefix, 'mailplane:');
  assert.deepEqual(c.peers!.handoff, { host: 'mailplane-smtp-peers', port: 2526 });
  assert.equal(c.peers!.secret!.reveal(), 'a-long-enough-peer-secret');
  assert.equal(r.state!.smtp.limits.rejectedRecipients.windowMs, 600_000);
  assert.ok(!JSON.stringify(r.state).includes('redis-pw'), 'secrets never print');
});

test('cluster settings with mailboxes.store: maildir are refused: the replicas would split the mailboxes', async () => {
  for (const cluster of ['cluster:\n  redis: { url: "redis://redis:6379" }\n', 'cluster:\n  peers: { handoff: "peers:2526" }\n']) {
    const r = await load({ mailboxes: '', cluster });
    assert.equal(r.state, null);
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.path]),
      [['MP_CLUSTER', 'cluster']],
    );
    assert.match(r.errors[0]!.message, /several replicas.*mailboxes\.store: lmtp/);
  }
  // no cluster: maildir as ever
  assert.deepEqual((await load({ mailboxes: '', cluster: '', listeners: '' })).errors, []);
});

test('a peer listener on all interfaces or a public address needs exempt clients or the peer secret', async () => {
  const open = (address: string, tls = 'starttls') => `    - { name: peer, ${address}port: 2526, role: peer, tls: ${tls} }\n`;
  const noSecret = 'cluster:\n  peers: { handoff: "peers:2526" }\n';
  for (const address of ['', 'address: 0.0.0.0, ', 'address: "::", ', 'address: 192.0.1.10, ']) {
    const r = await load({ listeners: open(address, 'none'), cluster: noSecret });
    assert.deepEqual(
      r.errors.map((e) => e.code),
      ['MP_PEER_LISTENER'],
      address,
    );
    assert.match(r.errors[0]!.message, /nothing limits who may relay through it/);
  }
  // exempt clients, or a secret with TLS on the listener, make it acceptable; a private address is acceptable as it is
  assert.deepEqual((await load({ listeners: open('', 'none'), cluster: noSecret, auth: '    exemptClients: [10.0.0.0/24]\n' })).errors, []);
  assert.deepEqual((await load({ listeners: open('address: 10.1.2.3, ', 'none'), cluster: noSecret })).errors, []);
  // a secret does not help a listener without TLS: AUTH is offered only inside TLS
  const r = await load({ listeners: open('', 'none') });
  assert.deepEqual(
    r.errors.map((e) => e.code),
    ['MP_PEER_LISTENER'],
  );
  assert.match(r.errors[0]!.message, /give the listener tls: starttls/);
  // implicit TLS is not what the hand-off speaks
  const implicit = await load({ listeners: open('address: 10.1.2.3, ', 'implicit') });
  assert.ok(implicit.errors.some((e) => e.code === 'MP_PEER_LISTENER' && /tls: implicit/.test(e.message)));
});

test('a Redis URL with a password, a short peer secret, a hand-off that is no host:port are refused', async () => {
  const withPassword = await load({ cluster: 'cluster:\n  redis: { url: "redis://:hunter2@redis:6379/0" }\n' });
  assert.deepEqual(
    withPassword.errors.map((e) => e.code),
    ['MP_PLAINTEXT_PASSWORD'],
  );
  assert.ok(!withPassword.errors[0]!.message.includes('hunter2'));
  const badUrl = await load({ cluster: 'cluster:\n  redis: { url: "http://redis:6379" }\n' });
  assert.deepEqual(
    badUrl.errors.map((e) => e.code),
    ['MP_INVALID_VALUE'],
  );
  const short = await load({ secret: 'short' });
  assert.deepEqual(
    short.errors.map((e) => [e.code, e.path]),
    [['MP_CLUSTER', 'cluster.peers.secretFile']],
  );
  const noPort = await load({ cluster: 'cluster:\n  peers: { handoff: "peers" }\n' });
  assert.deepEqual(
    noPort.errors.map((e) => [e.code, e.path]),
    [['MP_CLUSTER', 'cluster.peers.handoff']],
  );
  assert.match(noPort.errors[0]!.message, /has no port: give host:port/);
  const noPeerListener = await load({ listeners: '' });
  assert.deepEqual(noPeerListener.errors, []);
  assert.ok(noPeerListener.warnings.includes('MP_CLUSTER'), 'a cluster without a peer listener cannot receive a hand-off');
});

test('mailplane validate prints the refusal with its code and exits 1', async () => {
  const file = write({ mailboxes: '' });
  const r = await mailplane(['validate', file, '--format', 'json']);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout) as { valid: boolean; files: { errors: { code: string }[] }[] };
  assert.equal(out.valid, false);
  assert.deepEqual(
    out.files[0]!.errors.map((e) => e.code),
    ['MP_CLUSTER'],
  );
  const text = await mailplane(['validate', write({ listeners: '    - { name: peer, port: 2526, role: peer, tls: none }\n', cluster: 'cluster:\n  peers: { handoff: "peers:2526" }\n' })]);
  assert.equal(text.code, 1);
  assert.match(text.stderr + text.stdout, /smtp\.listeners\[1\]: peer listener 'peer' is bound to all interfaces and nothing limits who may relay through it/);
});
