// The Helm chart, rendered by the real pinned helm: lint, Kubernetes schemas (unknown fields
// included), the rendered config accepted by `mailplane validate` with the files the pod mounts
// beside it, the values schema refusing a bad config, and the promises the chart makes: a config
// change never touches the pod template, the pod is locked down, the Service keeps client
// addresses, TLS, secrets and the ops token land where the config looks for them, and the
// NetworkPolicy (on by default) lets SMTP in from everyone and the ops port from Prometheus only;
// DKIM keys come from a Secret only, and a new one reaches the running server without a restart.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { BIN, mailplane } from './helpers/cli.js';
import { CHART, find, findAll, helm, helmOrSkip, HELM_FIXTURES, IMAGE_VALUES, render, renderFailing } from './helpers/helm.js';
import { validateManifests, type Labelled, type Manifest } from './helpers/k8s-validate.js';
import { podFiles, volumeFiles, writeAtomic, type Cluster, type PodFiles } from './helpers/pod-files.js';
import { freePorts } from './helpers/ports.js';
import { MailplaneProcess, USERS, type Env } from './helpers/server.js';
import { serverCert, testCa } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';

const skip = helmOrSkip() ? false : 'helm is not installed';
const FIXTURES = ['minimal.yaml', 'cert-manager.yaml', 'existing-secrets.yaml', 'ldap.yaml', 'monitoring.yaml', 'proxy-protocol.yaml', 'dkim.yaml'];
/** every way of rendering the chart that the tests check: the defaults and each values file */
const VARIANTS: { name: string; values: string[] }[] = [{ name: 'defaults', values: [] }, ...FIXTURES.map((f) => ({ name: f, values: [f] }))];

const server = serverCert('mail.example.com');
/** A DKIM private key as `mailplane dkim keygen` writes it (PKCS#8 PEM). */
const dkimKey = (type: 'rsa' | 'ed25519') =>
  (type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519')).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
/** Secrets the values files say exist in the cluster already. */
const CLUSTER: Cluster = {
  secrets: {
    'mail-example-com-tls': { 'tls.crt': server.certPem, 'tls.key': server.keyPem },
    'mail-users': { users: `# name:hash\nbob:${USERS.bob.hash}\n` },
    'relay-credentials': { password: 'relay-secret\n' },
    'ldap-ca': { 'ca.crt': testCa().certPem },
    'mail-ops': { 'bearer-token': 'ops-token-from-a-sealed-secret\n' },
    'mail-dkim': { 'example.org.mp2026a.key': dkimKey('rsa'), 'example.org.mp2026e.key': dkimKey('ed25519') },
  },
};

/** Plays cert-manager: issues each rendered Certificate into the Secret it names. */
function withIssuedCertificates(manifests: readonly Manifest[]): Cluster {
  const secrets: Record<string, Record<string, string>> = { ...CLUSTER.secrets };
  for (const c of findAll(manifests, 'Certificate')) {
    const cert = serverCert(c.spec.commonName);
    secrets[c.spec.secretName] = { 'tls.crt': cert.certPem, 'tls.key': cert.keyPem, 'ca.crt': testCa().certPem };
  }
  return { secrets };
}

const statefulSet = (ms: readonly Manifest[]) => find(ms, 'StatefulSet');
const container = (ms: readonly Manifest[]) => statefulSet(ms).spec.template.spec.containers[0];
const renderedConfig = (ms: readonly Manifest[]) => parseYaml(find(ms, 'ConfigMap', 'mail-mailplane-config').data['mailserver.yaml']);
const podVolume = (ms: readonly Manifest[], name: string) => statefulSet(ms).spec.template.spec.volumes.find((v: any) => v.name === name);
const podMount = (ms: readonly Manifest[], name: string) => container(ms).volumeMounts.find((m: any) => m.name === name);

test('helm lint --strict passes with the defaults and every values file', { skip }, () => {
  for (const v of VARIANTS) {
    const r = helm(['lint', '--strict', CHART, '-f', IMAGE_VALUES, ...v.values.flatMap((f) => ['-f', join(HELM_FIXTURES, f)])]);
    assert.equal(r.code, 0, `${v.name}:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

test('every rendered manifest passes the Kubernetes schemas, unknown fields included', { skip }, async () => {
  const all: Labelled[] = [];
  for (const v of VARIANTS) for (const manifest of render({ values: v.values })) all.push({ source: v.name, manifest });
  const kinds = new Set(all.map((l) => l.manifest.kind));
  for (const kind of ['StatefulSet', 'Service', 'ConfigMap', 'Secret', 'Certificate', 'ServiceMonitor', 'PrometheusRule', 'PodDisruptionBudget', 'NetworkPolicy']) {
    assert.ok(kinds.has(kind), `no values file renders a ${kind}`);
  }
  // the checker itself must catch a misspelt field and a wrong type, or passing means nothing
  const broken = structuredClone(all.find((l) => l.manifest.kind === 'StatefulSet')!.manifest);
  broken.spec.template.spec.containers[0].imagePullPolicyy = 'Always';
  broken.spec.serviceName = 3;
  const problems = await validateManifests([...all, { source: 'self-check', manifest: broken }]);
  const selfCheck = problems.filter((p) => p.startsWith('self-check'));
  assert.deepEqual(
    problems.filter((p) => !p.startsWith('self-check')),
    [],
  );
  assert.ok(
    selfCheck.some((p) => p.includes('spec.template.spec.containers[0].imagePullPolicyy') && p.includes('known properties')),
    selfCheck.join('\n'),
  );
  assert.ok(
    selfCheck.some((p) => p.includes('serviceName must be string')),
    selfCheck.join('\n'),
  );
});

test('the rendered mailserver.yaml passes mailplane validate with the files the pod mounts beside it', { skip }, async () => {
  const files = VARIANTS.map((v) => {
    const manifests = render({ values: v.values });
    return podFiles(manifests, withIssuedCertificates(manifests)).configFile;
  });
  const r = await mailplane(['validate', ...files]);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  for (const f of files) assert.ok(r.stdout.includes(`${f}: ok`), `${f} not ok:\n${r.stdout}`);
});

test('a bad config is refused by helm template through the values schema, as by mailplane validate', { skip }, async () => {
  const r = renderFailing({ values: ['bad-config.yaml'] });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /values don't meet the specifications of the schema/);
  assert.match(r.stderr, /\/config\/smtp\/listeners\/0'?: additional properties 'prot' not allowed/);
  assert.match(r.stderr, /\/config\/smtp\/listeners\/1\/port'?: got string, want integer/);
  assert.equal(r.stdout, '', 'nothing is rendered');
  // the same contract as the server's own validation
  const dir = tempDir('bad');
  const merged = { ...parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')).config, ...parseYaml(readFileSync(join(HELM_FIXTURES, 'bad-config.yaml'), 'utf8')).config };
  writeFileSync(join(dir, 'mailserver.yaml'), stringifyYaml(merged));
  const bad = await mailplane(['validate', join(dir, 'mailserver.yaml')]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout + bad.stderr, /smtp\.listeners\[0\]\.prot: unknown key 'prot'/);
  for (const [path, value, message] of [
    ['config.hostname', 'mail example com', /\/config\/hostname/],
    ['config.smtp.drainGrace', 'a while', /\/config\/smtp\/drainGrace/],
    ['config.relay', { enabled: true, hots: 'smtp.example.com' }, /additional properties 'hots' not allowed/],
    ['service.type', 'Ingress', /\/service\/type/],
    ['secretFiles', { 'relay-password': { value: 'x', existingSecret: 'y' } }, /\/secretFiles\/relay-password/],
    ['opsToken', { existingSecret: 'mail-ops', secret: 'x' }, /additional properties 'secret' not allowed/],
    ['opsToken.key', '', /\/opsToken\/key/],
  ] as const) {
    const res = renderFailing({ set: { [path]: value } });
    assert.notEqual(res.code, 0, `${path} = ${JSON.stringify(value)} was accepted`);
    assert.match(res.stderr, message);
  }
});

test('the chart refuses settings that cannot work in a pod, saying why', { skip }, () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ 'config.observability.listen': '127.0.0.1:9465' }, /loopback, so the kubelet's probes/],
    [{ 'config.smtp.listeners': [{ name: 'mx', port: 25, role: 'mx' }] }, /listener mx uses port 25.*without root.*service\.ports\.mx/],
    [{ 'config.smtp.listeners': null }, /list the listeners explicitly/],
    [{ 'config.storage.dataDir': './data' }, /must be an absolute path/],
    [{ 'config.smtp.drainGrace': '2m' }, /terminationGracePeriodSeconds \(60\) must be longer than config\.smtp\.drainGrace \(120s\)/],
    [{ 'persistence.existingClaim': 'mail', replicas: 2 }, /persistence\.existingClaim allows only 1 replica/],
    [{ 'tls.certManager.enabled': true }, /tls\.certManager\.issuerRef\.name/],
    [{ 'secretFiles.users': {} }, /secretFiles/],
    [{ 'config.observability.tokenFile': null }, /config\.observability\.tokenFile: set it to \.\.\/ops-token\/token.*MP_OPS_TOKEN/],
    [{ 'config.observability.tokenFile': '../secrets/ops-token' }, /"\.\.\/secrets\/ops-token" is not where the chart mounts the ops token.*opsToken\.existingSecret/],
  ];
  for (const [set, message] of cases) {
    const r = renderFailing({ set });
    assert.notEqual(r.code, 0, `accepted: ${JSON.stringify(set)}`);
    assert.match(r.stderr, message, JSON.stringify(set));
  }
  // and the same values with enough grace are fine
  assert.equal(statefulSet(render({ set: { 'config.smtp.drainGrace': '2m', terminationGracePeriodSeconds: 150 } })).spec.template.spec.terminationGracePeriodSeconds, 150);
});

test('a config change leaves the pod template alone (it reloads in place); an image change rolls the pods', { skip }, () => {
  const before = render({ values: ['minimal.yaml'] });
  const after = render({
    values: ['minimal.yaml'],
    set: {
      'config.domains': ['example.net', 'example.org'],
      'config.smtp.maxMessageSize': 52428800,
      'config.smtp.drainGrace': '50s',
      'config.smtp.listeners': [
        { name: 'mx', port: 2525, role: 'mx', tls: 'starttls' },
        { name: 'submission', port: 3587, role: 'submission', tls: 'starttls' },
      ],
      'config.accounts.local.users': [{ name: 'bob', passwordHash: USERS.bob.hash, aliases: ['postmaster'] }],
      'secretFiles.users': { value: `carol:${USERS.alice.hash}\n` },
    },
  });
  assert.notDeepEqual(renderedConfig(after), renderedConfig(before));
  assert.equal(renderedConfig(after).smtp.maxMessageSize, 52428800, 'large numbers survive the values round trip');
  assert.deepEqual(
    find(after, 'Service', 'mail-mailplane').spec.ports.map((p: any) => [p.name, p.port, p.targetPort]),
    [
      ['mx', 25, 2525],
      ['submission', 587, 3587],
    ],
  );
  const podBefore = statefulSet(before).spec.template;
  // secretFiles turns on the secrets volume: that is a pod change; compare with the same volumes
  const withSecrets = render({ values: ['minimal.yaml'], set: { 'secretFiles.users': { value: 'x:y\n' } } });
  assert.deepEqual(statefulSet(after).spec.template, statefulSet(withSecrets).spec.template);
  assert.deepEqual(statefulSet(render({ values: ['minimal.yaml'], set: { 'config.domains': ['example.org'] } })).spec.template, podBefore);
  for (const ms of [before, after]) {
    const t = statefulSet(ms).spec.template;
    assert.ok(!JSON.stringify(t.metadata.annotations ?? {}).includes('checksum'), 'no checksum annotation');
    for (const m of t.spec.containers[0].volumeMounts) assert.equal(m.subPath, undefined, `${m.name} mounted with subPath never updates`);
  }
  const newImage = render({ values: ['minimal.yaml'], set: { 'image.tag': '0.2.0' } });
  assert.notDeepEqual(statefulSet(newImage).spec.template, podBefore);
  assert.equal(container(newImage).image, 'registry.example.com/mailplane:0.2.0');
});

test('the pod runs without root on a read-only root filesystem with no capabilities, probed on the ops port', { skip }, () => {
  const ms = render({ values: ['monitoring.yaml'] });
  const pod = statefulSet(ms).spec.template.spec;
  const c = container(ms);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.equal(c.securityContext.capabilities.add, undefined);
  assert.equal(pod.automountServiceAccountToken, false);
  const opsPort = Number(renderedConfig(ms).observability.listen.split(':').pop());
  assert.deepEqual(c.ports, [{ name: 'ops', containerPort: opsPort, protocol: 'TCP' }]);
  assert.deepEqual([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.port], ['/healthz', 'ops']);
  assert.deepEqual([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.port], ['/readyz', 'ops']);
  assert.equal(pod.terminationGracePeriodSeconds, 90);
  assert.ok(pod.terminationGracePeriodSeconds > 45, 'longer than smtp.drainGrace');
  // writable places: the data volume and /tmp only
  const writable = c.volumeMounts.filter((m: any) => !m.readOnly).map((m: any) => m.mountPath);
  assert.deepEqual(writable.sort(), ['/tmp', '/var/lib/mailplane']);
  assert.deepEqual(c.env, [{ name: 'TZ', value: 'UTC' }]);
  assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  assert.equal(pod.tolerations[0].key, 'dedicated');
  assert.ok(pod.affinity.nodeAffinity);
  assert.deepEqual(c.resources.limits, { memory: '1Gi' });
});

test('the Service maps 25/587/465 to the listeners and keeps client addresses (Local), or takes them from the PROXY protocol', { skip }, () => {
  const ms = render();
  const svc = find(ms, 'Service', 'mail-mailplane');
  assert.equal(svc.spec.type, 'LoadBalancer');
  assert.equal(svc.spec.externalTrafficPolicy, 'Local');
  assert.deepEqual(
    svc.spec.ports.map((p: any) => [p.name, p.port, p.targetPort]),
    [
      ['mx', 25, 2525],
      ['submission', 587, 2587],
      ['submissions', 465, 2465],
    ],
  );
  assert.ok(!svc.spec.ports.some((p: any) => p.targetPort === 9465), 'the ops port (status, reload) is not on the public Service');
  for (const l of renderedConfig(ms).smtp.listeners) assert.equal(l.proxyProtocol, undefined);
  assert.equal(find(render({ set: { 'service.type': 'NodePort' } }), 'Service', 'mail-mailplane').spec.externalTrafficPolicy, 'Local');
  assert.equal(find(render({ values: ['existing-secrets.yaml'] }), 'Service', 'mail-mailplane').spec.externalTrafficPolicy, undefined, 'ClusterIP has none');

  const proxied = render({ values: ['proxy-protocol.yaml'] });
  const psvc = find(proxied, 'Service', 'mail-mailplane');
  assert.equal(psvc.spec.externalTrafficPolicy, 'Cluster');
  assert.equal(psvc.metadata.annotations['service.beta.kubernetes.io/aws-load-balancer-proxy-protocol'], '*');
  assert.deepEqual(
    renderedConfig(proxied).smtp.listeners.map((l: any) => [l.name, l.proxyProtocol]),
    [
      ['mx', true],
      ['submission', true],
      ['submissions', true],
      ['internal', false],
    ],
  );
  assert.deepEqual(
    psvc.spec.ports.find((p: any) => p.name === 'internal'),
    { name: 'internal', port: 588, targetPort: 2588, protocol: 'TCP' },
  );
});

test('storage: a volume claim per pod at dataDir by default, or an existing claim', { skip }, () => {
  const sts = statefulSet(render());
  assert.equal(sts.spec.volumeClaimTemplates[0].metadata.name, 'data');
  assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '10Gi');
  assert.ok(!sts.spec.template.spec.volumes.some((v: any) => v.name === 'data'));
  const mount = sts.spec.template.spec.containers[0].volumeMounts.find((m: any) => m.name === 'data');
  assert.equal(mount.mountPath, '/var/lib/mailplane');
  const moved = statefulSet(render({ set: { 'config.storage.dataDir': '/srv/mail' } }));
  assert.equal(moved.spec.template.spec.containers[0].volumeMounts.find((m: any) => m.name === 'data').mountPath, '/srv/mail');

  const shared = statefulSet(render({ values: ['existing-secrets.yaml'] }));
  assert.equal(shared.spec.volumeClaimTemplates, undefined);
  assert.deepEqual(
    shared.spec.template.spec.volumes.find((v: any) => v.name === 'data'),
    { name: 'data', persistentVolumeClaim: { claimName: 'mail-data' } },
  );
});

test('TLS: a self-signed certificate by default (a cert-manager self-signed Issuer), an existing Secret, or the Secret a cert-manager Certificate writes', { skip }, () => {
  const tlsVolume = (ms: readonly Manifest[]) => statefulSet(ms).spec.template.spec.volumes.find((v: any) => v.name === 'tls');

  const defaults = render({ values: ['minimal.yaml'] });
  const selfSigned = find(defaults, 'Certificate');
  assert.equal(selfSigned.spec.secretName, 'mail-mailplane-tls');
  assert.deepEqual(selfSigned.spec.dnsNames, ['mail.example.net']);
  assert.deepEqual(selfSigned.spec.issuerRef, { name: 'mail-mailplane-selfsigned', kind: 'Issuer', group: 'cert-manager.io' });
  assert.deepEqual(find(defaults, 'Issuer', 'mail-mailplane-selfsigned').spec, { selfSigned: {} });
  assert.equal(tlsVolume(defaults).secret.secretName, 'mail-mailplane-tls');
  // cert-manager issues it into the Secret the pod mounts, for the host name
  const issued = podFiles(defaults, withIssuedCertificates(defaults)).volumes.get('tls')!.files['tls.crt']!;
  assert.equal(new X509Certificate(issued).checkHost('mail.example.net'), 'mail.example.net');
  assert.deepEqual(
    render({ values: ['minimal.yaml'] }).filter((m) => m.kind !== 'Secret'),
    defaults.filter((m) => m.kind !== 'Secret'),
    'the same on every render',
  );

  const existing = render({ values: ['existing-secrets.yaml'] });
  assert.equal(tlsVolume(existing).secret.secretName, 'mail-example-com-tls');
  assert.deepEqual(findAll(existing, 'Certificate'), []);
  assert.deepEqual(findAll(existing, 'Secret'), [], 'every secret comes from the cluster');

  const managed = render({ values: ['cert-manager.yaml'] });
  const certificate = find(managed, 'Certificate');
  assert.equal(certificate.spec.secretName, tlsVolume(managed).secret.secretName);
  assert.deepEqual(certificate.spec.dnsNames, ['mail.example.org', 'smtp.example.org']);
  assert.deepEqual(certificate.spec.issuerRef, { name: 'letsencrypt-prod', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  assert.deepEqual(
    findAll(managed, 'Secret').map((x) => x.metadata.name),
    ['mail-mailplane-ops-token'],
    'cert-manager writes the TLS Secret, not Helm (Helm only makes the ops token)',
  );
  assert.equal(renderedConfig(managed).smtp.tls.certFile, '../tls/tls.crt');
});

test('secret files: from values into a chart Secret, or from existing Secrets, in one folder the config refers to', { skip }, () => {
  const ldap = render({ values: ['ldap.yaml'] });
  const pod = podFiles(ldap, withIssuedCertificates(ldap));
  const secrets = pod.volumes.get('secrets')!;
  assert.equal(secrets.dir, join(pod.root, '/etc/mailplane/secrets'));
  assert.deepEqual(Object.keys(secrets.files).sort(), ['ldap-bind-password', 'ldap-ca.crt']);
  assert.equal(secrets.files['ldap-bind-password'], 'bind-secret');
  const secretObjects = findAll(ldap, 'Secret').filter((s) => s.metadata.name === 'mail-mailplane-secrets');
  assert.deepEqual(Object.keys(secretObjects[0]!.data), ['ldap-bind-password']);
  assert.equal(renderedConfig(ldap).accounts.ldap.bindPasswordFile, '../secrets/ldap-bind-password');

  const existing = podFiles(render({ values: ['existing-secrets.yaml'] }), CLUSTER);
  assert.deepEqual(existing.volumes.get('secrets')!.files, { 'relay-password': 'relay-secret\n', users: CLUSTER.secrets!['mail-users']!.users });
  assert.throws(() => podFiles(render({ values: ['existing-secrets.yaml'] }), {}), /Secret mail-example-com-tls does not exist/);
});

test('DKIM keys: the Secret dkim.existingSecret as a read-only folder (0440) where privateKeyFile points, never from values; refused without it', { skip }, async () => {
  const ms = render({ values: ['dkim.yaml'] });
  assert.deepEqual(podVolume(ms, 'dkim'), { name: 'dkim', secret: { secretName: 'mail-dkim', defaultMode: 0o440 } }, 'the whole Secret: a key added to it arrives without a pod change');
  assert.deepEqual(podMount(ms, 'dkim'), { name: 'dkim', mountPath: '/etc/mailplane/dkim', readOnly: true });
  assert.equal(statefulSet(ms).spec.template.spec.securityContext.fsGroup, 10001, 'the files belong to the pod group (fsGroup), which reads them');
  assert.ok(!findAll(ms, 'Secret').some((x) => /dkim/.test(x.metadata.name)), 'the chart makes no Secret of DKIM keys');
  // where the server looks for each key is a file of the mounted Secret
  const pod = podFiles(ms, withIssuedCertificates(ms));
  const mounted = pod.volumes.get('dkim')!;
  assert.equal(mounted.dir, join(pod.root, '/etc/mailplane/dkim'));
  for (const k of renderedConfig(ms).dkim.keys) {
    const file = resolve(dirname(pod.configFile), k.privateKeyFile);
    assert.equal(dirname(file), mounted.dir);
    assert.equal(readFileSync(file, 'utf8'), CLUSTER.secrets!['mail-dkim']![basename(file)]);
  }
  const ok = await mailplane(['validate', pod.configFile]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.ok(ok.stdout.includes(`${pod.configFile}: ok`), ok.stdout);
  assert.ok(!(ok.stdout + ok.stderr).includes('PRIVATE KEY'), 'no key bytes printed');
  // a key the config names but the Secret lacks: the config is refused at that key
  const lacking = podFiles(ms, { secrets: { ...withIssuedCertificates(ms).secrets, 'mail-dkim': { 'example.org.mp2026a.key': CLUSTER.secrets!['mail-dkim']!['example.org.mp2026a.key']! } } });
  const bad = await mailplane(['validate', lacking.configFile]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout + bad.stderr, /dkim\.keys\[1\]\.privateKeyFile: file "\.\.\/dkim\/example\.org\.mp2026e\.key" does not exist/);

  // a rotation (a new selector in the config, its key added to the Secret) leaves the pod template alone
  const rotated = render({
    values: ['dkim.yaml'],
    set: { 'config.dkim.keys': [{ domain: 'example.org', selector: 'mp2026b', privateKeyFile: '../dkim/example.org.mp2026b.key' }] },
  });
  assert.deepEqual(statefulSet(rotated).spec.template, statefulSet(ms).spec.template);
  // no Secret, no volume; keys elsewhere (a secretFiles entry from a Secret) need none
  assert.equal(podVolume(render(), 'dkim'), undefined);
  assert.equal(podMount(render(), 'dkim'), undefined);
  const elsewhere = render({
    set: { 'config.dkim.keys': [{ domain: 'example.com', selector: 's1', privateKeyFile: '../secrets/dkim.key' }], 'secretFiles.dkim\\.key': { existingSecret: 'mail-dkim' } },
  });
  assert.equal(podVolume(elsewhere, 'dkim'), undefined);

  const key = (privateKeyFile: string) => ({ 'config.dkim.keys': [{ domain: 'example.com', selector: 'mp2026a', privateKeyFile }] });
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      key('../dkim/example.com.mp2026a.key'),
      /config\.dkim\.keys\[0\]\.privateKeyFile: "\.\.\/dkim\/example\.com\.mp2026a\.key" is in \/etc\/mailplane\/dkim.*none is given.*--from-file=example\.com\.mp2026a\.key.*set dkim\.existingSecret/,
    ],
    [key('/etc/mailplane/dkim/example.com.mp2026a.key'), /is in \/etc\/mailplane\/dkim.*set dkim\.existingSecret/],
    [{ ...key('../dkim/example.com/mp2026a.key'), 'dkim.existingSecret': 'mail-dkim' }, /in a folder below \/etc\/mailplane\/dkim.*use \.\.\/dkim\/<key>/],
    [
      { ...key('../secrets/dkim.key'), 'secretFiles.dkim\\.key': { value: '-----BEGIN PRIVATE KEY-----' } },
      /comes from secretFiles\.dkim\.key\.value, a private key in clear in the values.*dkim\.existingSecret/,
    ],
    [{ 'dkim.existingSecret': 3 }, /\/dkim\/existingSecret/],
    [{ 'dkim.privateKey': 'x' }, /additional properties 'privateKey' not allowed/],
  ];
  for (const [set, message] of cases) {
    const r = renderFailing({ set });
    assert.notEqual(r.code, 0, `accepted: ${JSON.stringify(set)}`);
    assert.match(r.stderr, message, JSON.stringify(set));
    assert.equal(r.stdout, '', 'nothing is rendered');
  }
});

test('the ops token: a random one in a chart Secret by default, or a Secret you manage, mounted as a folder where observability.tokenFile points', { skip }, async () => {
  const tokenVolume = (ms: readonly Manifest[]) => statefulSet(ms).spec.template.spec.volumes.find((v: any) => v.name === 'ops-token');
  const tokenMount = (ms: readonly Manifest[]) => container(ms).volumeMounts.find((m: any) => m.name === 'ops-token');

  const defaults = render();
  const secret = find(defaults, 'Secret', 'mail-mailplane-ops-token');
  assert.equal(secret.type, 'Opaque');
  const token = Buffer.from(secret.data.token, 'base64').toString('utf8');
  assert.match(token, /^[A-Za-z0-9]{48}$/, 'random, long, nothing to trim');
  assert.deepEqual(tokenMount(defaults), { name: 'ops-token', mountPath: '/etc/mailplane/ops-token', readOnly: true });
  assert.deepEqual(tokenVolume(defaults).secret, { secretName: 'mail-mailplane-ops-token', defaultMode: 0o440, items: [{ key: 'token', path: 'token' }] });
  assert.equal(renderedConfig(defaults).observability.tokenFile, '../ops-token/token');
  // where the server looks for it is where the pod has it
  const pod = podFiles(defaults, withIssuedCertificates(defaults));
  const file = resolve(dirname(pod.configFile), renderedConfig(defaults).observability.tokenFile);
  assert.equal(file, join(pod.volumes.get('ops-token')!.dir, 'token'));
  assert.ok(existsSync(file));
  assert.equal(readFileSync(file, 'utf8'), token);
  // the token is in no other object: not in the pod template either, so a new one never rolls the pods
  for (const m of defaults) {
    if (m !== secret) assert.ok(!JSON.stringify(m).includes(token) && !JSON.stringify(m).includes(secret.data.token), `${m.kind}/${m.metadata.name} holds the token`);
  }
  // `helm template` has no cluster to look the release's Secret up in (helm upgrade does, and
  // keeps the token): each render makes a new one, and nothing else changes
  const again = render();
  assert.notEqual(find(again, 'Secret', 'mail-mailplane-ops-token').data.token, secret.data.token);
  assert.deepEqual(statefulSet(again).spec.template, statefulSet(defaults).spec.template);
  // Prometheus scrapes /metrics without it
  const sm = find(render({ values: ['monitoring.yaml'] }), 'ServiceMonitor');
  assert.equal(sm.spec.endpoints[0].path, '/metrics');
  assert.equal(sm.spec.endpoints[0].authorization, undefined);
  assert.equal(sm.spec.endpoints[0].bearerTokenSecret, undefined);

  // a Secret you manage, under the key you say
  const existing = render({ values: ['existing-secrets.yaml'] });
  assert.deepEqual(findAll(existing, 'Secret'), [], 'the chart makes no token of its own');
  assert.deepEqual(tokenVolume(existing).secret, { secretName: 'mail-ops', defaultMode: 0o440, items: [{ key: 'bearer-token', path: 'token' }] });
  assert.deepEqual(tokenMount(existing), tokenMount(defaults));
  assert.equal(renderedConfig(existing).observability.tokenFile, '../ops-token/token');
  const mounted = podFiles(existing, CLUSTER);
  assert.deepEqual(mounted.volumes.get('ops-token')!.files, { token: 'ops-token-from-a-sealed-secret\n' });
  assert.deepEqual(tokenVolume(render({ set: { 'opsToken.existingSecret': 'mail-ops' } })).secret.items, [{ key: 'token', path: 'token' }], 'key defaults to token');
  assert.throws(() => podFiles(existing, { secrets: { ...CLUSTER.secrets, 'mail-ops': { token: 'x'.repeat(20) } } }), /Secret mail-ops has no key bearer-token/);

  const r = await mailplane(['validate', pod.configFile, mounted.configFile]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // mailplane checks the token you bring
  const short = podFiles(existing, { secrets: { ...CLUSTER.secrets, 'mail-ops': { 'bearer-token': 'short\n' } } });
  const bad = await mailplane(['validate', short.configFile]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout + bad.stderr, /observability\.tokenFile: the token must be at least 16 characters/);
});

test('NetworkPolicy, on by default: SMTP from everyone, the ops port from the monitoring namespace only; smtpFrom, opsFrom and egress as given', { skip }, async () => {
  const smtpPorts = [2525, 2587, 2465].map((port) => ({ port, protocol: 'TCP' }));
  const monitoring = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } };
  const defaults = render();
  const np = find(defaults, 'NetworkPolicy');
  const podLabels = statefulSet(defaults).spec.template.metadata.labels;
  for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels)) assert.equal(podLabels[k], v);
  assert.deepEqual(np.spec.policyTypes, ['Ingress'], 'egress is not restricted unless asked');
  assert.equal(np.spec.egress, undefined);
  assert.deepEqual(np.spec.ingress, [{ ports: smtpPorts }, { ports: [{ port: 9465, protocol: 'TCP' }], from: [monitoring] }]);
  // the ServiceMonitor's port is the one the policy opens to Prometheus
  const withMonitor = render({ set: { 'monitoring.serviceMonitor.enabled': true } });
  const headless = find(withMonitor, 'Service', 'mail-mailplane-headless');
  assert.equal(headless.spec.ports.find((p: any) => p.name === find(withMonitor, 'ServiceMonitor').spec.endpoints[0].port).port, np.spec.ingress[1].ports[0].port);

  // the policy follows the config: listeners and the ops port
  const moved = find(render({ values: ['proxy-protocol.yaml'], set: { 'config.observability.listen': '0.0.0.0:9100' } }), 'NetworkPolicy');
  assert.deepEqual(
    moved.spec.ingress[0].ports.map((p: any) => p.port),
    [2525, 2587, 2465, 2588],
  );
  assert.deepEqual(moved.spec.ingress[1].ports, [{ port: 9100, protocol: 'TCP' }]);

  // the values of before keep working: opsFrom (replaced whole), smtpFrom, egress
  const prometheus = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } };
  const custom = render({
    set: {
      'networkPolicy.smtpFrom': [{ ipBlock: { cidr: '0.0.0.0/0', except: ['192.0.2.0/24'] } }],
      'networkPolicy.opsFrom': [prometheus],
      'networkPolicy.egress': [{ ports: [{ port: 53, protocol: 'UDP' }] }],
    },
  });
  const cnp = find(custom, 'NetworkPolicy');
  assert.deepEqual(cnp.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(cnp.spec.ingress, [
    { ports: smtpPorts, from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['192.0.2.0/24'] } }] },
    { ports: [{ port: 9465, protocol: 'TCP' }], from: [prometheus] },
  ]);
  assert.deepEqual(cnp.spec.egress, [{ ports: [{ port: 53, protocol: 'UDP' }] }]);
  // opsFrom empty: no rule for the ops port, so only the node (the kubelet's probes) reaches it
  const closed = render({ set: { 'networkPolicy.opsFrom': [] } });
  assert.deepEqual(find(closed, 'NetworkPolicy').spec.ingress, [{ ports: smtpPorts }]);
  assert.deepEqual(findAll(render({ set: { 'networkPolicy.enabled': false } }), 'NetworkPolicy'), []);

  const problems = await validateManifests([...defaults, ...custom, ...closed].filter((m) => m.kind === 'NetworkPolicy').map((manifest, i) => ({ source: `policy ${i}`, manifest })));
  assert.deepEqual(problems, []);
});

test('existingConfigMap: the pod mounts a ConfigMap you manage, laid out by the config value', { skip }, async () => {
  const ms = render({ values: ['minimal.yaml'], set: { existingConfigMap: 'mail-config', configMapKey: 'server.yaml' } });
  assert.deepEqual(findAll(ms, 'ConfigMap'), [], 'the chart renders no config of its own');
  const pod = statefulSet(ms).spec.template.spec;
  assert.deepEqual(pod.volumes.find((v: any) => v.name === 'config').configMap, { name: 'mail-config', items: [{ key: 'server.yaml', path: 'server.yaml' }] });
  const own = stringifyYaml(parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')).config);
  const files = podFiles(ms, { ...withIssuedCertificates(ms), configMaps: { 'mail-config': { 'server.yaml': own } } });
  assert.equal(files.configFile, join(files.root, '/etc/mailplane/config/server.yaml'));
  const r = await mailplane(['validate', files.configFile]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

test('monitoring: ServiceMonitor on the headless ops port, the rules and dashboard files as objects, PDB, NetworkPolicy, common labels', { skip }, () => {
  const ms = render({ values: ['monitoring.yaml'] });
  const sm = find(ms, 'ServiceMonitor');
  const selected = findAll(ms, 'Service').filter((s) => Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v));
  assert.deepEqual(
    selected.map((s) => s.metadata.name),
    ['mail-mailplane-headless'],
  );
  assert.equal(selected[0]!.spec.ports.find((p: any) => p.name === sm.spec.endpoints[0].port).port, 9465);
  assert.equal(sm.metadata.labels.release, 'kube-prometheus-stack');
  assert.deepEqual(sm.spec.endpoints[0].relabelings, [
    { action: 'replace', targetLabel: 'job', replacement: 'mailplane' },
    { action: 'replace', sourceLabels: ['__meta_kubernetes_pod_name'], targetLabel: 'instance' },
  ]);

  const rule = find(ms, 'PrometheusRule');
  assert.deepEqual(rule.spec, parseYaml(readFileSync(join(CHART, 'rules/mailplane-alerts.yaml'), 'utf8')));

  const dashboard = find(ms, 'ConfigMap', 'mail-mailplane-dashboard');
  assert.equal(dashboard.metadata.labels.grafana_dashboard, '1');
  assert.equal(dashboard.metadata.namespace, 'monitoring');
  assert.equal(dashboard.metadata.annotations.grafana_folder, 'Mail');
  assert.deepEqual(JSON.parse(dashboard.data['mailplane.json']), JSON.parse(readFileSync(join(CHART, 'dashboards/mailplane.json'), 'utf8')));

  const podLabels = statefulSet(ms).spec.template.metadata.labels;
  const pdb = find(ms, 'PodDisruptionBudget');
  assert.equal(pdb.spec.maxUnavailable, 1);
  for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) assert.equal(podLabels[k], v);
  assert.equal(podLabels.tier, 'edge');

  const np = find(ms, 'NetworkPolicy');
  assert.deepEqual(np.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(
    np.spec.ingress[0].ports.map((p: any) => p.port),
    [2525, 2587, 2465],
  );
  assert.equal(np.spec.ingress[0].from, undefined, 'SMTP from anywhere');
  assert.deepEqual(np.spec.ingress[1].ports, [{ port: 9465, protocol: 'TCP' }]);
  assert.deepEqual(np.spec.ingress[1].from[0].namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': 'monitoring' });
  assert.equal(np.spec.egress.length, 2);

  for (const m of ms) {
    assert.equal(m.metadata.labels?.team, 'mail', `${m.kind}/${m.metadata.name} lacks commonLabels`);
    assert.equal(m.metadata.annotations?.owner, 'mail-team', `${m.kind}/${m.metadata.name} lacks commonAnnotations`);
  }
  // none of it without asking, but the NetworkPolicy, which is on by default
  const plain = render().map((m) => m.kind);
  for (const kind of ['ServiceMonitor', 'PrometheusRule', 'PodDisruptionBudget']) assert.ok(!plain.includes(kind), kind);
  assert.ok(plain.includes('NetworkPolicy'));
  assert.deepEqual(
    findAll(render(), 'Certificate').map((c) => c.spec.issuerRef.name),
    ['mail-mailplane-selfsigned'],
    'the self-signed certificate, from cert-manager',
  );
});

/** A server whose /status and /-/reload want the ops token: the test's own requests carry it. */
class WithToken extends MailplaneProcess {
  token = '';
  override async http(path: string, init: RequestInit = {}): Promise<Response> {
    return super.http(path, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${this.token}` } });
  }
}

/** In a pod the kubelet probes the ops port from outside; here the test is its only client. */
function loopbackOps(ms: Manifest[], ops: number): Manifest[] {
  const cm = find(ms, 'ConfigMap', 'mail-mailplane-config');
  cm.data['mailserver.yaml'] = cm.data['mailserver.yaml'].replace(`listen: 0.0.0.0:${ops}`, `listen: 127.0.0.1:${ops}`);
  return ms;
}

/** mailplane run as the pod runs it, in the pod's file layout, with the ops token of the pod's Secret. */
function runInPod(pod: PodFiles, dataDir: string, ports: Partial<Env['ports']> & { ops: number }): WithToken {
  const child = spawn(process.execPath, [BIN, 'run', ...pod.args, '--recheck', '0'], { cwd: pod.root, stdio: ['ignore', 'pipe', 'pipe'] });
  const env: Env = {
    dir: pod.root,
    dataDir,
    configFile: pod.configFile,
    certFile: '',
    keyFile: '',
    ports: { mx: 0, submission: 0, submissions: 0, plain: 0, spare: 0, dns: 0, ...ports },
  };
  const mp = new WithToken(child, env);
  mp.token = pod.volumes.get('ops-token')!.files.token!;
  return mp;
}

test("in the pod's file layout, a changed ConfigMap, a renewed certificate, a changed secret file and a new ops token reload without a restart", { skip }, async () => {
  const [mx, submission, submissions, ops] = await freePorts(4);
  const dataDir = join(tempDir('pod-data'), 'data');
  const values = (domains: string[], users: string) => ({
    'config.domains': domains,
    'config.smtp.listeners': [
      { name: 'mx', address: '127.0.0.1', port: mx, role: 'mx', tls: 'starttls' },
      { name: 'submission', address: '127.0.0.1', port: submission, role: 'submission', tls: 'starttls' },
      { name: 'submissions', address: '127.0.0.1', port: submissions, role: 'submission', tls: 'implicit' },
    ],
    'config.smtp.drainGrace': '2s',
    'config.observability.listen': `0.0.0.0:${ops}`,
    'config.storage.dataDir': dataDir,
    'config.accounts.local.usersFile': '../secrets/users',
    'secretFiles.users': { value: users },
  });
  const v1 = loopbackOps(render({ values: ['minimal.yaml'], set: values(['example.net'], `bob:${USERS.bob.hash}\n`) }), ops!);
  const pod = podFiles(v1, withIssuedCertificates(v1));
  const mp = runInPod(pod, dataDir, { mx: mx!, submission: submission!, submissions: submissions!, ops: ops! });
  const bare = (path: string, token?: string) => fetch(`http://127.0.0.1:${ops}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  try {
    await mp.waitReady();
    // the token of the chart's Secret guards /status; the probes and /metrics need none
    assert.equal((await bare('/status')).status, 401);
    assert.equal((await bare('/-/reload')).status, 401);
    for (const open of ['/healthz', '/readyz', '/metrics']) assert.equal((await bare(open)).status, 200, open);
    const s1 = await mp.status();
    assert.equal(s1.applied.generation, 1);
    assert.equal(s1.accounts.users, 2, 'alice from the config, bob from the users secret file');
    assert.deepEqual(
      s1.listeners.map((l: any) => [l.name, l.state]),
      [
        ['mx', 'serving'],
        ['submission', 'serving'],
        ['submissions', 'serving'],
      ],
    );

    // a GitOps commit: new values, same pod template, the kubelet swaps the ConfigMap's files
    const v2 = loopbackOps(render({ values: ['minimal.yaml'], set: values(['example.net', 'example.org'], `bob:${USERS.bob.hash}\n`) }), ops!);
    assert.deepEqual(statefulSet(v2).spec.template, statefulSet(v1).spec.template, 'nothing to roll');
    const volume = (ms: Manifest[], name: string) => statefulSet(ms).spec.template.spec.volumes.find((v: any) => v.name === name);
    writeAtomic(pod.volumes.get('config')!.dir, volumeFiles(v2, {}, volume(v2, 'config'))!);
    const s2 = await mp.waitFor('the new ConfigMap applied', async () => ((await mp.status()).applied.generation === 2 ? mp.status() : false));
    assert.deepEqual(s2.applied.domains, ['example.net', 'example.org']);

    // cert-manager renews the certificate into the Secret the pod mounts
    const renewed = serverCert('mail.example.net');
    writeAtomic(pod.volumes.get('tls')!.dir, { 'tls.crt': renewed.certPem, 'tls.key': renewed.keyPem });
    const s3 = await mp.waitFor('the renewed certificate applied', async () => ((await mp.status()).applied.generation === 3 ? mp.status() : false));
    assert.equal(s3.tls.fingerprint256, new X509Certificate(renewed.certPem).fingerprint256);
    assert.notEqual(s3.tls.fingerprint256, s1.tls.fingerprint256);

    // a user added to the users Secret
    const v3 = render({ values: ['minimal.yaml'], set: values(['example.net', 'example.org'], `bob:${USERS.bob.hash}\ncarol:${USERS.alice.hash}\n`) });
    writeAtomic(pod.volumes.get('secrets')!.dir, volumeFiles(v3, {}, volume(v3, 'secrets'))!);
    const s4 = await mp.waitFor('the new users file applied', async () => ((await mp.status()).accounts.users === 3 ? mp.status() : false));
    assert.equal(s4.applied.generation, 4);

    // a new token in the Secret (kubectl, an external secrets operator): in place, the old one stops working
    const old = mp.token;
    mp.token = 'renewed-ops-token-0123456789abcdef';
    writeAtomic(pod.volumes.get('ops-token')!.dir, { token: mp.token });
    const s5 = await mp.waitFor('the new token applied', async () => ((await mp.http('/status')).status === 200 ? mp.status() : false));
    assert.equal(s5.applied.generation, 5);
    assert.equal((await bare('/status', old)).status, 401);
    assert.ok(mp.running, 'the same process served every change');
  } finally {
    assert.equal(await mp.stop(), 0, mp.logs);
  }
});

test("in the pod's file layout, a new DKIM key in the Secret is signing without a restart", { skip }, async () => {
  const [mx, ops] = await freePorts(2);
  const dataDir = join(tempDir('pod-dkim'), 'data');
  const ms = loopbackOps(
    render({
      values: ['dkim.yaml'],
      set: {
        'config.smtp.listeners': [{ name: 'mx', address: '127.0.0.1', port: mx, role: 'mx', tls: 'starttls' }],
        'config.smtp.drainGrace': '2s',
        'config.observability.listen': `0.0.0.0:${ops}`,
        'config.storage.dataDir': dataDir,
      },
    }),
    ops!,
  );
  const pod = podFiles(ms, withIssuedCertificates(ms));
  const mp = runInPod(pod, dataDir, { mx: mx!, ops: ops! });
  const keys = async () => (await mp.status()).dkim.keys.map((k: any) => [k.selector, k.algorithm, k.fingerprint]);
  try {
    await mp.waitReady();
    const before = await keys();
    assert.deepEqual(
      before.map(([selector, algorithm]: string[]) => [selector, algorithm]),
      [
        ['mp2026a', 'rsa-sha256'],
        ['mp2026e', 'ed25519-sha256'],
      ],
    );
    // the Secret's RSA key replaced (kubectl apply, an external secrets operator): the kubelet swaps the folder
    const dkim = pod.volumes.get('dkim')!;
    writeAtomic(dkim.dir, { ...dkim.files, 'example.org.mp2026a.key': dkimKey('rsa') });
    const after = await mp.waitFor('the new key applied', async () => {
      const now = await keys();
      return now[0][2] !== before[0][2] ? now : false;
    });
    assert.deepEqual(after[1], before[1], 'the Ed25519 key is unchanged');
    assert.equal((await mp.status()).applied.generation, 2);
    assert.ok(mp.running, 'the same process');
  } finally {
    assert.equal(await mp.stop(), 0, mp.logs);
  }
});
