// The pure parts of DKIM signing: the From: domain of a raw message, the header set and its
// over-signing, key checks, TXT record splitting, and the plan's lines for key changes.
import assert from 'node:assert/strict';
import { checkPrimeSync, generateKeyPairSync, generatePrimeSync, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { Secret } from '../../src/config/secret.js';
import { dkimPublicKey, readDkimKey, rocaFingerprint, splitTxt, txtRecord, txtValue } from '../../src/dkim/key.js';
import { addressesOf, DKIM_HEADERS, DkimSigner, fromDomainOf, headerFields, headerSection, OVERSIGNED } from '../../src/dkim/signer.js';
import { silentLogger } from '../../src/ops/logger.js';
import { Metrics } from '../../src/ops/metrics.js';
import { summarize } from '../../src/plan/format.js';
import { diff, type SpecView } from '../../src/plan/plan.js';
import type { SigningKeySpec } from '../../src/plan/specs.js';
import { closePrimesKey, rsaFromPrimes } from '../helpers/dkim.js';

const pem = (type: 'rsa' | 'ed25519' | 'ec' | 'rsa-pss', bits = 2048) =>
  (type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: bits })
    : type === 'rsa-pss'
      ? generateKeyPairSync('rsa-pss', { modulusLength: bits })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519')
  ).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

test('the From: domain comes from the one From field of the header section', () => {
  const m = (from: string, rest = '') => `Received: from x\r\nFrom: ${from}\r\nTo: bob@example.org\r\n${rest}\r\nFrom: body@elsewhere.example\r\n`;
  const cases: [string, string | null][] = [
    ['alice@example.com', 'example.com'],
    ['<alice@Example.COM>', 'example.com'],
    ['"Alice, Example" <alice@example.com>', 'example.com'],
    ['"a@evil.example <x@evil.example>" <alice@example.com>', 'example.com'],
    ['Alice (at evil.example, really) <alice@example.com> (home)', 'example.com'],
    ['alice@example.com (Alice <x@evil.example>)', 'example.com'],
    ['"quoted@local"@example.com', 'example.com'],
    ['=?utf-8?q?Al=40ice?= <alice@example.com>', 'example.com'],
    ['Team: alice@example.com, bob@example.com;', 'example.com'],
    ['alice@example.com, bob@example.org', null],
    ['<@relay.example:alice@example.com>', 'example.com'],
    ['jörg@bücher.example', 'xn--bcher-kva.example'],
    ['alice@example.com.', 'example.com'],
    ['alice@[192.0.2.1]', null],
    ['<>', null],
    ['undisclosed-recipients:;', null],
  ];
  for (const [from, want] of cases) assert.equal(fromDomainOf(m(from)), want, from);
  // folded, as bytes, lower-case field name
  assert.equal(fromDomainOf(Buffer.from('Subject: x\r\nfrom: "Alice"\r\n\t<alice@example.com>\r\n\r\nbody')), 'example.com');
  // bare LF line ends
  assert.equal(fromDomainOf('Subject: x\nFrom: alice@example.com\n\nFrom: x@y.example\n'), 'example.com');
  // none, two, or only in the body
  assert.equal(fromDomainOf('Subject: x\r\n\r\nFrom: alice@example.com\r\n'), null);
  assert.equal(fromDomainOf('From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody'), null);
  assert.equal(fromDomainOf('\r\nFrom: alice@example.com\r\n'), null, 'an empty header section');
  assert.equal(fromDomainOf('From: alice@example.com'), 'example.com', 'no body at all');
});

test('header section and fields: only up to the empty line, unfolded', () => {
  assert.equal(headerSection('A: 1\r\nB: 2\r\n\r\nC: 3'), 'A: 1\r\nB: 2');
  assert.deepEqual(headerFields('A: 1\r\n  more\r\nB : 2'), [
    ['A', ' 1  more'],
    ['B', ' 2'],
  ]);
  assert.deepEqual(addressesOf('a@x.example, "b, c" <b@y.example>; G: d@z.example;'), ['a@x.example', 'b@y.example', 'd@z.example']);
});

test('the signed header set: RFC 6376 section 5.4.1, From over-signed, never trace fields', () => {
  const names = DKIM_HEADERS.map((h) => h.toLowerCase());
  for (const h of [
    'from',
    'reply-to',
    'subject',
    'date',
    'to',
    'cc',
    'resent-date',
    'resent-from',
    'resent-to',
    'resent-cc',
    'in-reply-to',
    'references',
    'list-id',
    'list-help',
    'list-unsubscribe',
    'list-subscribe',
    'list-post',
    'list-owner',
    'list-archive',
  ]) {
    assert.ok(names.includes(h), `${h} is signed`);
  }
  for (const h of ['received', 'return-path', 'dkim-signature', 'delivered-to', 'x-mailer']) assert.ok(!names.includes(h), `${h} is not signed`);
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(OVERSIGNED, ['From']);
});

test('a signature names every present header of the set, From once more than present, and only the key of the From domain', async () => {
  const key = readDkimKey(pem('ed25519')).material;
  const spec: SigningKeySpec = { domain: 'example.com', selector: 's1', algorithm: key.algorithm, fingerprint: key.fingerprint, privateKey: key.privateKey };
  const signer = new DkimSigner({ keys: [spec] });
  const msg = 'Received: from x\r\nFrom: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\nX-Mailer: m\r\n\r\nbody\r\n';
  const header = await signer.sign(msg, 'EXAMPLE.com');
  const h = header
    .replace(/\r\n[ \t]+/g, ' ')
    .match(/ h=([^;]+);/)![1]!
    .split(':')
    .map((x) => x.trim().toLowerCase());
  assert.deepEqual(h.sort(), ['from', 'from', 'subject', 'to']);
  assert.match(header, /^DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed\/relaxed; d=example\.com;[^]* s=s1;/);
  assert.ok(header.endsWith('\r\n') && !header.endsWith('\r\n\r\n'));
  assert.equal(await signer.sign(msg, 'example.org'), '');
  assert.ok(signer.signsFor('Example.COM') && !signer.signsFor('example.org') && !signer.signsFor(null));
  assert.equal(signer.alignedDomain('mail.Example.com'), 'example.com', 'our host name: the DSN From');
  assert.equal(signer.alignedDomain('example.com'), 'example.com');
  assert.equal(signer.alignedDomain('mail.example.org'), null);
  assert.equal(signer.alignedDomain('badexample.com'), null);
  assert.throws(() => new DkimSigner({ keys: [{ ...spec, privateKey: new Secret('garbage', 'key') }] }), /DKIM key of example\.com selector s1 cannot be used/);

  // what cannot be signed is counted and logged, never thrown; a message that cannot be read is the caller's
  const metrics = new Metrics();
  const logged: unknown[] = [];
  const counting = new DkimSigner({ keys: [spec] }, { metrics, log: { ...silentLogger, error: (msg, fields) => logged.push({ msg, ...fields }) } });
  assert.equal(await counting.sign('Subject: no From\r\n\r\nbody\r\n', 'example.com'), '');
  assert.equal((await metrics.dkimSigningFailures.get()).values[0]!.value, 1);
  assert.deepEqual(logged, [{ msg: 'DKIM signing failed', domain: 'example.com', selector: 's1', error: 'Can not sign a message that has no From header' }]);
  assert.ok(!JSON.stringify(logged).includes(key.privateKey.reveal().split('\n')[1]!));
  const broken = new Readable({
    read() {
      this.destroy(new Error('EIO: the disk is gone'));
    },
  });
  await assert.rejects(counting.sign(broken, 'example.com'), /EIO: the disk is gone/);
  assert.equal((await metrics.dkimSignatures.get()).values.find((v) => v.labels.domain === 'example.com')!.value, 0);
});

test('keys: RSA of at least 1024 bits (under 2048 a warning) or Ed25519; anything else refused without printing the key', () => {
  const rsa = readDkimKey(pem('rsa'));
  assert.equal(rsa.material.algorithm, 'rsa-sha256');
  assert.equal(rsa.material.bits, 2048);
  assert.deepEqual(rsa.warnings, []);
  assert.match(rsa.material.fingerprint, /^sha256:[0-9a-f]{64}$/);
  assert.equal(String(rsa.material.privateKey), '[redacted]');
  assert.ok(!JSON.stringify(rsa.material).includes('PRIVATE KEY'));
  assert.deepEqual(readDkimKey(pem('rsa', 1024)).warnings, ['RSA key of 1024 bits: accepted, but 2048 bits are recommended']);
  const ed = readDkimKey(pem('ed25519')).material;
  assert.equal(ed.algorithm, 'ed25519-sha256');
  assert.equal(Buffer.from(ed.publicKey, 'base64').length, 32);
  const weak = pem('rsa', 512);
  assert.throws(() => readDkimKey(weak), /RSA key of 512 bits: verifiers ignore signatures of RSA keys under 1024 bits/);
  assert.throws(() => readDkimKey(pem('ec')), /key type ec: DKIM signs with RSA \(rsa-sha256\) or Ed25519/);
  assert.throws(() => readDkimKey(pem('rsa-pss')), /RSA-PSS/);
  assert.throws(() => readDkimKey('hello'), /no PEM private key found/);
  assert.throws(() => readDkimKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), /private key cannot be parsed/);
  assert.throws(() => readDkimKey('-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n'), /encrypted private keys are not supported/);
  try {
    readDkimKey(weak);
  } catch (e) {
    assert.ok(!(e as Error).message.includes(weak.split('\n')[1]!.slice(0, 20)));
  }
});

test('RSA keys with a known weakness are refused: primes too close (Fermat), the ROCA fingerprint, parts that do not fit', () => {
  const { pem: close, p } = closePrimesKey();
  assert.throws(() => readDkimKey(close), /RSA key whose two primes are closer than FIPS 186-4 allows: Fermat's method may factor it \(CVE-2022-26320\); make a new key/);

  // primes of the form k*M + 65537^a mod M, as the Infineon library made them
  const M = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167].reduce(
    (m, x) => m * BigInt(x),
    1n,
  );
  const pow = (b: bigint, x: bigint, m: bigint) => {
    let r = 1n;
    for (b %= m; x; x >>= 1n, b = (b * b) % m) if (x & 1n) r = (r * b) % m;
    return r;
  };
  const rocaPrime = () => {
    for (;;) {
      const k = BigInt(`0x${randomBytes(100).toString('hex')}`) | (1n << 799n);
      const c = k * M + pow(65537n, BigInt(randomBytes(2).readUInt16BE()), M);
      if (checkPrimeSync(c)) return c;
    }
  };
  const roca = rsaFromPrimes(rocaPrime(), rocaPrime());
  assert.throws(() => readDkimKey(roca), /the ROCA fingerprint \(CVE-2017-15361/);
  for (let i = 0; i < 20; i++) {
    const n = BigInt(`0x${Buffer.from(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }).n!, 'base64url').toString('hex')}`);
    assert.equal(rocaFingerprint(n), false, 'an ordinary key has no ROCA fingerprint');
  }

  // a modulus that is not the product of the primes
  const other = generatePrimeSync(1024, { bigint: true });
  assert.throws(() => readDkimKey(rsaFromPrimes(p, other, p * other + 2n)), /primes do not multiply to its modulus/);
});

test('TXT records: split into character-strings of at most 255 bytes that join back to the value', () => {
  assert.deepEqual(splitTxt(''), ['']);
  assert.deepEqual(splitTxt('a'.repeat(255)), ['a'.repeat(255)]);
  assert.deepEqual(splitTxt('a'.repeat(256)), ['a'.repeat(255), 'a']);
  assert.deepEqual(
    splitTxt('x'.repeat(600)).map((s) => s.length),
    [255, 255, 90],
  );
  const pub = dkimPublicKey(generateKeyPairSync('rsa', { modulusLength: 3072 }).publicKey);
  const value = txtValue(pub);
  const line = txtRecord('example.com', 'big', pub);
  const strings = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
  assert.equal(strings.join(''), value);
  assert.ok(strings.length >= 3 && strings.every((s) => s.length <= 255));
  assert.match(line, /^big\._domainkey\.example\.com\. IN TXT \( "v=DKIM1; k=rsa; p=/);
  const ed = dkimPublicKey(generateKeyPairSync('ed25519').publicKey);
  assert.match(txtRecord('example.org', 's', ed), /^s\._domainkey\.example\.org\. IN TXT \( "v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=" \)$/);
});

test('the plan names DKIM keys added, removed and replaced by selector and fingerprint, never the key', () => {
  const key = (selector: string, fingerprint: string, secret = 'k') => ({ domain: 'example.com', selector, algorithm: 'rsa-sha256', fingerprint, privateKey: { secret } });
  const view = (keys: object[]): SpecView => ({ hash: JSON.stringify(keys), specs: { signing: { keys } } as unknown as SpecView['specs'] });
  const fpA = `sha256:${'a'.repeat(64)}`;
  const fpB = `sha256:${'b'.repeat(64)}`;
  const plan = (a: object[], b: object[]) => summarize(diff(view(a), view(b)));
  assert.deepEqual(plan([key('s1', fpA)], [key('s1', fpA), key('s2', fpB)]), [
    `update DKIM signing keys: swapped in place, the next message signed uses them (add key example.com selector s2 (rsa-sha256, sha256:${'b'.repeat(16)}…))`,
  ]);
  assert.deepEqual(plan([key('s1', fpA), key('s2', fpB)], [key('s2', fpB)]), ['update DKIM signing keys: swapped in place, the next message signed uses them (remove key example.com selector s1)']);
  assert.deepEqual(plan([key('s1', fpA)], [key('s1', fpB)]), [
    `update DKIM signing keys: swapped in place, the next message signed uses them (replace key example.com selector s1: sha256:${'a'.repeat(16)}… → sha256:${'b'.repeat(16)}… (rsa-sha256))`,
  ]);
  assert.deepEqual(plan([key('s1', fpA, 'k1')], [key('s1', fpA, 'k2')]), [
    'update DKIM signing keys: swapped in place, the next message signed uses them (key example.com selector s1: file content changed, same key)',
  ]);
  assert.deepEqual(plan([key('s1', fpA)], [key('s1', fpA)]), []);
});
