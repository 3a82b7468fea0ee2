// DKIM signing of what leaves, through the real binary: keys made by `mailplane dkim keygen`
// (RSA and Ed25519 for example.com), their records served by the loopback DNS server, every
// copy a real second SMTP server (relay or MX) received checked by python3-dkim. Signed once
// before the first attempt: a retry — in the same run, after a restart — sends the same
// signature; an entry queued without one is signed at its next attempt. The queued file is
// never rewritten: the Maildir copies that share it carry no signature. Mail from other domains
// is not signed; DSNs are, for the domain our host name lies under. Last, in process (a signing
// failure no loadable config can cause): the queue sends unsigned, counts and logs once.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { LocalAccounts } from '../src/accounts/local.js';
import { loadConfigText } from '../src/config/load.js';
import { DkimSigner } from '../src/dkim/signer.js';
import type { DeliveryContext } from '../src/outbound/queue.js';
import { RelayTransport } from '../src/outbound/transports.js';
import { silentLogger, type Fields } from '../src/ops/logger.js';
import { MailLog } from '../src/ops/mail-log.js';
import { Metrics } from '../src/ops/metrics.js';
import { specsOf } from '../src/plan/specs.js';
import { Storage } from '../src/reconcile/storage.js';
import { newQueueId } from '../src/store/queue-entry.js';
import { mailplane } from './helpers/cli.js';
import { dkimpyOrSkip, parseTxtRecord, verifyDkim } from './helpers/dkim.js';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { TestRelay, type Received } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, USERS, type Env } from './helpers/server.js';
import { SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';

const HAVE_DKIMPY = dkimpyOrSkip();
const ACCOUNT = { user: 'mailer@example.com', pass: 'relay-s3cret' };

interface Key {
  selector: string;
  file: string;
  name: string;
  strings: string[];
}

let keys: Key[];
let dns: TestDns;

before(async () => {
  const dir = tempDir('dkim-keys');
  keys = [];
  for (const [selector, algorithm] of [
    ['mp2026a', 'rsa'],
    ['mp2026e', 'ed25519'],
  ] as const) {
    const file = join(dir, `example.com.${selector}.key`);
    const r = await mailplane(['dkim', 'keygen', '--domain', 'example.com', '--selector', selector, '--algorithm', algorithm, '--out', file]);
    assert.equal(r.code, 0, r.stderr);
    keys.push({ selector, file, ...parseTxtRecord(r.stdout.trim()) });
  }
  dns = await new TestDns({ txt: Object.fromEntries(keys.map((k) => [k.name, [k.strings]])) }).start();
});
after(() => dns?.stop());

const dkimSection = () => `dkim:\n  keys:\n${keys.map((k) => `    - { domain: example.com, selector: ${k.selector}, privateKeyFile: ${k.file} }\n`).join('')}`;

function relayConfig(env: Env, port: number): string {
  writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem);
  writeFileSync(join(env.dir, 'relay-password'), `${ACCOUNT.pass}\n`);
  return `${baseConfig(env, {
    relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${port}\n  caFile: ca.pem\n  auth: { username: ${ACCOUNT.user}, passwordFile: relay-password }\n`,
    delivery: `delivery:\n  minRetryDelay: 200ms\n  maxRetryDelay: 400ms\n  dns: { servers: [127.0.0.1:${env.ports.dns}], timeout: 1s }\n`,
  })}${dkimSection()}`;
}

function body(from: string, subject: string): string {
  return `From: ${from}\r\nTo: friends <list@remote.example>\r\nSubject: ${subject}\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nthe body   with  spaces \r\n.and a line starting with a dot.\r\n`;
}

/** alice, authenticated on the submission port; returns the queue id. */
async function aliceSends(env: Env, to: string[], subject: string): Promise<string> {
  const c = (await SmtpClient.connect({ port: env.ports.submission })).client;
  await c.ehlo();
  await c.starttls();
  await c.ehlo();
  assert.equal((await c.authPlain('alice', USERS.alice.password)).code, 235);
  const r = await c.send('alice@example.com', to, body('Alice <alice@example.com>', subject));
  await c.quit();
  assert.equal(r.data?.code, 250, JSON.stringify(r));
  return r.data.lines[0]!.match(/queued as (\w+)/)![1]!;
}

/** A trusted client (exemptClients) relaying for someone at another domain. */
async function trustedSends(env: Env, from: string, to: string[], subject: string): Promise<void> {
  const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
  await client.ehlo();
  const r = await client.send(from, to, body(`Someone <${from}>`, subject));
  await client.quit();
  assert.equal(r.data?.code, 250, JSON.stringify(r));
}

/** The DKIM-Signature header fields of a message, as they are (folding included). */
function signatures(raw: Buffer | string): string {
  const head = `${raw.toString().split('\r\n\r\n')[0]}\r\n`;
  return [...head.matchAll(/^DKIM-Signature:.*\r\n(?:[ \t].*\r\n)*/gim)].map((m) => m[0]).join('');
}

async function verdicts(raw: Buffer | string): Promise<string[]> {
  return (await verifyDkim(raw, dns.port)).map((v) => `${v.d} ${v.s} ${v.a} ${v.ok ? 'pass' : 'FAIL'}`);
}
const BOTH_PASS = ['example.com mp2026a rsa-sha256 pass', 'example.com mp2026e ed25519-sha256 pass'];

function mailbox(env: Env, user: string): { path: string; text: string }[] {
  const dir = join(env.dataDir, 'mail', user, 'new');
  try {
    return readdirSync(dir).map((f) => ({ path: join(dir, f), text: readFileSync(join(dir, f), 'utf8') }));
  } catch {
    return [];
  }
}

const entryOf = (env: Env, id: string) => JSON.parse(readFileSync(join(env.dataDir, 'queue', `${id}.json`), 'utf8'));
const one = (copies: Received[], what: string) => {
  assert.equal(copies.length, 1, what);
  return copies[0]!;
};

test('through the relay: signed with both keys and verified; a retry sends the same signature; the local copy sharing the queued file carries none', { skip: !HAVE_DKIMPY }, async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const mp = await startMailplane(env, relayConfig(env, relay.o.port));
  try {
    assert.equal(await mp.metric('mailplane_dkim_signatures_total', 'domain="example.com"'), 0);
    // the relay takes ok@ at once and defers defer-1@ (451 at RCPT) until told otherwise
    const id = await aliceSends(env, ['ok@remote.example', 'defer-1@remote.example', 'bob@example.com'], 'signed and retried');
    await mp.waitFor('a retry of the deferred recipient', () => relay.rcptSeen.filter((a) => a === 'defer-1@remote.example').length >= 2);
    const first = one(relay.for('ok@remote.example'), 'the first copy');
    assert.deepEqual(await verdicts(first.raw), BOTH_PASS);
    const sig = signatures(first.raw);
    assert.match(sig, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;[^]*\r\nDKIM-Signature: v=1; a=ed25519-sha256; c=relaxed\/relaxed; d=example\.com;/);
    assert.match(
      first.raw.toString(),
      /^DKIM-Signature: [^]*\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.com \(mailplane\) with ESMTPSA id /,
      'in front of our Received',
    );

    // kept with the entry's state while it waits; the queued file and the Maildir copy are one unsigned inode
    assert.equal(entryOf(env, id).dkim, sig);
    const [bob] = mailbox(env, 'bob');
    assert.ok(bob, 'the local copy');
    const eml = join(env.dataDir, 'queue', `${id}.eml`);
    assert.equal(statSync(eml).ino, statSync(bob.path).ino, 'one file');
    assert.ok(!bob.text.includes('DKIM-Signature') && !readFileSync(eml, 'utf8').includes('DKIM-Signature'), 'the shared file was not rewritten');

    relay.deferring = false;
    await mp.waitQueueEmpty();
    const second = one(relay.for('defer-1@remote.example'), 'the retried copy');
    assert.equal(signatures(second.raw), sig, 'the same signature bytes on the retry');
    assert.deepEqual(await verdicts(second.raw), BOTH_PASS);
    assert.equal(second.raw.toString().slice(sig.length), first.raw.toString().slice(sig.length), 'the same message');
    assert.ok(!mailbox(env, 'bob')[0]!.text.includes('DKIM-Signature'));
    assert.equal(await mp.metric('mailplane_dkim_signatures_total', 'domain="example.com"'), 1, 'signed once for both attempts');
    assert.equal(await mp.metric('mailplane_dkim_signing_failures_total'), 0);
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test('across a restart: a deferred message keeps its signature; an entry queued without one (an older version) is signed at its next attempt', { skip: !HAVE_DKIMPY }, async () => {
  const env = await makeEnv();
  const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  const config = relayConfig(env, relay.o.port);
  let mp = await startMailplane(env, config);
  try {
    const kept = await aliceSends(env, ['ok@remote.example', 'defer-2@remote.example'], 'kept over a restart');
    const old = await aliceSends(env, ['defer-3@remote.example'], 'queued before signing');
    await mp.waitFor('both deferred', () => ['defer-2@remote.example', 'defer-3@remote.example'].every((a) => relay.rcptSeen.includes(a)));
    await mp.stop();
    const sig = signatures(one(relay.for('ok@remote.example'), 'the first copy').raw);
    assert.equal(entryOf(env, kept).dkim, sig);
    const stale = entryOf(env, old);
    assert.equal(typeof stale.dkim, 'string');
    delete stale.dkim; // as an entry written before signing existed
    writeFileSync(join(env.dataDir, 'queue', `${old}.json`), JSON.stringify(stale));

    relay.deferring = false;
    mp = await startMailplane(env, config);
    await mp.waitQueueEmpty();
    const again = one(relay.for('defer-2@remote.example'), 'the copy after the restart');
    assert.equal(signatures(again.raw), sig, 'the same signature after the restart');
    assert.deepEqual(await verdicts(again.raw), BOTH_PASS);
    const late = one(relay.for('defer-3@remote.example'), 'the older entry');
    assert.deepEqual(await verdicts(late.raw), BOTH_PASS, 'signed at its next attempt');
  } finally {
    await mp.stop();
    await relay.stop();
  }
});

test(
  'mail from another domain is not signed; DSNs are, for example.com (our host name mail.example.com lies under it): to a remote sender through the relay, to a local one in her Maildir',
  { skip: !HAVE_DKIMPY },
  async () => {
    const env = await makeEnv();
    const relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
    const mp = await startMailplane(env, relayConfig(env, relay.o.port));
    try {
      // a trusted client relaying for someone@other.example: one recipient takes it, one refuses it
      await trustedSends(env, 'someone@other.example', ['friend@remote.example', 'fail-1@remote.example'], 'forwarded');
      await mp.waitQueueEmpty();
      const forwarded = one(relay.for('friend@remote.example'), 'the forwarded message');
      assert.equal(forwarded.from, 'someone@other.example');
      assert.equal(signatures(forwarded.raw), '', 'not signed with our keys');
      assert.match(forwarded.raw.toString(), /^Received: /);
      const dsn = one(relay.for('someone@other.example'), 'the DSN to the remote sender');
      assert.equal(dsn.from, '');
      assert.match(dsn.raw.toString(), /\r\nFrom: Mail Delivery System <MAILER-DAEMON@mail\.example\.com>\r\n/);
      assert.match(dsn.raw.toString(), /Final-Recipient: rfc822; fail-1@remote\.example/);
      assert.deepEqual(await verdicts(dsn.raw), BOTH_PASS);

      // alice's message refused: the DSN goes into her Maildir, signed the same way
      await aliceSends(env, ['fail-2@remote.example'], 'refused');
      await mp.waitQueueEmpty();
      const bounces = mailbox(env, 'alice').filter((m) => m.text.includes('Undelivered Mail Returned to Sender'));
      assert.equal(bounces.length, 1);
      assert.match(bounces[0]!.text, /^Return-Path: <>\r\nDelivered-To: alice@example\.com\r\nReceived: [^]*\r\nDKIM-Signature: /);
      assert.deepEqual(await verdicts(bounces[0]!.text), BOTH_PASS);
      assert.equal(await mp.metric('mailplane_dkim_signatures_total', 'domain="example.com"'), 3, "alice's message and the two DSNs");
      assert.equal(await mp.metric('mailplane_dkim_signing_failures_total'), 0);
    } finally {
      await mp.stop();
      await relay.stop();
    }
  },
);

test('direct MX delivery: signed with both keys and verified; the local copy carries no signature', { skip: !HAVE_DKIMPY }, async () => {
  const env = await makeEnv();
  const port = await freePort();
  const mx = await new TestRelay({ port, mode: 'starttls', name: 'mx1.remote.test' }).start();
  dns.zone.mx = { 'remote.test': [{ priority: 10, exchange: 'mx1.remote.test' }] };
  dns.zone.a = { 'mx1.remote.test': ['127.0.0.1'] };
  const mp = await startMailplane(
    env,
    `${baseConfig(env, {
      delivery: `delivery:\n  minRetryDelay: 200ms\n  maxRetryDelay: 400ms\n  mxPort: ${port}\n  connectTimeout: 2s\n  dns: { servers: [127.0.0.1:${dns.port}], timeout: 2s }\n`,
    })}${dkimSection()}`,
  );
  try {
    const id = await aliceSends(env, ['someone@remote.test', 'defer-1@remote.test', 'bob@example.com'], 'via mx');
    await mp.waitFor('a retry of the deferred recipient', () => mx.rcptSeen.filter((a) => a === 'defer-1@remote.test').length >= 2);
    const first = one(mx.for('someone@remote.test'), 'the MX copy');
    assert.equal(first.secure, true);
    assert.deepEqual(await verdicts(first.raw), BOTH_PASS);
    assert.equal(entryOf(env, id).dkim, signatures(first.raw));
    mx.deferring = false;
    await mp.waitQueueEmpty();
    const second = one(mx.for('defer-1@remote.test'), 'the retried copy');
    assert.equal(signatures(second.raw), signatures(first.raw));
    assert.deepEqual(await verdicts(second.raw), BOTH_PASS);
    const [bob] = mailbox(env, 'bob');
    assert.ok(bob && !bob.text.includes('DKIM-Signature'), 'the local copy is unsigned');
    assert.ok(dns.queries.includes('remote.test/15'), 'the MX came from the lab DNS');
  } finally {
    await mp.stop();
    await mx.stop();
  }
});

test('a signature that cannot be made: the message goes out without it (with the signatures that could be made), counted, logged once with its queue id', { skip: !HAVE_DKIMPY }, async () => {
  // every key mislabeled (an Ed25519 key as rsa-sha256 and the reverse), then only the Ed25519 one:
  // what no config can load, so the queue and the real signer meet it here, in process
  const dir = tempDir('dkim-failing');
  const relay = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  const loaded = await loadConfigText(
    join(dir, 'mailserver.yaml'),
    `version: 1\nhostname: mail.example.com\ndomains: [example.com]\nsmtp: { enabled: false }\nstorage: { dataDir: ${join(dir, 'data')} }\nrelay: { enabled: true, host: 127.0.0.1, port: ${relay.o.port}, secure: false }\n${dkimSection()}`,
  );
  assert.deepEqual(loaded.errors, []);
  const specs = specsOf(loaded.state!);
  const swapped = (k: (typeof specs.signing.keys)[number]) => ({ ...k, algorithm: k.algorithm === 'rsa-sha256' ? ('ed25519-sha256' as const) : ('rsa-sha256' as const) });
  const metrics = new Metrics();
  const logged: Fields[] = [];
  const log = { ...silentLogger, error: (msg: string, fields: Fields = {}) => logged.push({ msg, ...fields }) };
  let signer = new DkimSigner({ keys: specs.signing.keys.map(swapped) }, { metrics, log });
  const transport = new RelayTransport(specs.transport.relay, specs.transport.connect, 'mail.example.com');
  const accounts = new LocalAccounts([]);
  const ctx = (): DeliveryContext => ({
    transport,
    settings: loaded.state!.delivery,
    hostname: 'mail.example.com',
    domains: new Set(['example.com']),
    accounts,
    signer,
    mailLog: new MailLog(silentLogger),
    unlock: () => ({ ok: false, message: '' }),
  });
  const storage = await Storage.open(join(dir, 'data'), 16 << 20, silentLogger, metrics);
  try {
    await storage.outbound.start(ctx);
    const send = async (to: string) => {
      const id = newQueueId();
      await storage.intake.acceptBuffer({
        id,
        sender: 'alice@example.com',
        local: [],
        remote: [to],
        received: `Received: by mail.example.com (mailplane) id ${id}\r\n`,
        message: Buffer.from(body('alice@example.com', to)),
      });
      return id;
    };
    const unsigned = await send('first@remote.example');
    const first = await waitForCopy(relay, 'first@remote.example');
    assert.equal(signatures(first.raw), '', 'delivered, unsigned');
    assert.equal((await metrics.dkimSigningFailures.get()).values[0]!.value, 2, 'each signature that could not be made');
    assert.deepEqual(
      logged.map((l) => [l.msg, l.id, l.domain, l.selector]),
      [['DKIM signing failed', unsigned, 'example.com', 'mp2026a, mp2026e']],
      'one line for the message',
    );
    assert.ok(!JSON.stringify(logged).includes(readFileSync(keys[0]!.file, 'utf8').split('\n')[1]!), 'no key bytes');

    // the RSA key mislabeled, the Ed25519 one fine: sent with the signature that could be made
    signer = new DkimSigner({ keys: specs.signing.keys.map((k) => (k.algorithm === 'rsa-sha256' ? swapped(k) : k)) }, { metrics, log });
    const partly = await send('second@remote.example');
    const second = await waitForCopy(relay, 'second@remote.example');
    assert.deepEqual(await verdicts(second.raw), ['example.com mp2026e ed25519-sha256 pass']);
    assert.equal((await metrics.dkimSigningFailures.get()).values[0]!.value, 3);
    assert.deepEqual(
      logged.slice(1).map((l) => [l.msg, l.id, l.selector]),
      [['DKIM signing failed', partly, 'mp2026a']],
    );
  } finally {
    await storage.close();
    await transport.close();
    await relay.stop();
  }
});

async function waitForCopy(relay: TestRelay, to: string): Promise<Received> {
  const deadline = Date.now() + 10_000;
  while (!relay.for(to).length) {
    if (Date.now() > deadline) throw new Error(`nothing arrived for ${to}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return one(relay.for(to), to);
}
