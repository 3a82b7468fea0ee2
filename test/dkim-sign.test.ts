// DKIM signing, end to end with real parts: keys made by the real `mailplane dkim keygen`,
// messages signed by DkimSigner, every signature checked by an independent verifier
// (python3-dkim) that reads the published record from the loopback DNS server; validate
// refusing bad keys with positions; key rotation and a broken key on reload, through the real
// binary and /status.
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { loadConfigText } from '../src/config/load.js';
import { DkimSigner, fromDomainOf } from '../src/dkim/signer.js';
import { Metrics } from '../src/ops/metrics.js';
import { specsOf } from '../src/plan/specs.js';
import { mailplane } from './helpers/cli.js';
import { closePrimesKey, dkimpyOrSkip, parseTxtRecord, verifyDkim } from './helpers/dkim.js';
import { TestDns } from './helpers/dns.js';
import { baseConfig, makeEnv, startMailplane, type MailplaneProcess } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

const HAVE_DKIMPY = dkimpyOrSkip();

interface Made {
  file: string;
  /** the zone-file line keygen printed */
  line: string;
  name: string;
  strings: string[];
}

async function keygen(dir: string, selector: string, algorithm: 'rsa' | 'ed25519' = 'rsa', extra: string[] = [], domain = 'example.com'): Promise<Made> {
  const file = join(dir, 'dkim', `${domain}.${selector}.key`);
  const r = await mailplane(['dkim', 'keygen', '--domain', domain, '--selector', selector, '--algorithm', algorithm, '--out', file, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const line = r.stdout.trim();
  return { file, line, ...parseTxtRecord(line) };
}

/** The PEM body of a key: what must never appear in output, logs or /status. */
function keyBytes(file: string): string {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'))
    .join('');
}

function dkimSection(keys: { selector: string; file: string; domain?: string }[]): string {
  return `dkim:\n  keys:\n${keys.map((k) => `    - domain: ${k.domain ?? 'example.com'}\n      selector: ${k.selector}\n      privateKeyFile: ${k.file}\n`).join('')}`;
}

const MESSAGE = (from: string, body = 'Hello,\r\n\r\nthe body   with  spaces \r\nand a line.\r\n') =>
  `From: "Alice, Example" <${from}>\r\nTo: bob@example.org\r\nCc: carol@example.net\r\nSubject: quarterly   report\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <q1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nReceived: from a by b; Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\n${body}`;

test('mailplane dkim keygen: the key in a file only its owner reads, never overwritten without --force, the TXT record in 255-byte strings', async () => {
  const dir = tempDir('dkim-keygen');
  const rsa = await keygen(dir, 'mp2026a');
  assert.equal(statSync(rsa.file).mode & 0o777, 0o600);
  assert.match(readFileSync(rsa.file, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  assert.equal(rsa.name, 'mp2026a._domainkey.example.com');
  assert.match(rsa.line, /^mp2026a\._domainkey\.example\.com\. IN TXT \( "v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+" "[A-Za-z0-9+/=]+" \)$/);
  assert.ok(rsa.strings.every((s) => Buffer.byteLength(s) <= 255));
  assert.equal(rsa.strings[0]!.length, 255, 'a 2048-bit record fills its first string');
  const ed = await keygen(dir, 'mp2026e', 'ed25519');
  assert.equal(statSync(ed.file).mode & 0o777, 0o600);
  assert.equal(ed.strings.length, 1);
  const p = ed.strings[0]!.match(/^v=DKIM1; k=ed25519; p=(\S+)$/)![1]!;
  assert.equal(Buffer.from(p, 'base64').length, 32, 'Ed25519: the raw 32-byte public key (RFC 8463)');

  // never overwritten without --force; the private key is never printed
  const before = readFileSync(rsa.file, 'utf8');
  const again = await mailplane(['dkim', 'keygen', '--domain', 'example.com', '--selector', 'mp2026a', '--out', rsa.file]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /exists; refusing to overwrite a key \(use --force to replace it\)/);
  assert.equal(readFileSync(rsa.file, 'utf8'), before);
  const forced = await keygen(dir, 'mp2026a', 'rsa', ['--force', '--bits', '1024']);
  assert.notEqual(readFileSync(forced.file, 'utf8'), before);
  assert.equal(statSync(forced.file).mode & 0o777, 0o600);
  for (const out of [again.stdout + again.stderr, forced.line]) assert.ok(!out.includes(keyBytes(forced.file).slice(0, 40)));

  // usage errors
  for (const args of [
    ['--domain', 'example.com', '--out', join(dir, 'x.key')],
    ['--domain', 'example.com', '--selector', 'bad_selector', '--out', join(dir, 'x.key')],
    ['--domain', 'example.com', '--selector', 's', '--bits', '512', '--out', join(dir, 'x.key')],
    ['--domain', 'example.com', '--selector', 's', '--algorithm', 'dsa', '--out', join(dir, 'x.key')],
  ]) {
    const r = await mailplane(['dkim', 'keygen', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /Usage: mailplane dkim keygen/);
  }
});

test(
  'signed by DkimSigner, verified by python3-dkim through DNS: RSA and Ed25519, From over-signed; a changed body or an added From fails; other domains are not signed',
  { skip: !HAVE_DKIMPY },
  async () => {
    const dir = tempDir('dkim-sign');
    const rsa = await keygen(dir, 'mp2026a');
    const ed = await keygen(dir, 'mp2026e', 'ed25519');
    const org = await keygen(dir, 'org1', 'rsa', [], 'example.org');
    const dns = await new TestDns({ txt: Object.fromEntries([rsa, ed, org].map((k) => [k.name, [k.strings]])) }).start();
    try {
      const loaded = await loadConfigText(
        join(dir, 'mailserver.yaml'),
        `version: 1\nhostname: mail.example.com\ndomains: [example.com, example.org]\nsmtp: { enabled: false }\nstorage: { dataDir: ${join(dir, 'data')} }\n${dkimSection([
          { selector: 'mp2026a', file: rsa.file },
          { selector: 'mp2026e', file: ed.file },
          { selector: 'org1', file: org.file, domain: 'example.org' },
        ])}`,
      );
      assert.deepEqual(loaded.errors, []);
      const metrics = new Metrics();
      const signer = new DkimSigner(specsOf(loaded.state!).signing, { metrics });

      const msg = MESSAGE('alice@Example.COM');
      assert.equal(fromDomainOf(msg), 'example.com');
      const headers = await signer.sign(msg, fromDomainOf(msg)!);
      assert.match(headers, /^DKIM-Signature: [^]*\r\nDKIM-Signature: [^]*\r\n$/);
      const signed = headers + msg;
      const verdicts = await verifyDkim(signed, dns.port);
      assert.deepEqual(
        verdicts.map((v) => [v.d, v.s, v.a, v.ok]),
        [
          ['example.com', 'mp2026a', 'rsa-sha256', true],
          ['example.com', 'mp2026e', 'ed25519-sha256', true],
        ],
      );
      assert.ok(dns.queries.includes('mp2026a._domainkey.example.com/16'), 'the key came from DNS');
      for (const v of verdicts) {
        const h = v.h.toLowerCase().split(':');
        assert.equal(h.filter((x) => x === 'from').length, 2, `From over-signed: ${v.h}`);
        for (const name of ['to', 'cc', 'subject', 'date', 'message-id', 'mime-version', 'content-type']) assert.ok(h.includes(name), `${name} signed: ${v.h}`);
        assert.ok(!h.includes('received'), 'Received is not signed');
      }
      assert.match(headers, /c=relaxed\/relaxed/);

      // relaxed/relaxed: re-folded headers and trailing whitespace still verify
      const refolded = signed.replace('Subject: quarterly   report', 'Subject: quarterly\r\n report').replace('and a line.\r\n', 'and a line.   \r\n');
      assert.deepEqual(
        (await verifyDkim(refolded, dns.port)).map((v) => v.ok),
        [true, true],
      );
      // a changed body fails every signature
      assert.deepEqual(
        (await verifyDkim(signed.replace('and a line.', 'and a lie.'), dns.port)).map((v) => v.ok),
        [false, false],
      );
      // a From added above the signed one fails (that is what over-signing is for)
      assert.deepEqual(
        (await verifyDkim(`From: mallory@example.com\r\n${signed}`, dns.port)).map((v) => v.ok),
        [false, false],
      );
      // the same signatures put in front again on a retry: the same bytes, the same verdict
      assert.deepEqual(
        (await verifyDkim(Buffer.from(signed), dns.port)).map((v) => v.ok),
        [true, true],
      );

      // a second domain's own key; a large 8-bit body from a stream
      const big = MESSAGE('news@example.org', `${'Grüße aus dem Süden. '.repeat(40)}\r\n`.repeat(1500));
      const orgHeaders = await signer.sign(Readable.from([Buffer.from(big)]), 'example.org');
      assert.deepEqual(
        (await verifyDkim(orgHeaders + big, dns.port)).map((v) => [v.d, v.s, v.ok]),
        [['example.org', 'org1', true]],
      );

      // a DSN we generate, From MAILER-DAEMON@ our host name: signed for the domain it lies under
      const dsn = `From: Mail Delivery System <MAILER-DAEMON@mail.example.com>\r\nTo: alice@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n--b1--\r\n`;
      assert.deepEqual(
        (await verifyDkim((await signer.sign(dsn, signer.alignedDomain(fromDomainOf(dsn)!)!)) + dsn, dns.port)).map((v) => [v.d, v.ok]),
        [
          ['example.com', true],
          ['example.com', true],
        ],
      );

      // forwarded mail and bounces from elsewhere: never signed with our keys
      for (const other of [MESSAGE('someone@example.net'), MESSAGE('alice@sub.example.com'), 'From: <>\r\nSubject: x\r\n\r\nbody\r\n']) {
        const domain = fromDomainOf(other);
        assert.equal(signer.signsFor(domain), false);
        assert.equal(await signer.sign(other, domain ?? ''), '');
      }

      const counted = (await metrics.dkimSignatures.get()).values.map((v) => [v.labels.domain, v.value]);
      assert.deepEqual(Object.fromEntries(counted), { 'example.com': 2, 'example.org': 1 }, 'messages signed, per configured domain only');
      assert.equal((await metrics.dkimSigningFailures.get()).values[0]?.value ?? 0, 0);
    } finally {
      dns.stop();
    }
  },
);

test('mailplane validate refuses a 512-bit RSA key, a file that is no key, a domain that is not ours and a duplicate selector, with positions; 1024 bits is a warning', async () => {
  const dir = tempDir('dkim-validate');
  const good = await keygen(dir, 'good');
  const weak = join(dir, 'weak.key');
  writeFileSync(weak, generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const short = join(dir, 'short.key');
  writeFileSync(short, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const notKey = join(dir, 'notes.txt');
  writeFileSync(notKey, 'remember to make a DKIM key\n');
  const pub = join(dir, 'public.pem');
  writeFileSync(pub, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
  const ec = join(dir, 'ec.key');
  writeFileSync(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const file = join(dir, 'mailserver.yaml');
  const config = `version: 1
hostname: mail.example.com
domains: [example.com, example.org]
smtp: { enabled: false }
storage: { dataDir: ${join(dir, 'data')} }
${dkimSection([
  { selector: 'weak', file: weak },
  { selector: 'notes', file: notKey },
  { selector: 'good', file: good.file, domain: 'example.net' },
  { selector: 'good', file: good.file },
  { selector: 'GOOD', file: good.file },
  { selector: 'short', file: short },
  { selector: 'pub', file: pub },
  { selector: 'ec', file: ec },
  { selector: 'missing', file: join(dir, 'nope.key') },
])}`;
  writeFileSync(file, config);
  const lineOf = (n: number, key: string) => {
    const lines = config.split('\n');
    const start = lines.indexOf('  keys:') + 1 + n * 3;
    const i = lines.findIndex((l, j) => j >= start && l.includes(`${key}:`));
    return `${i + 1}:${lines[i]!.indexOf(`${key}:`) + key.length + 3}`;
  };
  const r = await mailplane(['validate', file]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const out = r.stdout + r.stderr;
  const expect = [
    `${file}:${lineOf(0, 'privateKeyFile')}: dkim.keys[0].privateKeyFile: RSA key of 512 bits: verifiers ignore signatures of RSA keys under 1024 bits (RFC 8301)`,
    `${file}:${lineOf(1, 'privateKeyFile')}: dkim.keys[1].privateKeyFile: no PEM private key found`,
    `${file}:${lineOf(2, 'domain')}: dkim.keys[2].domain: 'example.net' is not one of domains (example.com, example.org): mailplane signs only mail from its own domains`,
    `${file}:${lineOf(4, 'selector')}: dkim.keys[4].selector: selector 'GOOD' of example.com duplicates dkim.keys[3]`,
    `${file}:${lineOf(5, 'privateKeyFile')}: warning: dkim.keys[5].privateKeyFile: RSA key of 1024 bits: accepted, but 2048 bits are recommended`,
    `${file}:${lineOf(6, 'privateKeyFile')}: dkim.keys[6].privateKeyFile: this is a public key; privateKeyFile needs the private key`,
    `${file}:${lineOf(7, 'privateKeyFile')}: dkim.keys[7].privateKeyFile: key type ec: DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256) keys only`,
    `${file}:${lineOf(8, 'privateKeyFile')}: dkim.keys[8].privateKeyFile: file "${join(dir, 'nope.key')}" does not exist`,
  ];
  for (const e of expect) assert.ok(out.includes(e), `expected\n  ${e}\nin\n${out}`);
  assert.ok(!/: dkim\.keys\[3\]\./.test(out), 'the good key has no finding');
  assert.match(out, /invalid: 7 errors/);
  for (const f of [weak, short, good.file, ec]) assert.ok(!out.includes(keyBytes(f).slice(0, 40)), 'no key bytes in the output');

  const json = JSON.parse((await mailplane(['validate', '--format', 'json', file])).stdout);
  const codes = json.files[0].errors.map((i: any) => `${i.path} ${i.code}`);
  assert.deepEqual(codes, [
    'dkim.keys[0].privateKeyFile MP_DKIM_KEY',
    'dkim.keys[1].privateKeyFile MP_DKIM_KEY',
    'dkim.keys[2].domain MP_DKIM_DOMAIN',
    'dkim.keys[4].selector MP_DUPLICATE',
    'dkim.keys[6].privateKeyFile MP_DKIM_KEY',
    'dkim.keys[7].privateKeyFile MP_DKIM_KEY',
    'dkim.keys[8].privateKeyFile MP_FILE_UNREADABLE',
  ]);
  assert.deepEqual(
    json.files[0].warnings.filter((i: any) => i.path.startsWith('dkim')).map((i: any) => `${i.path} ${i.code}`),
    ['dkim.keys[5].privateKeyFile MP_DKIM_KEY_WEAK'],
  );

  // a key that parses but is known to be weak: refused like a short one
  writeFileSync(weak, closePrimesKey().pem);
  const w = await mailplane(['validate', file]);
  assert.ok((w.stdout + w.stderr).includes(`${file}:${lineOf(0, 'privateKeyFile')}: dkim.keys[0].privateKeyFile: RSA key whose two primes are closer than FIPS 186-4 allows`), w.stdout + w.stderr);

  // the schema: a selector that is no selector, a key without its file
  writeFileSync(file, config.replace('selector: weak', 'selector: "we ak"').replace(/ {6}privateKeyFile: \S+notes\.txt\n/, ''));
  const s = await mailplane(['validate', file]);
  assert.match(s.stdout + s.stderr, /dkim\.keys\[0\]\.selector: must be a DKIM selector/);
  assert.match(s.stdout + s.stderr, /:\d+:\d+: dkim\.keys\[1\]: missing required key 'privateKeyFile'/);
});

test('rotation without restart: add a selector, then remove the old one (plan and /status show it); a broken key file on reload keeps the signing key and says why', async () => {
  const env = await makeEnv();
  const a = await keygen(env.dir, 'mp2026a');
  const b = await keygen(env.dir, 'mp2026b', 'ed25519');
  const config = (keys: Made[]) => `${baseConfig(env)}${dkimSection(keys.map((k) => ({ selector: k.name.split('.')[0]!, file: k.file })))}`;
  const mp = await startMailplane(env, config([a]));
  const selectors = async (p: MailplaneProcess) => (await p.status()).dkim.keys.map((k: any) => `${k.selector}:${k.algorithm}:${k.fingerprint}`);
  const fp = (file: string) => fpOf(readFileSync(file, 'utf8'));
  try {
    const pid = mp.pid;
    assert.deepEqual(await selectors(mp), [`mp2026a:rsa-sha256:${fp(a.file)}`]);
    const st = await mp.status();
    assert.deepEqual(st.specs.signing.keys[0].privateKey, { secret: 'set' });
    assert.equal(await mp.metric('mailplane_dkim_signatures_total', 'domain="example.com"'), 0);
    assert.equal(await mp.metric('mailplane_dkim_signing_failures_total'), 0);

    // step 1: the new selector next to the old one (its record published first)
    writeFileSync(join(env.dir, 'next.yaml'), config([a, b]));
    const plan = await mailplane(['plan', join(env.dir, 'next.yaml'), '--server', `http://127.0.0.1:${env.ports.ops}`]);
    assert.equal(plan.code, 2, plan.stderr);
    assert.match(plan.stdout, /~ update DKIM signing keys: swapped in place, the next message signed uses them\n {4}add key example\.com selector mp2026b \(ed25519-sha256, sha256:[0-9a-f]{16}…\)/);
    writeFileSync(env.configFile, config([a, b]));
    await mp.waitFor('generation 2', async () => (await mp.status()).applied.generation === 2);
    assert.deepEqual(await selectors(mp), [`mp2026a:rsa-sha256:${fp(a.file)}`, `mp2026b:ed25519-sha256:${fp(b.file)}`]);
    assert.match(mp.logs, /"msg":"config applied".*add key example\.com selector mp2026b/);

    // step 2: once every cache has the new record, the old selector goes
    writeFileSync(env.configFile, config([b]));
    await mp.waitFor('generation 3', async () => (await mp.status()).applied.generation === 3);
    assert.deepEqual(await selectors(mp), [`mp2026b:ed25519-sha256:${fp(b.file)}`]);
    assert.match(mp.logs, /"msg":"config applied".*remove key example\.com selector mp2026a/);

    // a broken key file: refused, the key in use keeps signing, /status and the gauge say why
    const good = readFileSync(b.file, 'utf8');
    writeFileSync(b.file, 'not a key\n');
    await mp.waitFor('the refusal', async () => (await mp.status()).lastAttempt?.outcome === 'invalid');
    let s = await mp.status();
    assert.match(s.lastAttempt.errors.join('\n'), /:\d+:\d+: dkim\.keys\[0\]\.privateKeyFile: no PEM private key found/);
    assert.equal(s.applied.generation, 3);
    assert.deepEqual(await selectors(mp), [`mp2026b:ed25519-sha256:${fpOf(good)}`]);
    assert.equal(await mp.metric('mailplane_config_last_reload_successful'), 0);
    // a key too weak to use: the same
    writeFileSync(b.file, generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await mp.waitFor('the second refusal', async () => /RSA key of 512 bits/.test((await mp.status()).lastAttempt?.errors.join('\n') ?? ''));
    assert.deepEqual(await selectors(mp), [`mp2026b:ed25519-sha256:${fpOf(good)}`]);

    // a new key in the same file (keygen --force): swapped in, the plan line says replaced
    const renewed = await keygen(env.dir, 'mp2026b', 'ed25519', ['--force']);
    await mp.waitFor('generation 4', async () => (await mp.status()).applied.generation === 4);
    s = await mp.status();
    assert.equal(s.lastAttempt.outcome, 'applied');
    assert.deepEqual(await selectors(mp), [`mp2026b:ed25519-sha256:${fp(renewed.file)}`]);
    assert.notEqual(fp(renewed.file), fpOf(good));
    assert.match(mp.logs, /"msg":"config applied".*replace key example\.com selector mp2026b: sha256:[0-9a-f]{16}… → sha256:[0-9a-f]{16}…/);
    assert.equal(await mp.metric('mailplane_config_last_reload_successful'), 1);
    assert.equal(mp.pid, pid, 'no restart');
    assert.ok(mp.running);

    // never a key byte in the logs or /status
    const published = JSON.stringify(await mp.status()) + (await mp.metrics());
    for (const pem of [good, readFileSync(a.file, 'utf8'), readFileSync(renewed.file, 'utf8')]) {
      const body = pem
        .split('\n')
        .filter((l) => l && !l.startsWith('-----'))
        .join('');
      assert.ok(!mp.logs.includes(body.slice(0, 40)) && !published.includes(body.slice(0, 40)), 'key bytes leaked');
    }
  } finally {
    await mp.stop();
  }
});

/** The fingerprint /status shows, computed independently: sha256 of the DNS record's p= bytes. */
function fpOf(pem: string): string {
  const pub = createPublicKey(createPrivateKey(pem));
  const raw = pub.asymmetricKeyType === 'ed25519' ? pub.export({ type: 'spki', format: 'der' }).subarray(-32) : pub.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}
