// One definition of change: for every leaf of the desired state, changing it must change the
// spec of the component(s) that read it — so the plan is not empty and the transaction rebuilds
// exactly those — unless the leaf is a documented no-op (derived from another leaf, or only
// where something came from). Checked over a local-accounts state and an LDAP one.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { DesiredState } from '../../src/config/desired-state.js';
import { loadConfigText } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';
import { changes, diff, specView } from '../../src/plan/plan.js';
import { COMPONENTS, type Component } from '../../src/plan/specs.js';
import { USERS } from '../helpers/server.js';
import { serverCert, testCa, writeCert } from '../helpers/tls.js';
import { tempDir } from '../helpers/tmp.js';

/** Leaves that change no component, and why. */
const NO_OPS: [RegExp, string][] = [
  [/^(hash|publicHash)$/, 'derived from everything else'],
  [/^configPath$/, 'where the file is; its content is the state'],
  [/^watchedFiles\./, 'what the watcher polls: it follows every applied generation'],
  [/^smtp\.tls\.(certFile|keyFile)$/, 'content-addressed: the PEM in material is compared'],
  [/^smtp\.tls\.material\.(notBefore|subject|names\.\d+)$/, 'derived from certPem'],
  [/^smtp\.auth\.(exemptClients|lanNetworks)\.\d+\.(family|hostBitsSet)$/, 'derived from the range as written (address/prefix)'],
  [/^accounts\.usersFile$/, 'content-addressed: the users it holds are compared'],
  [/^accounts\.ldap\.(caFile|bindPasswordFile)$/, 'content-addressed: caPem and bindPassword are compared'],
  [/^relay\.auth\.source$/, 'where the password came from; the password is compared'],
  [/^dkim\.keys\.\d+\.keyFile$/, 'content-addressed: the key in material is compared'],
  [/^dkim\.keys\.\d+\.material\.(bits|publicKey)$/, 'derived from the private key (its fingerprint is compared)'],
  [/^dns\./, 'what `mailplane dns` publishes in DNS: no running component reads it'],
  [/^mtaSts\./, 'our MTA-STS policy: read at every request by the ops endpoint (/.well-known/mta-sts.txt), and by `mailplane dns`'],
];

/**
 * Leaves a lone change of which is no state at all: the account type decides whether users or
 * ldap exists (switching it is a reload test of its own: accounts-ldap.test.ts).
 */
const RESHAPES = [/^accounts\.type$/];

/** The component(s) a leaf must rebuild, by path. */
function expected(path: string, ldap: boolean): Component[] {
  if (/^smtp\.(listeners|enabled)/.test(path)) return ['listeners'];
  if (path.startsWith('smtp.tls')) return ['tls'];
  // the LMTP client names itself with hostname and connects within delivery.connectTimeout
  if (path === 'hostname') return ['policy', 'transport', 'mailboxes'];
  if (path === 'delivery.connectTimeoutMs') return ['transport', 'mailboxes'];
  // Dovecot's passwd-file (local accounts): each user's name and hash, their homes under the data dir, the group
  if (!ldap && /^accounts\.users\.\d+\.(name|passwordHash|scheme)$/.test(path)) return ['accounts', 'dovecot'];
  if (!ldap && /^storage\.(dataDir|mailboxGroup\.gid)$/.test(path)) return ['storage', 'dovecot'];
  if (path === 'mailboxes.store') return ldap ? ['mailboxes'] : ['mailboxes', 'dovecot'];
  if (path === 'mailboxes.passwdFile') return ['dovecot'];
  if (path.startsWith('mailboxes')) return ['mailboxes'];
  if (path.startsWith('domains')) return ldap ? ['policy', 'accounts'] : ['policy'];
  if (/^smtp\./.test(path)) return ['policy'];
  if (path.startsWith('accounts')) return ['accounts'];
  if (path.startsWith('relay')) return ['transport'];
  if (/^delivery\.concurrency$/.test(path)) return ['transport', 'delivery'];
  if (path === 'delivery.maxReceivedHeaders') return ['policy', 'delivery'];
  // the inbound checks (policy) resolve through delivery.dns too
  if (/^delivery\.(dnsServers|dnsTimeoutMs)/.test(path)) return ['policy', 'transport'];
  if (/^delivery\.(mxPort|connectTimeoutMs|mtaSts)/.test(path)) return ['transport'];
  if (path.startsWith('inbound')) return ['policy'];
  if (path.startsWith('delivery')) return ['delivery'];
  if (path.startsWith('storage')) return ['storage'];
  if (path === 'observability.token') return ['opsAccess'];
  if (path === 'observability.logAddresses') return ['logging'];
  if (path.startsWith('observability')) return ['ops'];
  if (path.startsWith('dkim')) return ['signing'];
  // the peer secret: what peer listeners accept (policy) and what the hand-off client sends
  if (path === 'cluster.peers.secret') return ['policy', 'cluster'];
  if (path.startsWith('cluster')) return ['cluster'];
  return [];
}

/** Every leaf path of a value (Secrets are leaves; an empty list is a leaf too: adding to it). */
function leaves(v: unknown, path = ''): string[] {
  if (v instanceof Secret || v === null || typeof v !== 'object') return [path];
  if (Array.isArray(v)) return v.length ? v.flatMap((x, i) => leaves(x, `${path}.${i}`)) : [path];
  return Object.entries(v).flatMap(([k, x]) => leaves(x, path ? `${path}.${k}` : k));
}

/** A copy of v with the leaf at path changed. */
function mutate(v: unknown, parts: string[]): unknown {
  if (!parts.length) {
    if (v instanceof Secret) return new Secret(`${v.reveal()}x`, v.kind);
    if (Array.isArray(v)) return [...v, 'x.example'];
    if (typeof v === 'number') return v + 1;
    if (typeof v === 'boolean') return !v;
    if (typeof v === 'string') return `${v}x`;
    return '127.0.0.9'; // null: a value where there was none
  }
  const [head, ...rest] = parts;
  if (Array.isArray(v)) return v.map((x, i) => (String(i) === head ? mutate(x, rest) : x));
  return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, k === head ? mutate(x, rest) : x]));
}

async function configs(): Promise<{ local: DesiredState; ldap: DesiredState }> {
  const dir = tempDir('specs');
  mkdirSync(join(dir, 'secrets'));
  const { certFile, keyFile } = writeCert(dir, serverCert());
  writeFileSync(join(dir, 'ca.pem'), testCa().certPem);
  writeFileSync(join(dir, 'secrets', 'relay'), 'relay-password\n');
  writeFileSync(join(dir, 'secrets', 'bind'), 'bind-password\n');
  writeFileSync(join(dir, 'secrets', 'users'), `carol:${USERS.bob.hash}\n`);
  writeFileSync(join(dir, 'secrets', 'redis'), 'redis-password\n');
  writeFileSync(join(dir, 'secrets', 'peer'), 'peer-secret-of-the-cluster\n');
  writeFileSync(join(dir, 'secrets', 'dkim-rsa'), generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'secrets', 'dkim-ed'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const common = `version: 1
hostname: mail.example.com
domains: [example.com, example.org]
smtp:
  tls: { certFile: ${certFile}, keyFile: ${keyFile} }
  listeners:
    - { name: mx, address: 127.0.0.1, port: 2525, role: mx, tls: starttls }
    - { name: submission, port: 2587, role: submission, tls: starttls }
  auth: { exemptClients: [10.0.0.5/32], lanBypass: true, lanNetworks: [192.168.1.0/24] }
relay:
  enabled: true
  host: smtp.provider.example
  caFile: ${join(dir, 'ca.pem')}
  auth: { username: u, passwordFile: ${join(dir, 'secrets', 'relay')} }
delivery:
  dns: { servers: [127.0.0.1:53] }
storage: { dataDir: ${join(dir, 'data')} }
dkim:
  keys:
    - { domain: example.com, selector: mp2026a, privateKeyFile: secrets/dkim-rsa }
    - { domain: example.com, selector: mp2026e, privateKeyFile: secrets/dkim-ed }
`;
  const local = await loadConfigText(
    join(dir, 'local.yaml'),
    `${common}mailboxes: { lmtp: { address: 127.0.0.1:24 }, dovecot: { passwdFile: dovecot/passwd } }
accounts:
  local:
    usersFile: secrets/users
    users: [{ name: alice, passwordHash: "${USERS.alice.hash}", aliases: [postmaster] }]
`,
    { baseDir: dir },
  );
  const ldap = await loadConfigText(
    join(dir, 'ldap.yaml'),
    `${common}mailboxes: { store: lmtp, lmtp: { address: /run/dovecot/lmtp } }
cluster:
  redis: { url: "redis://redis.example:6379/0", passwordFile: secrets/redis }
  peers: { handoff: "peers.example:2525", secretFile: secrets/peer }
accounts:
  type: ldap
  ldap: { url: ldaps://ldap.example.com, caFile: ${join(dir, 'ca.pem')}, bindDn: cn=svc, bindPasswordFile: secrets/bind, userBase: ou=people }
`,
    { baseDir: dir },
  );
  assert.deepEqual(local.errors, []);
  assert.deepEqual(ldap.errors, []);
  return { local: local.state!, ldap: ldap.state! };
}

for (const kind of ['local', 'ldap'] as const) {
  test(`every leaf of a ${kind}-accounts state changes the spec of the component that reads it, or is a documented no-op`, async () => {
    const state = (await configs())[kind];
    const base = specView(state, 'digest');
    const paths = leaves(state);
    assert.ok(paths.length > 60, `${paths.length} leaves`);
    let checked = 0;
    for (const path of paths) {
      if (RESHAPES.some((re) => re.test(path))) continue;
      const noop = NO_OPS.find(([re]) => re.test(path));
      const changed = specView(mutate(state, path.split('.')) as DesiredState, 'digest');
      const c = changes(base, changed);
      const touched = [...c.components].sort();
      if (noop) {
        assert.deepEqual(touched, [], `${path} is documented as a no-op (${noop[1]}) but changes ${touched.join(', ')}`);
        continue;
      }
      assert.deepEqual(touched, expected(path, kind === 'ldap').sort(), `${path} must rebuild ${expected(path, kind === 'ldap').join(', ')}`);
      assert.ok(diff(base, changed).actions.length > 0, `${path}: the plan says nothing`);
      if (path.startsWith('smtp.listeners') && /\.(port|address|tls|proxyProtocol)$/.test(path)) assert.equal(c.sockets.size, 1, `${path} needs a new socket`);
      checked++;
    }
    assert.ok(checked > 40);
  });
}

test('a secret shows in an in-process plan as changed, never as its value; a published view only says it is set', async () => {
  const { local } = await configs();
  const changed = mutate(local, ['relay', 'auth', 'password']) as DesiredState;
  const plan = diff(specView(local, 'digest'), specView(changed, 'digest'));
  assert.deepEqual(plan.actions, [{ kind: 'relay.update', changes: ['relay.auth.password: changed'] }]);
  const published = JSON.stringify(specView(local, 'presence'));
  for (const secret of ['relay-password', 'bind-password', USERS.alice.hash, local.smtp.tls!.material.keyPem.reveal(), ...local.dkim.keys.map((k) => k.material.privateKey.reveal())]) {
    assert.ok(!published.includes(secret));
  }
  assert.match(published, /"signing":\{"keys":\[\{"domain":"example\.com","selector":"mp2026a","algorithm":"rsa-sha256","fingerprint":"sha256:[0-9a-f]{64}","privateKey":\{"secret":"set"\}\}/);
  assert.match(published, /"password":\{"secret":"set"\}/);
  assert.ok(!published.includes(local.relay.auth!.password.digest()), 'not even the keyed digest leaves');
  assert.deepEqual(
    COMPONENTS.filter((c) => !(c in specView(local, 'presence').specs)),
    [],
  );
});
