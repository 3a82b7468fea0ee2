// `mailplane dns`, run as a user would: the zone output loaded by a real zone parser
// (named-checkzone, Debian's bind9-utils), the JSON checked against its published schema, the
// external-dns resources parsed as YAML, DKIM records in 255-byte strings that join back to the
// key, an MTA-STS id that follows the policy and nothing else; and validate refusing bad values.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { mailplane, ROOT } from './helpers/cli.js';
import { USERS } from './helpers/server.js';
import { serverCert, writeCert } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';

/** named-checkzone (bind9-utils): in CI a missing one fails, elsewhere it skips loudly. */
function namedCheckzoneOrSkip(): boolean {
  if (!spawnSync('named-checkzone', ['-v']).error) return true;
  if (process.env.CI) throw new Error('named-checkzone is required in CI (Debian package bind9-utils)');
  console.warn('\n*** SKIPPED LOUDLY: named-checkzone not installed (apt-get install bind9-utils); zone output not parsed ***\n');
  return false;
}
const HAVE_NAMED = namedCheckzoneOrSkip();

interface Fixture {
  dir: string;
  config: (extra?: string) => string;
  /** the p= value of each DKIM key, by selector */
  publicKeys: Record<string, string>;
}

function fixture(): Fixture {
  const dir = tempDir('dns-records');
  const { certFile, keyFile } = writeCert(dir, serverCert('mail.example.com'));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ed = generateKeyPairSync('ed25519').privateKey;
  writeFileSync(join(dir, 'rsa.key'), rsa.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'ed.key'), ed.export({ type: 'pkcs8', format: 'pem' }));
  const publicKeys = {
    mp2026a: createPublicKey(rsa).export({ type: 'spki', format: 'der' }).toString('base64'),
    mp2026e: Buffer.from((createPublicKey(ed).export({ format: 'jwk' }) as { x: string }).x, 'base64url').toString('base64'),
  };
  let n = 0;
  const config = (extra = '') => {
    const file = join(dir, `mailserver-${n++}.yaml`);
    writeFileSync(
      file,
      `version: 1
hostname: mail.example.com
domains: [example.com, example.org]
smtp:
  tls: { certFile: ${certFile}, keyFile: ${keyFile} }
accounts:
  local:
    users: [{ name: alice, passwordHash: "${USERS.alice.hash}", aliases: [postmaster] }]
relay: { enabled: true, host: smtp.relay.example.net }
dkim:
  keys:
    - { domain: example.com, selector: mp2026a, privateKeyFile: rsa.key }
    - { domain: example.com, selector: mp2026e, privateKeyFile: ed.key }
${extra}`,
    );
    return file;
  };
  return { dir, config, publicKeys };
}

const FULL = `dns:
  spfInclude: [_spf.relay.example.net]
  dmarc: { policy: quarantine, reportAddress: dmarc@example.com }
  addresses: [198.51.100.25, "2001:db8:5::25"]
`;

interface JsonRecord {
  name: string;
  type: string;
  ttl: number;
  purpose: string;
  zone: string | null;
  advice: boolean;
  rdata: string;
  value?: string;
  strings?: string[];
  selector?: string;
  fingerprint?: string;
  port?: number;
  target?: string;
  priority?: number;
  weight?: number;
  address?: string;
  exchange?: string;
}
interface JsonOutput {
  hostname: string;
  records: JsonRecord[];
  mtaSts: { mode: string; maxAge: number; id: string; policy: string };
  notes: string[];
}

async function json(file: string): Promise<JsonOutput> {
  const r = await mailplane(['dns', '--config', file, '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as JsonOutput;
}

/** The zone output's sections: zone name → its record lines. */
function sections(zone: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of zone.split(/^; ---- /m).slice(1)) {
    const [head = '', ...rest] = part.split('\n');
    out.set(head.split(' ')[0]!, rest.join('\n'));
  }
  return out;
}

test('mailplane dns --format zone: every section loads in named-checkzone, and what it parsed is what the config needs', { skip: !HAVE_NAMED }, async () => {
  const f = fixture();
  const file = f.config(FULL);
  const r = await mailplane(['dns', '--config', file]);
  assert.equal(r.code, 0, r.stderr);
  // documentation addresses are not public: said once each, on stderr, with their position
  assert.match(r.stderr, /dns\.addresses\[0\]: 198\.51\.100\.25 is not a public address/);
  const zone = r.stdout;
  for (const line of zone.split('\n').filter((l) => l && !l.startsWith(';'))) {
    assert.match(line, /^\S+\.\s+3600 IN (MX|TXT|SRV|A|AAAA)\s+\S/, `an absolute name and a TTL on every record line: ${line}`);
  }
  const parts = sections(zone);
  assert.deepEqual(
    [...parts.keys()].filter((k) => k.includes('example')),
    ['example.com', 'example.org'],
  );
  for (const origin of ['example.com', 'example.org']) {
    const file = join(f.dir, `${origin}.zone`);
    writeFileSync(file, `$TTL 3600\n@ IN SOA ns1.${origin}. hostmaster.${origin}. 1 7200 3600 1209600 3600\n@ IN NS ns1.${origin}.\nns1.${origin}. IN A 192.0.2.53\n${parts.get(origin)}`);
    // strict: every check an error; -i local: no lookups of names outside the zone (no real resolver is asked)
    const strict = ['-k', 'fail', '-m', 'fail', '-M', 'fail', '-n', 'fail', '-r', 'fail', '-S', 'fail', '-i', 'local'];
    const check = spawnSync('named-checkzone', [...strict, origin, file], { encoding: 'utf8' });
    assert.equal(check.status, 0, `${origin}:\n${check.stdout}${check.stderr}\n${readFileSync(file, 'utf8')}`);
    assert.match(check.stdout, /OK/);
    // the records as BIND parsed them (canonical form, one per line)
    const dump = spawnSync('named-checkzone', ['-i', 'local', '-D', '-o', '-', origin, file], { encoding: 'utf8' });
    assert.equal(dump.status, 0, dump.stderr);
    const rr = dump.stdout
      .split('\n')
      .filter((l) => l && !l.startsWith(';'))
      .map((l) => l.split(/\s+/));
    const has = (name: string, type: string, data: RegExp) => rr.some((x) => x[0] === `${name}.` && x[3] === type && data.test(x.slice(4).join(' ')));
    assert.ok(has(origin, 'MX', /^10 mail\.example\.com\.$/), `${origin} MX`);
    assert.ok(has(origin, 'TXT', /^"v=spf1 mx include:_spf\.relay\.example\.net -all"$/), `${origin} SPF`);
    assert.ok(has(`_dmarc.${origin}`, 'TXT', /^"v=DMARC1; p=quarantine; rua=mailto:dmarc@example\.com"$/), `${origin} DMARC`);
    assert.ok(has(`_mta-sts.${origin}`, 'TXT', /^"v=STSv1; id=[0-9a-f]{32}"$/), `${origin} MTA-STS`);
    assert.ok(has(`_smtp._tls.${origin}`, 'TXT', /^"v=TLSRPTv1; rua=mailto:dmarc@example\.com"$/), `${origin} TLS-RPT`);
    assert.ok(has(`_submissions._tcp.${origin}`, 'SRV', /^0 1 465 mail\.example\.com\.$/), `${origin} submissions`);
    assert.ok(has(`_submission._tcp.${origin}`, 'SRV', /^10 1 587 mail\.example\.com\.$/), `${origin} submission`);
    if (origin === 'example.com') {
      assert.ok(has('mail.example.com', 'A', /^198\.51\.100\.25$/));
      assert.ok(has('mail.example.com', 'AAAA', /^2001:db8:5::25$/));
      assert.ok(has('mail.example.com', 'TXT', /^"v=spf1 a -all"$/));
      // reports for example.org go to an address at example.com: example.com consents (RFC 7489 7.1)
      assert.ok(has('example.org._report._dmarc.example.com', 'TXT', /^"v=DMARC1"$/));
      // the DKIM keys, as BIND holds them: the strings join back to our public keys
      for (const [selector, p] of Object.entries(f.publicKeys)) {
        const line = rr.find((x) => x[0] === `${selector}._domainkey.example.com.` && x[3] === 'TXT');
        assert.ok(line, selector);
        const strings = [
          ...line
            .slice(4)
            .join(' ')
            .matchAll(/"([^"]*)"/g),
        ].map((m) => m[1]!);
        for (const s of strings) assert.ok(Buffer.byteLength(s) <= 255);
        assert.equal(strings.join(''), `v=DKIM1; k=${selector === 'mp2026a' ? 'rsa' : 'ed25519'}; p=${p}`);
      }
    } else {
      assert.ok(!rr.some((x) => x[0]?.includes('_domainkey')), 'example.org has no DKIM key');
    }
  }
  // PTR is advice: commented out, in its own section, never in a forward zone
  assert.match(zone, /^; 25\.100\.51\.198\.in-addr\.arpa\.\s+3600 IN PTR\s+mail\.example\.com\.$/m);
  assert.match(zone, /^; 5\.2\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.0\.5\.0\.0\.0\.8\.b\.d\.0\.1\.0\.0\.2\.ip6\.arpa\.\s+3600 IN PTR\s+mail\.example\.com\.$/m);
  // the MTA-STS policy is printed for whoever serves it
  assert.match(zone, /^; {3}version: STSv1\n; {3}mode: testing\n; {3}mx: mail\.example\.com\n; {3}max_age: 604800$/m);
});

test('mailplane dns --format json: valid against schema/dns-records.schema.json, every record the config needs', async () => {
  const f = fixture();
  const out = await json(f.config(FULL));
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
  const validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'schema', 'dns-records.schema.json'), 'utf8')) as object);
  assert.ok(validate(out), ajv.errorsText(validate.errors));
  assert.equal(out.hostname, 'mail.example.com');
  const find = (name: string, purpose: string) => out.records.filter((r) => r.name === name && r.purpose === purpose);
  for (const d of ['example.com', 'example.org']) {
    assert.deepEqual(
      find(d, 'mx').map((r) => r.rdata),
      ['10 mail.example.com.'],
    );
    assert.equal(find(d, 'spf')[0]!.value, 'v=spf1 mx include:_spf.relay.example.net -all');
    assert.equal(find(`_dmarc.${d}`, 'dmarc')[0]!.value, 'v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com');
    assert.equal(find(`_mta-sts.${d}`, 'mta-sts')[0]!.value, `v=STSv1; id=${out.mtaSts.id}`);
    assert.equal(find(`_smtp._tls.${d}`, 'tls-rpt')[0]!.value, 'v=TLSRPTv1; rua=mailto:dmarc@example.com');
    const srv = (s: string) => find(`_${s}._tcp.${d}`, s).map((r) => [r.priority, r.weight, r.port, r.target]);
    assert.deepEqual(srv('submissions'), [[0, 1, 465, 'mail.example.com']]);
    assert.deepEqual(srv('submission'), [[10, 1, 587, 'mail.example.com']]);
    assert.deepEqual(find(`_imaps._tcp.${d}`, 'imaps'), [], 'no mailbox service is configured: no _imaps._tcp');
  }
  assert.deepEqual(
    out.records.filter((r) => r.purpose === 'address').map((r) => [r.name, r.type, r.address, r.zone]),
    [
      ['mail.example.com', 'A', '198.51.100.25', 'example.com'],
      ['mail.example.com', 'AAAA', '2001:db8:5::25', 'example.com'],
    ],
  );
  assert.deepEqual(
    out.records.filter((r) => r.type === 'PTR').map((r) => [r.address, r.target, r.advice, r.zone]),
    [
      ['198.51.100.25', 'mail.example.com', true, null],
      ['2001:db8:5::25', 'mail.example.com', true, null],
    ],
  );
  assert.ok(out.records.filter((r) => r.type !== 'PTR').every((r) => !r.advice));
  assert.equal(out.mtaSts.policy, 'version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 604800\r\n');
  assert.ok(out.notes.some((n) => /ops endpoint answers that path for Host mta-sts/.test(n)));
});

test('DKIM records: character-strings of at most 255 bytes that join back to the public key of the private key file', async () => {
  const f = fixture();
  const out = await json(f.config(FULL));
  const dkim = out.records.filter((r) => r.purpose === 'dkim');
  assert.deepEqual(dkim.map((r) => r.name).sort(), ['mp2026a._domainkey.example.com', 'mp2026e._domainkey.example.com']);
  for (const r of dkim) {
    const p = f.publicKeys[r.selector!]!;
    assert.ok(r.strings!.every((s) => Buffer.byteLength(s) <= 255));
    assert.equal(r.strings!.join(''), r.value);
    assert.equal(r.value, `v=DKIM1; k=${r.selector === 'mp2026a' ? 'rsa' : 'ed25519'}; p=${p}`);
  }
  const rsa = dkim.find((r) => r.selector === 'mp2026a')!;
  assert.ok(rsa.strings!.length >= 2, 'a 2048-bit RSA key needs more than one string');
  assert.equal(rsa.strings![0]!.length, 255);
  // the zone line holds the same strings, and keygen's record for the same key is the same value
  const zone = (await mailplane(['dns', '--config', f.config(FULL)])).stdout;
  const line = zone.split('\n').find((l) => l.startsWith('mp2026a._domainkey.example.com.'))!;
  assert.deepEqual(
    [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]),
    rsa.strings,
  );
});

test('mailplane dns --format external-dns: DNSEndpoint documents that parse, one per zone, targets that rebuild every record', async () => {
  const f = fixture();
  const file = f.config(FULL);
  const r = await mailplane(['dns', '--config', file, '--format', 'external-dns']);
  assert.equal(r.code, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout);
  assert.ok(Array.isArray(docs));
  for (const d of docs) assert.deepEqual(d.errors, []);
  const resources = docs.map(
    (d) => d.toJS() as { apiVersion: string; kind: string; metadata: { name: string }; spec: { endpoints: { dnsName: string; recordType: string; recordTTL: number; targets: string[] }[] } },
  );
  assert.deepEqual(
    resources.map((x) => [x.apiVersion, x.kind, x.metadata.name]),
    [
      ['externaldns.k8s.io/v1alpha1', 'DNSEndpoint', 'mailplane-dns-example-com'],
      ['externaldns.k8s.io/v1alpha1', 'DNSEndpoint', 'mailplane-dns-example-org'],
    ],
  );
  const out = await json(file);
  const endpoints = resources.flatMap((x) => x.spec.endpoints);
  for (const x of resources) {
    assert.match(x.metadata.name, /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    const keys = x.spec.endpoints.map((e) => `${e.dnsName}/${e.recordType}`);
    assert.equal(new Set(keys).size, keys.length, 'one endpoint per name and type');
  }
  assert.ok(!endpoints.some((e) => e.recordType === 'PTR'), 'reverse DNS is not ours to publish');
  // every published record is there, its target rebuilding it
  for (const rec of out.records.filter((x) => !x.advice)) {
    const e = endpoints.find((x) => x.dnsName === rec.name && x.recordType === rec.type);
    assert.ok(e, `${rec.name} ${rec.type}`);
    assert.equal(e.recordTTL, 3600);
    const rebuilt = e.targets.map((t) => {
      if (rec.type !== 'TXT') return t;
      const quoted = [...t.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
      return quoted.length ? quoted.join('') : t;
    });
    const want =
      rec.type === 'MX'
        ? `10 ${rec.exchange}`
        : rec.type === 'TXT'
          ? rec.value
          : rec.type === 'SRV'
            ? `${rec.priority} ${rec.weight} ${rec.port} ${rec.target === '.' ? '.' : `${(rec.target ?? '').replace(/\.$/, '')}.`}`
            : rec.address;
    assert.ok(rebuilt.includes(want!), `${rec.name} ${rec.type}: ${want} in ${JSON.stringify(e.targets)}`);
  }
  const dkim = endpoints.find((e) => e.dnsName === 'mp2026a._domainkey.example.com')!;
  for (const s of [...dkim.targets[0]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!)) assert.ok(Buffer.byteLength(s) <= 255);
});

test('the MTA-STS id changes when the policy changes (mode, max_age) and with nothing else', async () => {
  const f = fixture();
  const id = async (extra: string) => (await json(f.config(extra))).mtaSts.id;
  const base = await id('');
  assert.match(base, /^[0-9a-f]{32}$/);
  assert.equal(await id('mtaSts: { mode: testing, maxAge: 7d }\n'), base, 'the defaults spelled out');
  assert.equal(await id(`${FULL}  ttl: 300\n`), base, 'the rest of the DNS settings');
  assert.equal(await id('dns: { dmarc: { policy: reject } }\n# a comment\n'), base);
  const enforce = await id('mtaSts: { mode: enforce }\n');
  const none = await id('mtaSts: { mode: none }\n');
  const longer = await id('mtaSts: { maxAge: 30d }\n');
  assert.equal(new Set([base, enforce, none, longer]).size, 4);
  assert.equal(await id('mtaSts: { mode: enforce }\n'), enforce, 'the same policy, the same id');
  assert.equal(await id('mtaSts: { maxAge: 2592000 }\n'), longer, '30d written in seconds is the same policy');
});

test('SRV records say "not offered" (0 0 0 .) without a reachable listener; no TLS-RPT record without a report address', async () => {
  const f = fixture();
  const file = f.config('dns: { spfInclude: [_spf.relay.example.net] }\n');
  // only an mx listener, and a submission listener bound to loopback
  const text = readFileSync(file, 'utf8').replace('smtp:\n', 'smtp:\n  listeners:\n    - { name: mx, port: 25, role: mx }\n    - { name: local, port: 587, role: submission, address: 127.0.0.1 }\n');
  writeFileSync(file, text);
  const out = await json(file);
  const srv = out.records.filter((r) => r.type === 'SRV' && r.name.endsWith('example.com'));
  assert.deepEqual(
    srv.map((r) => [r.name, r.rdata]),
    [
      ['_submissions._tcp.example.com', '0 0 0 .'],
      ['_submission._tcp.example.com', '0 0 0 .'],
    ],
  );
  assert.ok(out.notes.some((n) => /submission listener 'local' binds 127\.0\.0\.1 only/.test(n)));
  assert.deepEqual(
    out.records.filter((r) => r.purpose === 'tls-rpt'),
    [],
  );
  assert.ok(out.notes.some((n) => /No _smtp\._tls/.test(n)));
  assert.ok(out.notes.some((n) => /No dns\.addresses/.test(n)));
  // a separate TLS-RPT address wins over the DMARC one
  const rpt = await json(f.config('dns: { spfInclude: [x.example.net], tlsRptAddress: tls@example.org, dmarc: { reportAddress: d@example.com } }\n'));
  assert.equal(rpt.records.find((r) => r.purpose === 'tls-rpt')!.value, 'v=TLSRPTv1; rua=mailto:tls@example.org');
  // DMARC reports at a domain that is not ours: the operator is told what that domain must publish
  const foreign = await json(f.config('dns: { spfInclude: [x.example.net], dmarc: { reportAddress: reports@dmarc.example.net } }\n'));
  assert.deepEqual(
    foreign.records.filter((r) => r.purpose === 'dmarc-report-auth'),
    [],
  );
  assert.ok(foreign.notes.some((n) => n.includes('example.com._report._dmarc.dmarc.example.net, example.org._report._dmarc.dmarc.example.net')));
});

test('validate: bad dns and mtaSts values are errors with their positions; a relay without an SPF include and a private address are warnings', async () => {
  const f = fixture();
  const codes = async (extra: string, smtp = '') => {
    const file = f.config(extra);
    if (smtp) writeFileSync(file, readFileSync(file, 'utf8').replace('smtp:\n', `smtp:\n${smtp}`));
    const r = await mailplane(['validate', '--format', 'json', file]);
    const doc = JSON.parse(r.stdout) as { files: { errors: { code: string; path: string; message: string }[]; warnings: { code: string; path: string; message: string }[] }[] };
    return { code: r.code, errors: doc.files[0]!.errors.map((i) => `${i.path} ${i.code}`), warnings: doc.files[0]!.warnings.map((i) => `${i.path} ${i.code}`), all: doc.files[0]! };
  };
  const ok = await codes(`${FULL.replace('198.51.100.25', '8.8.4.4')}`);
  assert.equal(ok.code, 0);
  assert.deepEqual(ok.warnings, ['dns.addresses[1] MP_DNS_ADDRESS'], '2001:db8:: is documentation space');

  const relay = await codes('');
  assert.deepEqual(relay.warnings, ['relay.enabled MP_DNS_SPF']);
  assert.equal(relay.code, 0);

  // schema findings and semantic ones together: one does not hide another
  const bad = await codes(
    `dns:
  spfInclude: [_spf.relay.example.net, "bad..name", _SPF.Relay.Example.NET]
  addresses: [not-an-ip, 10.0.0.0/8, 192.168.1.25, "::ffff:192.168.1.25"]
  dmarc: { policy: sometimes, reportAddress: "mailto:dmarc@example.com" }
  tlsRptAddress: tls@bad..domain
  ttl: 0
mtaSts: { mode: enforce, maxAge: 400d }
`,
    '  listeners: [{ name: mx, port: 25, role: mx, tls: none }]\n',
  );
  assert.equal(bad.code, 1);
  assert.deepEqual(bad.errors.sort(), [
    'dns.addresses[0] MP_ADDRESS',
    'dns.addresses[1] MP_ADDRESS',
    'dns.addresses[3] MP_DUPLICATE',
    'dns.dmarc.policy MP_INVALID_VALUE',
    'dns.dmarc.reportAddress MP_INVALID_VALUE',
    'dns.spfInclude[1] MP_INVALID_VALUE',
    'dns.spfInclude[2] MP_DUPLICATE',
    'dns.tlsRptAddress MP_INVALID_VALUE',
    'dns.ttl MP_INVALID_VALUE',
    'mtaSts.maxAge MP_INVALID_VALUE',
    'mtaSts.mode MP_MTA_STS',
  ]);
  assert.deepEqual(bad.warnings, ['dns.addresses[2] MP_DNS_ADDRESS']);
  const msg = (path: string) => [...bad.all.errors, ...bad.all.warnings].find((i) => i.path === path)!.message;
  assert.match(msg('dns.addresses[0]'), /'not-an-ip' is not an IP address/);
  assert.match(msg('mtaSts.maxAge'), /at most 31557600 seconds/);
  assert.match(msg('mtaSts.mode'), /no mx listener offers STARTTLS/);
  assert.match(msg('dns.dmarc.reportAddress'), /without mailto:/);
  assert.match(msg('dns.addresses[2]'), /192\.168\.1\.25 is not a public address/);

  const many = await codes(`dns:\n  spfInclude: [${Array.from({ length: 10 }, (_, i) => `s${i}.example.net`).join(', ')}]\n`);
  assert.deepEqual(many.errors, ['dns.spfInclude MP_DNS_SPF']);
  assert.match(many.all.errors[0]!.message, /at least 11 DNS lookups; SPF allows 10/);
});

test('mailplane dns: usage errors and a config that cannot be used exit 2', async () => {
  const f = fixture();
  const file = f.config(FULL);
  for (const args of [
    ['dns', '--config', file, '--format', 'bind'],
    ['dns', 'check', '--config', file, '--format', 'zone'],
    ['dns', 'check', '--config', file, '--resolver', 'dns.example.net'],
    ['dns', '--config', file, '--resolver', '127.0.0.1'],
    ['dns', 'records', '--config', file],
  ]) {
    const r = await mailplane(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /Usage: mailplane dns/);
  }
  const missing = await mailplane(['dns', '--config', join(f.dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read config file: no such file/);
  const invalid = await mailplane(['dns', 'check', '--config', f.config('dns: { ttl: -1 }\n')]);
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /dns\.ttl/);
  const help = await mailplane(['dns', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /mailplane dns check \[--config FILE\] \[--resolver ADDR\[:PORT\]\] \[--format text\|json\]/);
  assert.match((await mailplane(['--help'])).stdout, /^ {2}dns +the DNS records the config needs/m);
});
