// `mailplane dns check` against a loopback DNS server (test/helpers/dns.ts) serving the zone
// `mailplane dns --format json` asks for, then that zone with one kind of drift at a time, and
// no zone at all. Run as a user would; every lookup goes to 127.0.0.1, none to the machine's
// resolver.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { mailplane } from './helpers/cli.js';
import { TestDns, type Zone } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { serverCert, writeCert } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';

interface JsonRecord {
  name: string;
  type: string;
  purpose: string;
  advice: boolean;
  strings?: string[];
  value?: string;
  preference?: number;
  exchange?: string;
  priority?: number;
  weight?: number;
  port?: number;
  target?: string;
  address?: string;
}

interface CheckJson {
  ok: boolean;
  resolver: string;
  summary: Record<string, number>;
  results: { status: string; type: string; name: string; purpose: string; advice: boolean; message: string; expected: string[]; found: string[] }[];
}

const RELAY_SPF = '_spf.relay.example.net';
let dir: string;
let config: string;
let dns: TestDns;
let records: JsonRecord[];
/** the zone that matches the config, the relay's SPF record included */
let good: Zone;

/** The TestDns tables holding exactly the given records. */
function zoneOf(rs: JsonRecord[]): Zone {
  const z: Required<Pick<Zone, 'mx' | 'a' | 'aaaa' | 'txt' | 'srv' | 'ptr'>> = { mx: {}, a: {}, aaaa: {}, txt: {}, srv: {}, ptr: {} };
  const add = <T>(table: Record<string, T[]>, name: string, v: T) => (table[name] ??= []).push(v);
  for (const r of rs) {
    if (r.type === 'MX') add(z.mx, r.name, { priority: r.preference!, exchange: r.exchange! });
    else if (r.type === 'TXT') add(z.txt, r.name, r.strings!);
    else if (r.type === 'SRV') add(z.srv, r.name, { priority: r.priority!, weight: r.weight!, port: r.port!, target: r.target! });
    else if (r.type === 'A') add(z.a, r.name, r.address!);
    else if (r.type === 'AAAA') add(z.aaaa, r.name, r.address!);
    else if (r.type === 'PTR') add(z.ptr, r.name, r.target!);
  }
  return z;
}

/** A deep copy of the good zone, changed by fn. */
function drift(fn: (z: Zone) => void): Zone {
  const z = structuredClone(good);
  fn(z);
  return z;
}

async function check(zone: Zone, args: string[] = []) {
  dns.zone = zone;
  return mailplane(['dns', 'check', '--config', config, ...args]);
}

/** The output line of a check, by type and name. */
function line(stdout: string, type: string, name: string): string {
  const found = stdout.split('\n').find((l) => new RegExp(`^\\S+\\s+${type}\\s+${name.replace(/\./g, '\\.')}\\s`).test(l));
  assert.ok(found, `no ${type} ${name} line in:\n${stdout}`);
  return found;
}

before(async () => {
  dir = tempDir('dns-check');
  const { certFile, keyFile } = writeCert(dir, serverCert('mail.example.com'));
  writeFileSync(join(dir, 'rsa.key'), generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  dns = await new TestDns({}).startOn(await freePort());
  config = join(dir, 'mailserver.yaml');
  writeFileSync(
    config,
    `version: 1
hostname: mail.example.com
domains: [example.com, example.org]
smtp:
  tls: { certFile: ${certFile}, keyFile: ${keyFile} }
relay: { enabled: true, host: smtp.relay.example.net }
delivery:
  dns: { servers: ["127.0.0.1:${dns.port}"], timeout: 2s }
dkim:
  keys:
    - { domain: example.com, selector: mp2026a, privateKeyFile: rsa.key }
dns:
  spfInclude: [${RELAY_SPF}]
  dmarc: { reportAddress: dmarc@example.com }
  addresses: [198.51.100.25, "2001:db8:5::25"]
`,
  );
  const r = await mailplane(['dns', '--config', config, '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  records = (JSON.parse(r.stdout) as { records: JsonRecord[] }).records;
  good = zoneOf(records);
  good.txt![RELAY_SPF] = [['v=spf1 ip4:192.0.2.0/24 include:_spf2.relay.example.net -all']];
  good.txt!['_spf2.relay.example.net'] = [['v=spf1 ip6:2001:db8:7::/48 -all']];
});

after(() => dns.stop());

test('every record as the config needs it: each line ok, exit 0', async () => {
  const r = await check(good);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  const summary = lines.pop()!;
  assert.match(summary, new RegExp(`^mailplane dns check: all \\d+ checks ok, resolver 127\\.0\\.0\\.1:${dns.port}$`));
  for (const l of lines) assert.match(l, /^ok\s/, l);
  // one line per expected record (A and AAAA as one set each), plus the SPF lookup counts and the MX host
  const published = records.filter((x) => x.type !== 'A' && x.type !== 'AAAA').length + 2;
  const spf = records.filter((x) => x.purpose === 'spf' || x.purpose === 'spf-host').length;
  assert.equal(lines.length, published + spf + 1);
  assert.match(line(r.stdout, 'SPF-LOOKUPS', 'example.com'), /SPF: 3 of 10 DNS lookups/);
  assert.match(line(r.stdout, 'TXT', 'mp2026a._domainkey.example.com'), /DKIM: our key \(sha256:[0-9a-f]{64}\)/);
  assert.match(line(r.stdout, 'MX-HOST', 'mail.example.com'), /resolves: 198\.51\.100\.25, 2001:db8:5::25/);
  // lookups went to the loopback server
  assert.ok(dns.queries.includes('_dmarc.example.com/16'));
  assert.ok(dns.queries.includes('_submission._tcp.example.org/33'));
  assert.ok(dns.queries.includes('25.100.51.198.in-addr.arpa/12'));
});

test('TXT records are compared joined and as values: another split, spelled-out defaults and reordered terms are no drift', async () => {
  const z = drift((z) => {
    // the DKIM key split at 100 bytes instead of 255
    const key = records.find((x) => x.purpose === 'dkim')!;
    const value = key.strings!.join('');
    z.txt!['mp2026a._domainkey.example.com'] = [value.match(/.{1,100}/g)!];
    // SPF terms in another order, DMARC with its defaults written out, an unrelated TXT record beside them
    z.txt!['example.com'] = [[`v=spf1 include:${RELAY_SPF} mx -all`], ['google-site-verification=abc']];
    z.txt!['_dmarc.example.com'] = [['v=DMARC1;p=none; pct=100; adkim=r;', ' rua=mailto:DMARC@example.com']];
  });
  const r = await check(z);
  assert.equal(r.code, 0, r.stdout);
});

test('a missing DMARC record: "missing" with the expected record, exit 1', async () => {
  const r = await check(
    drift((z) => {
      delete z.txt!['_dmarc.example.com'];
    }),
  );
  assert.equal(r.code, 1, r.stdout);
  assert.match(line(r.stdout, 'TXT', '_dmarc.example.com'), /^missing\s+TXT\s+_dmarc\.example\.com\s+DMARC: no record$/);
  assert.match(r.stdout, /^ {11}expected: "v=DMARC1; p=none; rua=mailto:dmarc@example\.com"\n {11}found: {4}nothing$/m);
  assert.match(r.stdout, /^mailplane dns check: 1 of \d+ checks failed \(1 missing\), resolver 127\.0\.0\.1:\d+$/m);
  assert.match(line(r.stdout, 'TXT', '_dmarc.example.org'), /^ok\s/);
});

test('a DKIM key in DNS that is not ours: "different", both shown, exit 1', async () => {
  const other = createPublicKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)
    .export({ type: 'spki', format: 'der' })
    .toString('base64');
  const published = `v=DKIM1; k=rsa; p=${other}`;
  const r = await check(
    drift((z) => {
      z.txt!['mp2026a._domainkey.example.com'] = [published.match(/.{1,255}/g)!];
    }),
  );
  assert.equal(r.code, 1, r.stdout);
  assert.match(line(r.stdout, 'TXT', 'mp2026a._domainkey.example.com'), /^different\s+TXT\s+\S+\s+DKIM: the key in DNS is not the key of mp2026a in dkim\.keys \(ours is sha256:[0-9a-f]{64}\)/);
  const ours = records.find((x) => x.purpose === 'dkim')!.strings!.join('');
  assert.ok(r.stdout.includes(`expected: "${ours}"`));
  assert.ok(r.stdout.includes(`found:    "${published}"`), 'the chunks joined');
  // a revoked key (empty p=) says so
  const revoked = await check(
    drift((z) => {
      z.txt!['mp2026a._domainkey.example.com'] = [['v=DKIM1; k=rsa; p=']];
    }),
  );
  assert.equal(revoked.code, 1);
  assert.match(line(revoked.stdout, 'TXT', 'mp2026a._domainkey.example.com'), /the key in DNS is revoked/);
});

test('an SPF include chain over 10 DNS lookups: the record matches, the lookup count fails, exit 1', async () => {
  const r = await check(
    drift((z) => {
      const hops = Array.from({ length: 10 }, (_, i) => `s${i}.relay.example.net`);
      z.txt![RELAY_SPF] = [`v=spf1 ${hops.map((h) => `include:${h}`).join(' ')} -all`.match(/.{1,255}/g)!];
      for (const h of hops) z.txt![h] = [['v=spf1 a -all']];
    }),
  );
  assert.equal(r.code, 1, r.stdout);
  assert.match(line(r.stdout, 'TXT', 'example.com'), /^ok\s+TXT\s+example\.com\s+SPF$/);
  const spf = line(r.stdout, 'SPF-LOOKUPS', 'example.com');
  assert.match(spf, /^fail\s+SPF-LOOKUPS\s+example\.com\s+SPF: the published SPF record needs more than 10 DNS lookups/);
  assert.match(r.stdout, /found: {4}more than 10 lookups: mx 1, include:_spf\.relay\.example\.net \d+/);
  // example.org's record includes the same chain: it fails too
  assert.match(line(r.stdout, 'SPF-LOOKUPS', 'example.org'), /^fail\s/);
  // an include without an SPF record is a permanent error for receivers
  const broken = await check(
    drift((z) => {
      delete z.txt![RELAY_SPF];
    }),
  );
  assert.equal(broken.code, 1);
  assert.match(line(broken.stdout, 'SPF-LOOKUPS', 'example.com'), /include:_spf\.relay\.example\.net: _spf\.relay\.example\.net has no SPF record \(a permanent error for receivers\)/);
});

test('other drift: a stale MX, a second SPF record, an SRV port, an MTA-STS id, addresses; the MX host not resolving', async () => {
  const r = await check(
    drift((z) => {
      z.mx!['example.org'] = [
        { priority: 10, exchange: 'mail.example.com' },
        { priority: 20, exchange: 'mx.old-provider.example' },
      ];
      z.txt!['example.org'] = [['v=spf1 mx -all'], [`v=spf1 mx include:${RELAY_SPF} -all`]];
      z.srv!['_submission._tcp.example.com'] = [{ priority: 10, weight: 1, port: 2587, target: 'mail.example.com' }];
      z.txt!['_mta-sts.example.com'] = [['v=STSv1; id=20240101']];
      delete z.a!['mail.example.com'];
      delete z.aaaa!['mail.example.com'];
      z.exists = ['mail.example.com'];
    }),
  );
  assert.equal(r.code, 1, r.stdout);
  assert.match(line(r.stdout, 'MX', 'example.org'), /^different\s+MX\s+example\.org\s+MX: other hosts receive mail for example\.org too \(mx\.old-provider\.example\)$/);
  assert.match(r.stdout, /found: {4}20 mx\.old-provider\.example\./);
  assert.match(line(r.stdout, 'TXT', 'example.org'), /^different\s.*SPF: 2 records where there must be one/);
  assert.match(line(r.stdout, 'SRV', '_submission._tcp.example.com'), /^different\s+SRV\s+\S+\s+SRV: expected port 587 on mail\.example\.com$/);
  assert.match(r.stdout, /found: {4}10 1 2587 mail\.example\.com\./);
  assert.match(line(r.stdout, 'TXT', '_mta-sts.example.com'), /^different\s.*MTA-STS: the record differs/);
  assert.match(line(r.stdout, 'A', 'mail.example.com'), /^missing\s+A\s+mail\.example\.com\s+A: mail\.example\.com has no A record$/);
  assert.match(line(r.stdout, 'MX-HOST', 'mail.example.com'), /^fail\s+MX-HOST\s+mail\.example\.com\s+the MX host name mail\.example\.com has no A or AAAA record: no mail can reach it$/);
});

test('PTR records are advice: reported when wrong, never a failure', async () => {
  const r = await check(
    drift((z) => {
      z.ptr!['25.100.51.198.in-addr.arpa'] = ['host-198-51-100-25.isp.example'];
    }),
  );
  assert.equal(r.code, 0, r.stdout);
  assert.match(line(r.stdout, 'PTR', '25.100.51.198.in-addr.arpa'), /^different\*\s+PTR\s+\S+\s+PTR of 198\.51\.100\.25: should name mail\.example\.com alone$/);
  assert.match(r.stdout, /^\* advice \(reverse DNS, kept by the address's owner\): reported, does not fail the check$/m);
  assert.match(r.stdout, /^mailplane dns check: all \d+ checks ok/m);
});

test('--format json: every result with status, expected and found; ok false and exit 1 on drift; nothing published at all', async () => {
  const r = await check(
    drift((z) => {
      delete z.txt!['_dmarc.example.com'];
    }),
    ['--format', 'json'],
  );
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.stdout) as CheckJson;
  assert.equal(doc.ok, false);
  assert.equal(doc.resolver, `127.0.0.1:${dns.port}`);
  assert.equal(doc.summary.missing, 1);
  const dmarc = doc.results.find((x) => x.name === '_dmarc.example.com')!;
  assert.deepEqual(
    { status: dmarc.status, type: dmarc.type, purpose: dmarc.purpose, advice: dmarc.advice, expected: dmarc.expected, found: dmarc.found },
    { status: 'missing', type: 'TXT', purpose: 'dmarc', advice: false, expected: ['"v=DMARC1; p=none; rua=mailto:dmarc@example.com"'], found: [] },
  );
  assert.ok(doc.results.filter((x) => x !== dmarc && !x.advice).every((x) => x.status === 'ok'));

  const okJson = JSON.parse((await check(good, ['--format', 'json'])).stdout) as CheckJson;
  assert.equal(okJson.ok, true);

  // an empty zone: every record missing, the MX host unresolvable
  const none = await check({}, ['--format', 'json']);
  assert.equal(none.code, 1);
  const all = JSON.parse(none.stdout) as CheckJson;
  assert.ok(all.results.filter((x) => x.type !== 'SPF-LOOKUPS' && x.type !== 'MX-HOST').every((x) => x.status === 'missing'));
  assert.equal(all.results.find((x) => x.type === 'MX-HOST')!.status, 'fail');
});

test('--resolver overrides delivery.dns.servers; a resolver that does not answer is an error, not a pass', async () => {
  // a config whose resolver is a port where nothing answers (claimed, never bound)
  const dead = await freePort();
  const deadConfig = join(dir, 'dead-resolver.yaml');
  writeFileSync(deadConfig, readFileSync(config, 'utf8').replace(`127.0.0.1:${dns.port}`, `127.0.0.1:${dead}`).replace('timeout: 2s', 'timeout: 400ms'));
  dns.zone = good;
  const via = await mailplane(['dns', 'check', '--config', deadConfig, '--resolver', `127.0.0.1:${dns.port}`]);
  assert.equal(via.code, 0, via.stdout + via.stderr);
  assert.match(via.stdout, new RegExp(`resolver 127\\.0\\.0\\.1:${dns.port}$`, 'm'));
  const failing = await mailplane(['dns', 'check', '--config', deadConfig]);
  assert.equal(failing.code, 1);
  assert.match(line(failing.stdout, 'MX', 'example.com'), /^error\s+MX\s+example\.com\s+MX: the lookup failed \((ECONNREFUSED|ETIMEOUT)\)$/);
  assert.match(failing.stdout, /checks failed \(.*\d+ error\)/);
});

test('"service not offered" SRV records (0 0 0 .) compare as such', async () => {
  const file = join(dir, 'mx-only.yaml');
  writeFileSync(file, readFileSync(config, 'utf8').replace('smtp:\n', 'smtp:\n  listeners: [{ name: mx, port: 25, role: mx }]\n'));
  const out = await mailplane(['dns', '--config', file, '--format', 'json']);
  assert.equal(out.code, 0, out.stderr);
  dns.zone = zoneOf((JSON.parse(out.stdout) as { records: JsonRecord[] }).records);
  dns.zone.txt![RELAY_SPF] = [['v=spf1 ip4:192.0.2.0/24 -all']];
  const r = await mailplane(['dns', 'check', '--config', file]);
  assert.equal(r.code, 0, r.stdout);
  assert.match(line(r.stdout, 'SRV', '_submissions._tcp.example.com'), /^ok\s+SRV\s+\S+\s+SRV: the service is not offered$/);
  // a real service where we say there is none is drift
  dns.zone.srv!['_submission._tcp.example.org'] = [{ priority: 0, weight: 1, port: 587, target: 'mail.example.com' }];
  const drifted = await mailplane(['dns', 'check', '--config', file]);
  assert.equal(drifted.code, 1);
  assert.match(line(drifted.stdout, 'SRV', '_submission._tcp.example.org'), /^different\s+SRV\s+\S+\s+SRV: expected the "not offered" form \(0 0 0 \.\): the config has no such listener$/);
});
