// The chart's optional parts around the server, rendered by the real pinned helm:
// * dns.externalDns: the DNSEndpoints hold the records the real `mailplane dns --format
//   external-dns` prints for the rendered config (run in the pod's file layout), and pass the
//   external-dns CRD (schema and CEL rules); the MTA-STS Ingress routes only the policy's path to
//   the ops port, where the running server answers it with the policy whose id DNS announces;
// * rspamd: Rspamd and Redis Deployments with their own config (checked by Debian's rspamadm),
//   the server's spamFilter pointed at them, NetworkPolicies mailplane → Rspamd → Redis;
// * mailboxes.dovecot: a Dovecot container in the pod over the data volume, its dovecot.conf made
//   of the blocks of docs/dovecot.md (checked by Debian's doveconf, and run: mail in over SMTP,
//   read over IMAPS and POP3S with the password of the passwd-file mailplane writes).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { test } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { BIN, mailplane } from './helpers/cli.js';
import { CHART, find, findAll, helm, HELM_FIXTURES, helmOrSkip, IMAGE_VALUES, render, renderFailing } from './helpers/helm.js';
import { validateManifests, type Manifest } from './helpers/k8s-validate.js';
import { podFiles, volumeFiles, writeAtomic, type Cluster, type PodFiles } from './helpers/pod-files.js';
import { accepts, freePorts } from './helpers/ports.js';
import { USERS } from './helpers/server.js';
import { SmtpClient } from './helpers/smtp.js';
import { serverCert } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';
import { docBlock } from './helpers/docs.js';
import { imapLogin, pop3Retr, Wire } from './helpers/imap.js';

const skip = helmOrSkip() ? false : 'helm is not installed';

const dkimKey = (type: 'rsa' | 'ed25519') =>
  (type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519')).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
/** Secrets the values files say exist in the cluster. */
const CLUSTER: Cluster = {
  secrets: { 'mail-dkim': { 'example.org.mp2026a.key': dkimKey('rsa'), 'example.org.mp2026e.key': dkimKey('ed25519') } },
};

const configOf = (ms: readonly Manifest[]) => parseYaml(find(ms, 'ConfigMap', 'mail-mailplane-config').data['mailserver.yaml']);

/** `mailplane ARGS --config <the rendered config>`, in the pod's file layout (DKIM keys, certificate, token beside it). */
async function cliOnRendered(ms: readonly Manifest[], args: string[]): Promise<string> {
  const pod = podFiles(ms, CLUSTER);
  const r = await mailplane([...args, '--config', pod.configFile]);
  assert.equal(r.code, 0, `mailplane ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The DKIM TXT values, as an operator gets them: from `mailplane dns --format json` on the config. */
async function dkimRecordsOf(values: string[], set: Record<string, unknown> = {}): Promise<{ domain: string; selector: string; value: string }[]> {
  const ms = render({ values, set: { ...set, 'dns.externalDns.requireDkimRecords': false } });
  const json = JSON.parse(await cliOnRendered(ms, ['dns', '--format', 'json']));
  return json.records.filter((r: any) => r.purpose === 'dkim').map((r: any) => ({ domain: r.name.split('._domainkey.')[1], selector: r.selector, value: r.value }));
}

interface Zone {
  zone: string;
  endpoints: { dnsName: string; recordType: string; recordTTL: number; targets: string[] }[];
}

/** The chart's DNSEndpoints, by zone. */
function chartZones(ms: readonly Manifest[]): Zone[] {
  return findAll(ms, 'DNSEndpoint').map((m) => ({ zone: m.metadata.annotations['mailplane.dev/zone'], endpoints: m.spec.endpoints }));
}

/**
 * What `mailplane dns --format external-dns` prints for the rendered config, by zone, with the
 * two things only the chart knows: an SRV record's port is the Service port that reaches the
 * listener (not the container port), and its target absolute when srvTargetTrailingDot is on.
 */
async function cliZones(ms: readonly Manifest[], trailingDot: boolean): Promise<Zone[]> {
  const out = await cliOnRendered(ms, ['dns', '--format', 'external-dns']);
  const servicePort = new Map<number, number>(find(ms, 'Service', 'mail-mailplane').spec.ports.map((p: any) => [p.targetPort, p.port]));
  return parseAllDocuments(out).map((d) => {
    const m = d.toJS();
    assert.equal(m.kind, 'DNSEndpoint');
    return {
      zone: m.metadata.name.replace(/^mailplane-dns-/, ''),
      endpoints: m.spec.endpoints.map((e: Zone['endpoints'][number]) =>
        e.recordType !== 'SRV'
          ? e
          : {
              ...e,
              targets: e.targets.map((t) => {
                const [priority, weight, port, host] = t.split(' ');
                if (host === '.') return t;
                return `${priority} ${weight} ${servicePort.get(Number(port)) ?? port} ${host === '.' ? host : trailingDot ? `${host!.replace(/\.$/, '')}.` : host!.replace(/\.$/, '')}`;
              }),
            },
      ),
    };
  });
}

const dashed = (zones: Zone[]) => zones.map((z) => ({ ...z, zone: z.zone.replace(/\./g, '-') }));

test('dns.externalDns: the DNSEndpoints hold what `mailplane dns --format external-dns` prints for the rendered config', { skip }, async () => {
  const values = ['addons-dns.yaml'];
  const dkimRecords = await dkimRecordsOf(values);
  assert.equal(dkimRecords.length, 2);
  const ms = render({ values, set: { 'dns.externalDns.dkimRecords': dkimRecords } });
  const chart = chartZones(ms);
  assert.deepEqual(dashed(chart), await cliZones(ms, true));
  // and with relative SRV targets, as external-dns before the CRD's CEL rules wanted them
  const relative = render({ values, set: { 'dns.externalDns.dkimRecords': dkimRecords, 'dns.externalDns.srvTargetTrailingDot': false } });
  assert.deepEqual(dashed(chartZones(relative)), await cliZones(relative, false));

  // not vacuous: what the fixture is there for is in it
  const all = chart.flatMap((z) => z.endpoints);
  const one = (name: string, type: string) => {
    const e = all.filter((x) => x.dnsName === name && x.recordType === type);
    assert.equal(e.length, 1, `${type} ${name}: ${JSON.stringify(all.map((x) => `${x.recordType} ${x.dnsName}`))}`);
    return e[0]!;
  };
  assert.deepEqual(
    chart.map((z) => z.zone),
    ['example.org', 'lists.example.org', 'example.net'],
  );
  assert.deepEqual(one('example.org', 'MX').targets, ['10 mail.example.org']);
  assert.deepEqual(one('example.org', 'TXT').targets, ['v=spf1 mx include:_spf.relay.example.com include:spf.provider.example -all']);
  const rsa = one('mp2026a._domainkey.example.org', 'TXT').targets[0]!;
  assert.match(rsa, /^"v=DKIM1; k=rsa; p=[^"]{237}" "[^"]+"$/, 'an RSA key in 255-byte character-strings');
  assert.match(one('mp2026e._domainkey.example.org', 'TXT').targets[0]!, /^v=DKIM1; k=ed25519; p=/);
  assert.deepEqual(one('example.net._report._dmarc.example.org', 'TXT').targets, ['v=DMARC1']);
  assert.deepEqual(one('_smtp._tls.example.net', 'TXT').targets, ['v=TLSRPTv1; rua=mailto:TLS-Reports@example.net']);
  assert.deepEqual(one('mail.example.org', 'A').targets, ['203.0.113.25', '198.51.100.7']);
  assert.deepEqual(one('mail.example.org', 'AAAA').targets, ['2001:db8::25', '2001:db8:0:1::']);
  assert.deepEqual(one('_submission._tcp.example.net', 'SRV').targets, ['10 1 587 mail.example.org.'], 'the Service port, not the loopback listener');
  assert.deepEqual(one('_submissions._tcp.example.net', 'SRV').targets, ['0 1 465 mail.example.org.']);
  assert.ok(all.every((e) => e.recordTTL === 300));
  // the MTA-STS id announced is the digest of the policy mailplane serves
  const policy = JSON.parse(await cliOnRendered(ms, ['dns', '--format', 'json'])).mtaSts;
  assert.match(policy.policy, /mode: enforce\r\nmx: mail\.example\.org\r\nmax_age: 129600\r\n/);
  assert.deepEqual(one('_mta-sts.example.org', 'TXT').targets, [`v=STSv1; id=${createHash('sha256').update(policy.policy).digest('hex').slice(0, 32)}`]);
  for (const m of findAll(ms, 'DNSEndpoint')) assert.equal(m.metadata.labels['dns-zone-owner'], 'mail');
});

test('dns.externalDns: defaults, a host name outside the domains, the Service ports of the values, and nothing without it', { skip }, async () => {
  const set = {
    'config.hostname': 'mx1.provider.example',
    'config.domains': ['example.com'],
    'config.dns': { addresses: ['192.0.2.1', '::ffff:c000:202', '2001:0db8:0000:0000:0001:0000:0000:0001'] },
    'service.ports': { mx: 25, submission: 1587, submissions: 1465 },
    'dns.externalDns.enabled': true,
  };
  const ms = render({ set });
  const chart = chartZones(ms);
  assert.deepEqual(dashed(chart), await cliZones(ms, true));
  assert.deepEqual(
    chart.map((z) => z.zone),
    ['example.com', 'mx1.provider.example'],
  );
  const host = chart[1]!.endpoints;
  assert.deepEqual(
    host.map((e) => [e.recordType, e.targets]),
    [
      ['TXT', ['v=spf1 a -all']],
      ['A', ['192.0.2.1', '192.0.2.2']],
      ['AAAA', ['2001:db8::1:0:0:1']],
    ],
  );
  const srv = chart[0]!.endpoints.filter((e) => e.recordType === 'SRV').map((e) => e.targets[0]);
  assert.deepEqual(srv, ['0 1 1465 mx1.provider.example.', '10 1 1587 mx1.provider.example.']);
  // no submission listener: "not offered here" (target ".")
  const mxOnly = render({ set: { ...set, 'config.smtp.listeners': [{ name: 'mx', port: 2525, role: 'mx' }] } });
  assert.deepEqual(dashed(chartZones(mxOnly)), await cliZones(mxOnly, true));
  assert.ok(
    chartZones(mxOnly)[0]!
      .endpoints.filter((e) => e.recordType === 'SRV')
      .every((e) => e.targets[0] === '0 0 0 .'),
  );
  assert.deepEqual(findAll(render(), 'DNSEndpoint'), []);
});

test('dns.externalDns: DKIM keys need their TXT values in the values; a bad value or domain is refused, saying why', { skip }, async () => {
  const values = ['addons-dns.yaml'];
  const missing = renderFailing({ values });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /config\.dkim\.keys names the key mp2026a of example\.org, but dns\.externalDns\.dkimRecords has no TXT value for it: Helm cannot read a public key out of the Secret/);
  const dkimRecords = await dkimRecordsOf(values);
  const cases: [unknown, RegExp][] = [
    [[{ ...dkimRecords[0], domain: 'example.com' }], /dkimRecords\[0\]: example\.com is not one of config\.domains/],
    [[{ ...dkimRecords[0], value: `"${dkimRecords[0]!.value}"` }], /dkimRecords\/0\/value|give the TXT value itself/],
  ];
  for (const [records, message] of cases) {
    const r = renderFailing({ values, set: { 'dns.externalDns.dkimRecords': records } });
    assert.notEqual(r.code, 0, JSON.stringify(records));
    assert.match(r.stderr, message);
  }
  // a key published before it signs (a rotation): its record is there too, after the configured ones
  const next = { domain: 'example.org', selector: 'mp2027a', value: dkimRecords[1]!.value };
  const ms = render({ values, set: { 'dns.externalDns.dkimRecords': [...dkimRecords, next] } });
  const names = chartZones(ms)[0]!.endpoints.map((e) => e.dnsName);
  assert.deepEqual(
    names.filter((n) => n.includes('_domainkey')),
    ['mp2026a._domainkey.example.org', 'mp2026e._domainkey.example.org', 'mp2027a._domainkey.example.org'],
  );
  // an internationalized name the chart cannot convert
  const idn = renderFailing({ set: { 'config.domains': ['bücher.example'], 'dns.externalDns.enabled': true } });
  assert.match(idn.stderr, /non-ASCII letters.*punycode/);
});

test('dns.externalDns: the DNSEndpoints pass the external-dns CRD (schema and CEL rules), and the check catches what it must', { skip }, async () => {
  const values = ['addons-dns.yaml'];
  const ms = render({ values, set: { 'dns.externalDns.dkimRecords': await dkimRecordsOf(values) } });
  const endpoints = findAll(ms, 'DNSEndpoint');
  assert.equal(endpoints.length, 3);
  assert.deepEqual(await validateManifests(endpoints.map((manifest) => ({ source: 'addons-dns.yaml', manifest }))), []);
  const broken = structuredClone(endpoints[0]!);
  broken.spec.endpoints[0].recordTypo = 'MX';
  broken.spec.endpoints[1].recordType = 'SPF';
  broken.spec.endpoints.find((e: any) => e.recordType === 'SRV').targets = ['0 1 465 mail.example.org'];
  broken.spec.endpoints[2].recordTTL = -1;
  const problems = await validateManifests([{ source: 'self-check', manifest: broken }]);
  for (const want of [
    /endpoints\[0\]: must NOT have additional properties \(recordTypo\)/,
    /endpoints\[1\]\.recordType: must be equal to one of the allowed values/,
    /SRV targets must be/,
    /endpoints\[2\]\.recordTTL: must be >= 0/,
  ]) {
    assert.ok(
      problems.some((p) => want.test(p)),
      `${want}:\n${problems.join('\n')}`,
    );
  }
});

/** GET on 127.0.0.1:port with a Host header of our choosing (what an ingress controller sends). */
function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The listeners and the ops endpoint of a rendered config moved to free loopback ports, the data dir to a temp one. */
async function loopbackSet(dataDir: string): Promise<{ set: Record<string, unknown>; ports: { mx: number; ops: number } }> {
  const [mx, ops] = (await freePorts(2)) as [number, number];
  return {
    ports: { mx, ops },
    set: {
      'config.smtp.listeners': [{ name: 'mx', address: '127.0.0.1', port: mx, role: 'mx', tls: 'starttls' }],
      'config.smtp.drainGrace': '2s',
      'config.observability.listen': `0.0.0.0:${ops}`,
      'config.storage.dataDir': dataDir,
    },
  };
}

/** mailplane run as the pod runs it, in the pod's file layout; the ops endpoint moved to loopback (the kubelet is not here). */
async function runPod(pod: PodFiles, ops: number, opts: { uid?: number; gid?: number } = {}): Promise<{ stop: () => Promise<number | null>; logs: () => string }> {
  const config = pod.configFile;
  writeFileSync(config, readFileSync(config, 'utf8').replace(`listen: 0.0.0.0:${ops}`, `listen: 127.0.0.1:${ops}`));
  const child = spawn(process.execPath, [BIN, 'run', ...pod.args, '--recheck', '0'], { cwd: pod.root, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let logs = '';
  child.stdout.on('data', (d) => (logs += d));
  child.stderr.on('data', (d) => (logs += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mailplane exited ${child.exitCode}:\n${logs}`);
    const ok = await fetch(`http://127.0.0.1:${ops}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`mailplane not ready:\n${logs}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    logs: () => logs,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

test('mtaSts.ingress: only /.well-known/mta-sts.txt of every mta-sts.<domain>, to the ops port, where the running server serves the policy DNS announces', { skip }, async () => {
  const dataDir = join(tempDir('mta-sts'), 'data');
  const { set, ports } = await loopbackSet(dataDir);
  const ms = render({
    values: ['minimal.yaml'],
    set: {
      ...set,
      'config.domains': ['example.net', 'Example.ORG'],
      'config.mtaSts': { mode: 'enforce', maxAge: '14d' },
      'dns.externalDns.enabled': true,
      'mtaSts.ingress': { enabled: true, className: 'nginx', annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' } },
    },
  });
  assert.deepEqual(await validateManifests(ms.map((manifest) => ({ source: 'mta-sts', manifest }))), []);
  const ingress = find(ms, 'Ingress');
  assert.equal(ingress.spec.ingressClassName, 'nginx');
  assert.equal(ingress.metadata.annotations['cert-manager.io/cluster-issuer'], 'letsencrypt');
  assert.deepEqual(ingress.spec.tls, [{ hosts: ['mta-sts.example.net', 'mta-sts.example.org'], secretName: 'mail-mailplane-mta-sts-tls' }]);
  const svc = find(ms, 'Service', 'mail-mailplane-mta-sts');
  for (const rule of ingress.spec.rules) {
    assert.deepEqual(rule.http.paths, [{ path: '/.well-known/mta-sts.txt', pathType: 'Exact', backend: { service: { name: 'mail-mailplane-mta-sts', port: { name: 'http' } } } }], 'that path only');
  }
  assert.equal(svc.spec.type, 'ClusterIP');
  assert.deepEqual(svc.spec.ports, [{ name: 'http', port: 80, targetPort: ports.ops, protocol: 'TCP' }]);
  const sts = find(ms, 'StatefulSet');
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(sts.spec.template.metadata.labels[k], v);
  // the ingress controller may reach the ops port (a policy of its own, added to the chart's)
  const np = find(ms, 'NetworkPolicy', 'mail-mailplane-mta-sts');
  assert.deepEqual(np.spec.ingress, [{ ports: [{ port: ports.ops, protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }] }]);
  assert.deepEqual(np.spec.policyTypes, ['Ingress']);

  // what the Ingress sends on: the policy, for each host; the id of the DNSEndpoints matches it
  const mp = await runPod(podFiles(ms), ports.ops);
  try {
    const ids = chartZones(ms).flatMap((z) => z.endpoints.filter((e) => e.dnsName.startsWith('_mta-sts.')).flatMap((e) => e.targets));
    assert.equal(ids.length, 2);
    for (const rule of ingress.spec.rules) {
      const r = await get(ports.ops, rule.http.paths[0].path, rule.host);
      assert.equal(r.status, 200, `${rule.host}: ${r.body}`);
      assert.equal(r.body, 'version: STSv1\r\nmode: enforce\r\nmx: mail.example.net\r\nmax_age: 1209600\r\n');
      for (const id of ids) assert.equal(id, `v=STSv1; id=${createHash('sha256').update(r.body).digest('hex').slice(0, 32)}`);
    }
    assert.equal((await get(ports.ops, '/.well-known/mta-sts.txt', 'mta-sts.example.com')).status, 404, 'not one of our domains');
  } finally {
    assert.equal(await mp.stop(), 0, mp.logs());
  }

  // hosts of your own must be mta-sts.<one of ours>; the ingress controller must be named when the policy is on
  const bad = renderFailing({ values: ['minimal.yaml'], set: { 'mtaSts.ingress': { enabled: true, hosts: ['mta-sts.example.com'] } } });
  assert.match(bad.stderr, /mtaSts\.ingress\.hosts: mta-sts\.example\.com is not mta-sts\.<one of config\.domains>/);
  const closed = renderFailing({ values: ['minimal.yaml'], set: { 'mtaSts.ingress': { enabled: true, from: [] } } });
  assert.match(closed.stderr, /mtaSts\.ingress\.from: name the ingress controller/);
  const open = render({ values: ['minimal.yaml'], set: { 'mtaSts.ingress': { enabled: true, from: [] }, 'networkPolicy.enabled': false } });
  assert.deepEqual(findAll(open, 'NetworkPolicy'), []);
  assert.equal(find(open, 'Ingress').spec.rules[0].host, 'mta-sts.example.net');
});

// ---- every add-on at once ----

test('with every add-on: helm lint, the Kubernetes schemas and CRDs, mailplane validate on the rendered config; none of them rolls the mailplane pods', { skip }, async () => {
  const values = ['addons-all.yaml'];
  const lint = helm(['lint', '--strict', CHART, '-f', IMAGE_VALUES, '-f', join(HELM_FIXTURES, values[0]!)]);
  assert.equal(lint.code, 0, lint.stdout + lint.stderr);
  const ms = render({ values });
  const kinds = ms.map((m) => `${m.kind}/${m.metadata.name}`).sort();
  for (const k of [
    'DNSEndpoint/mail-mailplane-dns-example-net',
    'DNSEndpoint/mail-mailplane-dns-example-org',
    'Ingress/mail-mailplane-mta-sts',
    'Deployment/mail-mailplane-rspamd',
    'Deployment/mail-mailplane-redis',
    'PersistentVolumeClaim/mail-mailplane-redis',
    'ConfigMap/mail-mailplane-dovecot',
    'NetworkPolicy/mail-mailplane-dovecot',
    'NetworkPolicy/mail-mailplane-to-rspamd',
  ]) {
    assert.ok(kinds.includes(k), `${k} not in ${kinds.join(', ')}`);
  }
  assert.deepEqual(await validateManifests(ms.map((manifest) => ({ source: values[0]!, manifest }))), []);
  const pod = podFiles(ms);
  const r = await mailplane(['validate', pod.configFile]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // the add-ons' settings in the config the pods get
  const cfg = configOf(ms);
  assert.deepEqual(cfg.inbound.spamFilter, { timeout: '10s', onError: 'tempfail', type: 'rspamd', url: 'http://mail-mailplane-rspamd.mail.svc:11333' });
  assert.deepEqual(cfg.storage, { dataDir: '/var/lib/mailplane', mailboxGroup: 10001, mailboxMode: { files: '0640', folders: '2770' } });
  assert.deepEqual(cfg.mailboxes, { dovecot: { passwdFile: '/var/lib/mailplane/dovecot/passwd' } });
  // the add-ons' own settings never touch the mailplane pods: their config is reloaded or their own pods roll
  const template = (set: Record<string, unknown>) => find(render({ values, set }), 'StatefulSet').spec.template;
  const base = template({});
  for (const set of [
    { 'rspamd.files': { 'local.d/x.conf': 'y = 1;' } },
    { 'rspamd.enabled': false, 'rspamd.existingUrl': 'http://rspamd.antispam.svc:11333' },
    { 'mailboxes.dovecot.extraConfig': 'mail_debug = yes' },
    { 'dns.externalDns.enabled': false },
    { 'mtaSts.ingress.enabled': false },
  ]) {
    assert.deepEqual(template(set), base, JSON.stringify(set));
  }
  assert.notDeepEqual(template({ 'mailboxes.dovecot.enabled': false }), base, 'only adding Dovecot rolls them (a container)');
});

// ---- rspamd ----

/** The Rspamd config files of a rendering, as mounted at /etc/rspamd: path → content. */
function rspamdFiles(ms: readonly Manifest[]): Record<string, string> {
  const deploy = find(ms, 'Deployment', 'mail-mailplane-rspamd');
  const volume = deploy.spec.template.spec.volumes.find((v: any) => v.name === 'config');
  return volumeFiles(ms, {}, volume)!;
}

const unshare = spawnSync('sh', ['-c', 'command -v unshare && command -v rspamadm && command -v ip'], { encoding: 'utf8' }).status === 0;
const rspamadmSkip = skip || (process.getuid?.() !== 0 ? 'not root (unshare)' : !unshare ? 'rspamadm, unshare or ip missing' : false);
if (rspamadmSkip && !skip) {
  if (process.env.CI) throw new Error(`the chart's Rspamd config cannot be checked in CI: ${rspamadmSkip}`);
  console.warn(`\n*** SKIPPED LOUDLY: ${rspamadmSkip}; the chart's Rspamd config is not checked by rspamadm ***\n`);
}

test('rspamd: Rspamd and Redis with their own config, the spamFilter pointed at the normal worker, NetworkPolicies mailplane → Rspamd → Redis', { skip }, async () => {
  const ms = render({ values: ['minimal.yaml'], set: { 'rspamd.enabled': true, 'config.inbound.spamFilter': { maxSize: '10MB' } } });
  assert.deepEqual(await validateManifests(ms.map((manifest) => ({ source: 'rspamd', manifest }))), []);
  const fullname = 'mail-mailplane';
  const rspamd = find(ms, 'Deployment', `${fullname}-rspamd`);
  const redis = find(ms, 'Deployment', `${fullname}-redis`);
  const rspamdSvc = find(ms, 'Service', `${fullname}-rspamd`);
  const redisSvc = find(ms, 'Service', `${fullname}-redis`);
  const sts = find(ms, 'StatefulSet');
  const podLabels = (d: Manifest) => d.spec.template.metadata.labels;
  const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

  // mailplane scans at the Service of Rspamd's normal worker, whatever else config says about it
  assert.deepEqual(configOf(ms).inbound.spamFilter, { maxSize: '10MB', type: 'rspamd', url: `http://${fullname}-rspamd.mail.svc:11333` });
  assert.deepEqual(rspamdSvc.spec.ports, [{ name: 'rspamd', port: 11333, targetPort: 'rspamd', protocol: 'TCP' }]);
  assert.deepEqual(rspamd.spec.template.spec.containers[0].ports, [{ name: 'rspamd', containerPort: 11333, protocol: 'TCP' }]);
  assert.ok(selects(rspamdSvc.spec.selector, podLabels(rspamd)));
  assert.ok(selects(redisSvc.spec.selector, podLabels(redis)));
  // no selector of one selects the pods of another
  for (const [selector, of] of [
    [sts.spec.selector.matchLabels, [rspamd, redis]],
    [find(ms, 'Service', fullname).spec.selector, [rspamd, redis]],
    [rspamdSvc.spec.selector, [sts, redis]],
    [redisSvc.spec.selector, [sts, rspamd]],
  ] as const) {
    for (const d of of) assert.ok(!selects(selector, podLabels(d)), `${JSON.stringify(selector)} selects ${d.kind}/${d.metadata.name}`);
  }
  // pinned upstream images, locked down, without root
  assert.match(rspamd.spec.template.spec.containers[0].image, /^rspamd\/rspamd:\d+\.\d+\.\d+@sha256:[0-9a-f]{64}$/);
  assert.match(redis.spec.template.spec.containers[0].image, /^redis:\d+\.\d+\.\d+-alpine@sha256:[0-9a-f]{64}$/);
  for (const d of [rspamd, redis]) {
    const pod = d.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(pod.containers[0].securityContext.capabilities, { drop: ['ALL'] });
  }
  assert.equal(redis.spec.strategy.type, 'Recreate');
  assert.equal(find(ms, 'PersistentVolumeClaim').metadata.name, `${fullname}-redis`);

  // the config: Redis of the chart, the normal worker on every address, nothing that reaches beyond what it must
  const files = rspamdFiles(ms);
  assert.deepEqual(Object.keys(files).sort(), [
    'local.d/dkim_signing.conf',
    'local.d/fuzzy_check.conf',
    'local.d/redis.conf',
    'local.d/url_redirector.conf',
    'override.d/worker-controller.inc',
    'override.d/worker-normal.inc',
    'override.d/worker-proxy.inc',
  ]);
  assert.match(files['local.d/redis.conf']!, new RegExp(`^servers = "${redisSvc.metadata.name}:${redisSvc.spec.ports[0].port}";$`, 'm'));
  assert.match(files['override.d/worker-normal.inc']!, /^bind_socket = "0\.0\.0\.0:11333";$/m);

  // NetworkPolicies: Rspamd from mailplane only, Redis from Rspamd only and to nowhere
  const np = (name: string) => find(ms, 'NetworkPolicy', name);
  assert.ok(selects(np(`${fullname}-rspamd`).spec.podSelector.matchLabels, podLabels(rspamd)));
  assert.deepEqual(np(`${fullname}-rspamd`).spec.ingress, [{ ports: [{ port: 11333, protocol: 'TCP' }], from: [{ podSelector: { matchLabels: sts.spec.selector.matchLabels } }] }]);
  assert.ok(selects(np(`${fullname}-redis`).spec.podSelector.matchLabels, podLabels(redis)));
  assert.deepEqual(np(`${fullname}-redis`).spec.ingress, [{ ports: [{ port: 6379, protocol: 'TCP' }], from: [{ podSelector: { matchLabels: rspamdSvc.spec.selector } }] }]);
  assert.deepEqual(np(`${fullname}-redis`).spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(np(`${fullname}-redis`).spec.egress, []);
  assert.deepEqual(
    findAll(ms, 'NetworkPolicy')
      .map((n) => n.metadata.name)
      .filter((n) => n.includes('to-rspamd')),
    [],
    'mailplane egress is not limited: nothing to add',
  );
  const limited = render({ values: ['minimal.yaml'], set: { 'rspamd.enabled': true, 'networkPolicy.egress': [{ ports: [{ port: 53, protocol: 'UDP' }] }] } });
  const to = find(limited, 'NetworkPolicy', `${fullname}-to-rspamd`);
  assert.deepEqual(to.spec.policyTypes, ['Egress']);
  assert.ok(selects(to.spec.podSelector.matchLabels, podLabels(sts)));
  assert.deepEqual(to.spec.egress, [{ ports: [{ port: 11333, protocol: 'TCP' }], to: [{ podSelector: { matchLabels: rspamdSvc.spec.selector } }] }]);

  // rspamd.files: one added, one of the chart's removed; the Rspamd pods roll, mailplane's do not
  const custom = render({ values: ['minimal.yaml'], set: { 'rspamd.enabled': true, 'rspamd.files': { 'local.d/fuzzy_check.conf': null, 'local.d/actions.conf': 'reject = 20;\n' } } });
  const customFiles = rspamdFiles(custom);
  assert.equal(customFiles['local.d/fuzzy_check.conf'], undefined);
  assert.equal(customFiles['local.d/actions.conf'], 'reject = 20;\n');
  assert.notEqual(
    find(custom, 'Deployment', `${fullname}-rspamd`).spec.template.metadata.annotations['mailplane.dev/rspamd-config'],
    rspamd.spec.template.metadata.annotations['mailplane.dev/rspamd-config'],
  );
  assert.deepEqual(find(custom, 'StatefulSet').spec.template, sts.spec.template);
  // no Redis claim without persistence
  assert.deepEqual(findAll(render({ values: ['minimal.yaml'], set: { 'rspamd.enabled': true, 'rspamd.redis.persistence.enabled': false } }), 'PersistentVolumeClaim'), []);

  // an Rspamd of your own: only the URL; both, or a URL in config besides, are refused
  const own = render({ values: ['minimal.yaml'], set: { 'rspamd.existingUrl': 'http://rspamd.antispam.svc:11333/' } });
  assert.deepEqual(findAll(own, 'Deployment'), []);
  assert.deepEqual(configOf(own).inbound.spamFilter, { type: 'rspamd', url: 'http://rspamd.antispam.svc:11333' });
  for (const [set, message] of [
    [{ 'rspamd.enabled': true, 'rspamd.existingUrl': 'http://x:11333' }, /rspamd: set rspamd\.enabled .* or rspamd\.existingUrl .*, not both/],
    [
      { 'rspamd.enabled': true, 'config.inbound.spamFilter': { type: 'rspamd', url: 'http://127.0.0.1:11333' } },
      /config\.inbound\.spamFilter\.url: "http:\/\/127\.0\.0\.1:11333", but rspamd\.enabled sets it/,
    ],
    [{ 'config.inbound.spamFilter': { timeout: '5s' } }, /config\.inbound\.spamFilter: give its url/],
    [{ 'rspamd.files': { 'etc/passwd': 'x' } }, /'etc\/passwd' does not match pattern/],
  ] as const) {
    const r = renderFailing({ values: ['minimal.yaml'], set });
    assert.notEqual(r.code, 0, JSON.stringify(set));
    assert.match(r.stderr, message);
  }
  // and mailplane takes the rendered config
  const v = await mailplane(['validate', podFiles(ms).configFile]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
});

test("rspamd: Debian's rspamadm takes the chart's config (no network: its own namespace), with the workers and modules it says", { skip: rspamadmSkip }, () => {
  const ms = render({ values: ['minimal.yaml'], set: { 'rspamd.enabled': true } });
  const dir = tempDir('rspamd-conf');
  for (const [path, content] of Object.entries(rspamdFiles(ms))) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    // the only change: Redis's Service name, which nothing resolves here, as an address
    writeFileSync(join(dir, path), content.replace(/servers = "[^"]+";/, 'servers = "127.0.0.1:6379";'));
  }
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
  // a network namespace with loopback only, and a resolv.conf naming it: nothing leaves the machine
  const run = (args: string) =>
    spawnSync(
      'unshare',
      ['-nm', 'sh', '-c', `mount --bind ${dir}/resolv.conf /etc/resolv.conf && ip link set lo up && rspamadm --var=LOCAL_CONFDIR=${dir} --var=DBDIR=${dir} ${args} -c /etc/rspamd/rspamd.conf`],
      { encoding: 'utf8' },
    );
  const test = run('configtest -s');
  assert.equal(test.status, 0, test.stdout + test.stderr);
  assert.match(test.stdout, /syntax OK/);
  const workers = run('configdump -j worker');
  assert.equal(workers.status, 0, workers.stderr);
  const dump = workers.stdout.split(/\n(?=\{)/).map((j) => JSON.parse(j));
  const worker = (name: string) => dump.find((d) => d[name])?.[name];
  assert.equal(worker('normal').bind_socket, '0.0.0.0:11333');
  assert.equal(worker('controller').bind_socket, '127.0.0.1:11334');
  assert.equal(worker('rspamd_proxy').enabled, false);
  const modules = run('configdump -m');
  assert.equal(modules.status, 0, modules.stderr);
  const disabled = /Modules disabled \(explicitly\): (.*)/.exec(modules.stdout)?.[1]?.split(', ') ?? [];
  for (const m of ['fuzzy_check', 'url_redirector', 'dkim_signing']) assert.ok(disabled.includes(m), `${m} not disabled: ${modules.stdout}`);
  const enabled = /Modules enabled: (.*)/.exec(modules.stdout)?.[1]?.split(', ') ?? [];
  for (const m of ['rbl', 'spf', 'dkim', 'dmarc', 'ratelimit', 'greylist']) assert.ok(enabled.includes(m), `${m} not enabled: ${modules.stdout}`);
});

// ---- mailboxes.dovecot ----

const dovecotConf = (ms: readonly Manifest[]) => find(ms, 'ConfigMap', 'mail-mailplane-dovecot').data['dovecot.conf'] as string;
const dovecotContainer = (ms: readonly Manifest[]) => find(ms, 'StatefulSet').spec.template.spec.containers.find((c: any) => c.name === 'dovecot');

/** The settings of a Dovecot config: its lines without comments and blank lines. */
const settings = (conf: string) =>
  conf
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() && !l.trim().startsWith('#'));

const doveconf = spawnSync('sh', ['-c', 'command -v doveconf'], { encoding: 'utf8' }).status === 0;
const doveconfSkip = skip || (doveconf ? false : 'doveconf missing (apt-get install dovecot-core)');
if (doveconfSkip && !skip) {
  if (process.env.CI) throw new Error('doveconf is required in CI (Debian package dovecot-core)');
  console.warn("\n*** SKIPPED LOUDLY: doveconf missing; the chart's dovecot.conf is not checked ***\n");
}

test('mailboxes.dovecot: dovecot.conf is the blocks of docs/dovecot.md with the pod’s paths and ids, and Debian’s doveconf takes it', { skip: doveconfSkip }, () => {
  const ms = render({ values: ['minimal.yaml'], set: { 'mailboxes.dovecot.enabled': true } });
  const conf = dovecotConf(ms);
  const lines = settings(conf);
  const contains = (block: string[]) => lines.some((_, i) => block.every((l, j) => lines[i + j] === l));
  // store maildir: the passwd-file at the chart's default (the docs' own path), `vmail` being the pod's user and group
  const maildir = settings(docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (maildir store").replaceAll('vmail', 'mailplane'));
  assert.ok(contains(maildir), `the maildir block of docs/dovecot.md is not in dovecot.conf:\n${maildir.join('\n')}\n---\n${conf}`);
  // IMAPS and POP3S: the certificate where the pod mounts `tls`
  const tls = settings(docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (ports moved").replaceAll('</etc/mailplane/tls.', '</etc/mailplane/tls/tls.'));
  assert.ok(contains(tls), `the TLS block of docs/dovecot.md is not in dovecot.conf:\n${tls.join('\n')}\n---\n${conf}`);

  const dir = tempDir('doveconf');
  const cert = serverCert('mail.example.net');
  writeFileSync(join(dir, 'tls.crt'), cert.certPem);
  writeFileSync(join(dir, 'tls.key'), cert.keyPem);
  writeFileSync(join(dir, 'dovecot.conf'), conf.replaceAll('/etc/mailplane/tls/', `${dir}/`));
  const r = spawnSync('doveconf', ['-n', '-c', join(dir, 'dovecot.conf')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warnings');
  assert.match(r.stdout, /^protocols = " imap pop3"$/m);
  assert.match(r.stdout, /^mail_uid = mailplane$/m);

  // without POP3, and with settings of your own (Sieve, say): still a config Dovecot takes
  const imapOnly = render({
    values: ['minimal.yaml'],
    set: { 'mailboxes.dovecot': { enabled: true, pop3: false, extraConfig: 'mail_max_userip_connections = 20\nprotocol imap {\n  mail_max_userip_connections = 30\n}' } },
  });
  writeFileSync(join(dir, 'dovecot.conf'), dovecotConf(imapOnly).replaceAll('/etc/mailplane/tls/', `${dir}/`));
  const r2 = spawnSync('doveconf', ['-n', '-c', join(dir, 'dovecot.conf')], { encoding: 'utf8' });
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /^protocols = " imap"$/m);
  assert.doesNotMatch(r2.stdout, /pop3/);
  assert.match(r2.stdout, /mail_max_userip_connections = 30/);
});

test('mailboxes.dovecot: a Dovecot container over the data volume, IMAPS/POP3S on the Service and in a NetworkPolicy, and what cannot work refused', { skip }, async () => {
  const ms = render({ values: ['minimal.yaml'], set: { 'mailboxes.dovecot.enabled': true, 'mailboxes.dovecot.from': [{ ipBlock: { cidr: '192.0.2.0/24' } }] } });
  assert.deepEqual(await validateManifests(ms.map((manifest) => ({ source: 'dovecot', manifest }))), []);
  const sts = find(ms, 'StatefulSet');
  const pod = sts.spec.template.spec;
  assert.equal(pod.containers[0].name, 'mailplane');
  const c = dovecotContainer(ms);
  assert.match(c.image, /^dovecot\/dovecot:2\.3\.[0-9.]+@sha256:[0-9a-f]{64}$/);
  const mount = (container: any, name: string) => container.volumeMounts.find((m: any) => m.name === name);
  // the same data volume at the same path (homes in the passwd-file are absolute), the same certificate
  assert.equal(mount(c, 'data').mountPath, mount(pod.containers[0], 'data').mountPath);
  assert.equal(mount(c, 'tls').mountPath, '/etc/mailplane/tls');
  assert.equal(mount(c, 'dovecot-config').mountPath, '/etc/dovecot');
  assert.equal(mount(c, 'dovecot-config').subPath, undefined, 'reloaded in place: no subPath');
  assert.deepEqual(
    c.ports.map((p: any) => [p.name, p.containerPort]),
    [
      ['imaps', 993],
      ['pop3s', 995],
    ],
  );
  // root for the master only, with the capabilities to start its processes as other users
  assert.equal(c.securityContext.runAsUser, 0);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  const writable = c.volumeMounts.filter((m: any) => !m.readOnly).map((m: any) => m.mountPath);
  assert.deepEqual(writable.sort(), ['/run/dovecot', '/tmp', '/var/lib/dovecot', '/var/lib/mailplane']);
  // names for the pod's ids in its /etc/passwd and /etc/group, from an init container
  const init = pod.initContainers.find((x: any) => x.name === 'dovecot-users');
  assert.equal(init.image, c.image);
  assert.match(init.command[2], /echo 'mailplane:x:10001:' >> \/users\/group/);
  assert.match(init.command[2], /echo 'mailplane:x:10001:10001:/);
  assert.equal(init.securityContext.runAsNonRoot, true);
  const svc = find(ms, 'Service', 'mail-mailplane');
  assert.deepEqual(
    svc.spec.ports.slice(-2).map((p: any) => [p.name, p.port, p.targetPort]),
    [
      ['imaps', 993, 993],
      ['pop3s', 995, 995],
    ],
  );
  const np = find(ms, 'NetworkPolicy', 'mail-mailplane-dovecot');
  assert.deepEqual(np.spec.ingress, [
    {
      ports: [
        { port: 993, protocol: 'TCP' },
        { port: 995, protocol: 'TCP' },
      ],
      from: [{ ipBlock: { cidr: '192.0.2.0/24' } }],
    },
  ]);
  // the config the server gets, and takes
  const cfg = configOf(ms);
  assert.deepEqual(cfg.storage.mailboxGroup, 10001);
  assert.deepEqual(cfg.mailboxes.dovecot.passwdFile, '/var/lib/mailplane/dovecot/passwd');
  const v = await mailplane(['validate', podFiles(ms).configFile]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const imapOnly = render({ values: ['minimal.yaml'], set: { 'mailboxes.dovecot': { enabled: true, pop3: false, servicePorts: { imaps: 10993 } } } });
  assert.deepEqual(
    find(imapOnly, 'Service', 'mail-mailplane')
      .spec.ports.slice(-1)
      .map((p: any) => [p.name, p.port, p.targetPort]),
    [['imaps', 10993, 993]],
  );
  assert.deepEqual(find(imapOnly, 'NetworkPolicy', 'mail-mailplane-dovecot').spec.ingress, [{ ports: [{ port: 993, protocol: 'TCP' }] }]);

  const cases: [Record<string, unknown>, RegExp][] = [
    [{ replicas: 2 }, /keep replicas: 1/],
    [{ 'config.accounts': { type: 'ldap', ldap: { url: 'ldap://ldap.example.net', userBase: 'ou=people,dc=example,dc=net' } } }, /accounts\.type: ldap/],
    [{ 'config.mailboxes': { store: 'lmtp', lmtp: { address: '127.0.0.1:24' } } }, /config\.mailboxes\.store: lmtp, but the Dovecot of mailboxes\.dovecot reads the Maildirs/],
    [{ 'config.mailboxes': { dovecot: { passwdFile: '/etc/dovecot/passwd' } } }, /must be an absolute path in the data volume/],
    [{ 'config.storage.mailboxGroup': 'vmail' }, /config\.storage\.mailboxGroup: vmail, but with mailboxes\.dovecot it is the pod's fsGroup \(10001\)/],
    [{ 'podSecurityContext.fsGroup': null }, /podSecurityContext needs runAsUser and fsGroup/],
    [{ 'config.smtp.listeners': [{ name: 'imaps', port: 2993, role: 'submission', tls: 'implicit' }] }, /the listener imaps takes the Service port name of Dovecot's imaps/],
  ];
  for (const [set, message] of cases) {
    const r = renderFailing({ values: ['minimal.yaml'], set: { ...set, 'mailboxes.dovecot.enabled': true } });
    assert.notEqual(r.code, 0, `accepted: ${JSON.stringify(set)}`);
    assert.match(r.stderr, message, JSON.stringify(set));
  }
});

/** IMAPS: LOGIN, then BODY[] of the newest message of INBOX; null when the login is refused. */
async function imapFetchLast(port: number, user: string, password: string): Promise<string | null> {
  const c = await imapLogin(port, user, password, { servername: 'mail.example.net' });
  if (!c) return null;
  try {
    const exists = await c.count();
    return exists === 0 ? '' : (await c.fetch(exists)).toString('latin1');
  } finally {
    c.close();
  }
}

/** The certificate IMAPS presents. */
async function imapsCertificate(port: number): Promise<string> {
  const w = await Wire.connect(port, { servername: 'mail.example.net' });
  const fp = (w.socket as TLSSocket).getPeerX509Certificate()!.fingerprint256;
  w.socket.destroy();
  return fp;
}

const dovecotRunSkip =
  skip ||
  (process.getuid?.() !== 0
    ? 'the tests do not run as root (Dovecot starts its processes as other users)'
    : !existsSync('/usr/sbin/dovecot') || !existsSync('/usr/lib/dovecot/pop3')
      ? 'Dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)'
      : spawnSync('sh', ['-c', 'command -v setpriv && command -v useradd && command -v userdel']).status !== 0
        ? 'setpriv, useradd or userdel missing'
        : false);
if (dovecotRunSkip && !skip) {
  if (process.env.CI) throw new Error(`the chart's Dovecot cannot be run in CI: ${dovecotRunSkip}`);
  console.warn(`\n*** SKIPPED LOUDLY: ${dovecotRunSkip}; the chart's Dovecot container is not run ***\n`);
}

test(
  "mailboxes.dovecot: the pod's two containers as they run, with the container's capabilities only: mail in over SMTP, read over IMAPS and POP3S; a user added, a renewed certificate, a clean stop",
  { skip: dovecotRunSkip },
  async () => {
    // the pod's user and group: a test account standing for runAsUser/fsGroup (named `mailplane` in the container)
    const account = 'mptest-helm-pod';
    let created = false;
    if (spawnSync('id', [account]).status !== 0) {
      const r = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', account], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      created = true;
    }
    const uid = Number(spawnSync('id', ['-u', account], { encoding: 'utf8' }).stdout);
    const gid = Number(spawnSync('id', ['-g', account], { encoding: 'utf8' }).stdout);
    const stops: (() => Promise<void>)[] = [];
    try {
      const [mx, ops, imaps, pop3s] = (await freePorts(4)) as [number, number, number, number];
      const base = tempDir('pod-dovecot');
      chmodSync(base, 0o755);
      // the data volume as the kubelet gives it with fsGroup: the pod's group, setgid, group-writable
      const dataDir = join(base, 'data');
      mkdirSync(dataDir);
      chownSync(dataDir, 0, gid);
      chmodSync(dataDir, 0o2775);
      const values = (users: { name: string; passwordHash: string }[]) => ({
        'config.smtp.listeners': [{ name: 'mx', address: '127.0.0.1', port: mx, role: 'mx', tls: 'starttls' }],
        'config.smtp.drainGrace': '2s',
        'config.observability.listen': `0.0.0.0:${ops}`,
        'config.storage.dataDir': dataDir,
        'config.accounts.local.users': users,
        podSecurityContext: { runAsUser: uid, runAsGroup: gid, fsGroup: gid },
        'mailboxes.dovecot.enabled': true,
        'mailboxes.dovecot.reloadCheckSeconds': 1,
      });
      const alice = { name: 'alice', passwordHash: USERS.alice.hash, aliases: ['postmaster'] };
      const ms = render({ values: ['minimal.yaml'], set: values([alice]) });
      const pod = podFiles(ms);
      chmodSync(pod.root, 0o755);

      // the Dovecot container's files where the test can have them: its mounts under the pod's root,
      // its ports on loopback, the test account for `mailplane`
      const c = dovecotContainer(ms);
      const at = (mountPath: string) => join(pod.root, mountPath);
      const moved = (text: string) =>
        text
          .replaceAll('/etc/dovecot', at('/etc/dovecot'))
          .replaceAll('/etc/mailplane/tls', at('/etc/mailplane/tls'))
          .replaceAll('/run/dovecot', at('/run/dovecot'))
          .replaceAll('/var/lib/dovecot', at('/var/lib/dovecot'))
          .replaceAll(/= mailplane$/gm, `= ${account}`)
          .replace('port = 993', `port = ${imaps}`)
          .replace('port = 995', `port = ${pop3s}`);
      const dovecotFiles = (manifests: readonly Manifest[]) => {
        const volume = find(manifests, 'StatefulSet').spec.template.spec.volumes.find((v: any) => v.name === 'dovecot-config');
        const files = volumeFiles(manifests, {}, volume)!;
        return { 'dovecot.conf': `${moved(files['dovecot.conf']!)}listen = 127.0.0.1\n`, 'run.sh': moved(files['run.sh']!) };
      };
      writeAtomic(at('/etc/dovecot'), dovecotFiles(ms));
      for (const m of c.volumeMounts) {
        const v = find(ms, 'StatefulSet').spec.template.spec.volumes.find((x: any) => x.name === m.name);
        if (v?.emptyDir && m.name !== 'dovecot-users') {
          mkdirSync(at(m.mountPath), { recursive: true });
          chownSync(at(m.mountPath), 0, gid);
          chmodSync(at(m.mountPath), 0o2777);
        }
      }

      const mp = await runPod(pod, ops, { uid, gid });
      stops.push(async () => assert.equal(await mp.stop(), 0, mp.logs()));
      const passwd = join(dataDir, 'dovecot', 'passwd');
      for (let i = 0; !existsSync(passwd); i++) {
        assert.ok(i < 100, `mailplane wrote no ${passwd}:\n${mp.logs()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const st = statSync(passwd);
      assert.equal(st.mode & 0o777, 0o640);
      assert.equal(st.gid, gid, 'the group Dovecot reads it through');

      // Dovecot as the container starts it: root with only the capabilities the chart adds
      const caps = (c.securityContext.capabilities.add as string[]).map((x) => `+${x.toLowerCase()}`).join(',');
      const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
      const dovecot = spawn('setpriv', [`--bounding-set=-all,${caps}`, '--inh-caps=-all', '/bin/sh', at('/etc/dovecot/run.sh')], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let dlog = '';
      dovecot.stdout.on('data', (d) => (dlog += d));
      dovecot.stderr.on('data', (d) => (dlog += d));
      const dovecotExit = new Promise<number | null>((r) => dovecot.once('exit', (code) => r(code)));
      stops.unshift(async () => {
        if (dovecot.exitCode !== null) return;
        dovecot.kill('SIGTERM');
        const stopped = await Promise.race([dovecotExit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
        const pidFile = at('/run/dovecot/master.pid');
        if (!stopped && existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      });
      for (let i = 0; !(await accepts(imaps)); i++) {
        assert.ok(i < 100 && dovecot.exitCode === null, `Dovecot does not listen:\n${dlog}`);
        await new Promise((r) => setTimeout(r, 100));
      }

      // mail in over SMTP, to an alias; read over IMAPS and POP3S with the password of mailserver.yaml
      const message =
        'From: <sender@example.com>\r\nTo: <postmaster@example.net>\r\nSubject: through the pod\r\nMessage-ID: <pod-1@example.com>\r\n\r\nHello from SMTP,\r\n.a dot\r\nread over IMAP.\r\n';
      const { client } = await SmtpClient.connect({ port: mx });
      await client.ehlo();
      const sent = await client.send('sender@example.com', ['postmaster@example.net'], message);
      assert.equal(sent.data?.code, 250, JSON.stringify(sent));
      await client.cmd('QUIT');
      let body: string | null = '';
      for (let i = 0; body === '' && i < 50; i++) {
        body = await imapFetchLast(imaps, 'alice', USERS.alice.password);
        if (body === '') await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(body?.endsWith(message), `IMAP FETCH BODY[]:\n${body}\n${dlog}`);
      assert.ok((await pop3Retr(pop3s, 'alice', USERS.alice.password, { servername: 'mail.example.net' })).toString('latin1').endsWith(message));
      assert.equal(await imapFetchLast(imaps, 'alice', 'wrong-password'), null);

      // a user added in the values: the ConfigMap swapped, mailplane rewrites the passwd-file, Dovecot lets bob in
      assert.equal(await imapFetchLast(imaps, 'bob', USERS.bob.password), null);
      const ms2 = render({ values: ['minimal.yaml'], set: values([alice, { name: 'bob', passwordHash: USERS.bob.hash }]) });
      const config = find(ms2, 'StatefulSet').spec.template.spec.volumes.find((v: any) => v.name === 'config');
      const files = volumeFiles(ms2, {}, config)!;
      writeAtomic(pod.volumes.get('config')!.dir, { [Object.keys(files)[0]!]: Object.values(files)[0]!.replace(`listen: 0.0.0.0:${ops}`, `listen: 127.0.0.1:${ops}`) });
      let bob: string | null = null;
      for (let i = 0; bob === null && i < 100; i++) {
        bob = await imapFetchLast(imaps, 'bob', USERS.bob.password);
        if (bob === null) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(bob, '', `bob logs in (an empty INBOX):\n${mp.logs()}`);

      // cert-manager renews the certificate: the kubelet swaps the Secret's files, the container reloads Dovecot
      const before = await imapsCertificate(imaps);
      const renewed = serverCert('mail.example.net');
      writeAtomic(pod.volumes.get('tls')!.dir, { 'tls.crt': renewed.certPem, 'tls.key': renewed.keyPem });
      const want = new X509Certificate(renewed.certPem).fingerprint256;
      let now = before;
      for (let i = 0; now !== want && i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        now = await imapsCertificate(imaps);
      }
      assert.notEqual(before, want);
      assert.equal(now, want, `the renewed certificate is served:\n${dlog}`);
      assert.match(dlog, /the certificate or dovecot\.conf changed: doveadm reload/);

      // the kubelet stops the container: SIGTERM, and Dovecot stops with it
      dovecot.kill('SIGTERM');
      assert.equal(await dovecotExit, 0, dlog);
      assert.ok(!(await accepts(imaps)), 'Dovecot stopped');
    } finally {
      for (const stop of stops) await stop();
      if (created) {
        spawnSync('userdel', [account]);
        spawnSync('groupdel', [account]);
      }
    }
  },
);
