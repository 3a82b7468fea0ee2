// The relay's and the directory's health follow them, not the last message or lookup: once down,
// each is checked again and again (every minute, every 30 s; shortened here) until it answers,
// every failed check counts in its failures counter, and an answer makes it up again without any
// mail. So the alerts can ask for failures that keep coming (one failed lookup on a quiet night
// fires nothing) and a gauge never stays at 0 for hours after a blip.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LdapAccounts } from '../src/accounts/ldap.js';
import { Metrics } from '../src/ops/metrics.js';
import { RelayTransport } from '../src/outbound/transports.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('a relay that is down is checked until it answers: failures counted meanwhile, up again without a message', async () => {
  RelayTransport.recheckMs = 100;
  const port = await freePort();
  const t = new RelayTransport(
    { enabled: true, host: '127.0.0.1', port, secure: false, implicitTls: false, caPem: null, auth: null },
    { concurrency: 2, dnsServers: [], dnsTimeoutMs: 1000, mxPort: 25, connectTimeoutMs: 1000, mtaSts: false },
    'mail.example.com',
  );
  const metrics = new Metrics();
  metrics.relaySource = () => t.health().up;
  metrics.relayFailuresSource = () => t.health().failures;
  let relay: TestRelay | null = null;
  try {
    await t.verify(); // nothing listens
    assert.equal(t.health().up, false);
    assert.match(t.health().lastError ?? '', /refused the connection/);
    await until('three failed checks', () => t.health().failures >= 3);
    const text = await metrics.registry.metrics();
    assert.match(text, /^mailplane_relay_up 0$/m);
    assert.match(text, /^mailplane_relay_failures_total [3-9]\d*$/m);
    relay = await new TestRelay({ port, mode: 'plain' }).start();
    await until('the relay up again', () => t.health().up === true);
    assert.equal(t.health().lastError, null);
    const failures = t.health().failures;
    await new Promise((r) => setTimeout(r, 400)); // several check periods: no check runs while it is up
    assert.equal(t.health().failures, failures);
    assert.match(await metrics.registry.metrics(), /^mailplane_relay_up 1$/m);
    assert.equal(relay.messages.length, 0, 'checks send no mail');
  } finally {
    await t.close();
    await relay?.stop();
    RelayTransport.recheckMs = 60_000;
  }
});

test('a directory that fails is checked again and again until it answers, each failed check counted; close() stops the checks', async () => {
  LdapAccounts.recheckMs = 100;
  const port = await freePort();
  const ldap = new LdapAccounts(
    {
      url: `ldap://127.0.0.1:${port}`,
      startTls: false,
      caPem: null,
      bindDn: null,
      bindPassword: null,
      userBase: 'ou=people,dc=example,dc=com',
      userFilter: '(uid={user})',
      aliasAttributes: ['mail'],
      timeoutMs: 500,
      cacheTtlMs: 0,
      poolSize: 1,
    },
    ['example.com'],
  );
  const metrics = new Metrics();
  metrics.accountsSource = () => ({ backend: 'ldap', ...ldap.health() });
  try {
    assert.equal(ldap.health().up, true);
    const r = await ldap.findRecipient('alice');
    assert.equal((r as { unavailable?: boolean }).unavailable, true);
    assert.equal(ldap.health().up, false);
    await until('three failures with one lookup', () => ldap.health().failures >= 3);
    assert.match(await metrics.registry.metrics(), /^mailplane_accounts_backend_failures_total\{backend="ldap"\} [3-9]\d*$/m);
  } finally {
    await ldap.close();
    LdapAccounts.recheckMs = 30_000;
  }
  const closed = ldap.health().failures;
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(ldap.health().failures, closed, 'no checks after close()');
});
