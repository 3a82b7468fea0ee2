// The chart in production (issue 24), rendered by the real pinned helm and checked against the
// Kubernetes schemas: the memory limit against what the config can need (defaults fit, too little
// is refused with the formula), replicas only with a shared mailbox store, no PDB that blocks
// drains, a required image, pod template labels that a chart upgrade leaves alone, volume claim
// templates as the API server returns them, a self-signed certificate that is the same on every
// render, the ServiceMonitor's instance as the pod, runbook links, and the operator's values
// (init and extra containers, lifecycle, startup probe, DNS, ServiceAccount, volume claim
// retention, ownership fix, per-listener NetworkPolicy sources, egress from the config, a second
// Service for submission).
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { CHART, find, findAll, helmOrSkip, render, renderFailing } from './helpers/helm.js';
import { validateManifests, type Manifest } from './helpers/k8s-validate.js';
import { tempDir } from './helpers/tmp.js';

const skip = helmOrSkip() ? false : 'helm is not installed';
const statefulSet = (ms: readonly Manifest[]) => find(ms, 'StatefulSet');
const pod = (ms: readonly Manifest[]) => statefulSet(ms).spec.template.spec;
const mailplaneContainer = (ms: readonly Manifest[]) => pod(ms).containers.find((c: any) => c.name === 'mailplane');
const values = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8'));

/** Every manifest passes the Kubernetes schemas (unknown fields included). */
async function valid(label: string, ms: readonly Manifest[]): Promise<void> {
  assert.deepEqual(await validateManifests(ms.map((manifest) => ({ source: label, manifest }))), []);
}

function refused(set: Record<string, unknown>, message: RegExp, o: { noImage?: boolean } = {}): void {
  const r = renderFailing({ set, ...o });
  assert.notEqual(r.code, 0, `accepted: ${JSON.stringify(set)}`);
  assert.match(r.stderr, message, JSON.stringify(set));
  assert.equal(r.stdout, '', 'nothing is rendered');
}

test('memory: the default limit fits the default config; a limit below what the config can need is refused with the formula', { skip }, () => {
  // the defaults: 192Mi + storage.memoryBudget 64Mi + max(delivery.maxBytesInFlight 64Mi, smtp.maxMessageSize 25 MB) = 320Mi ≤ 512Mi
  assert.deepEqual(mailplaneContainer(render()).resources, values.resources);
  assert.equal(values.resources.limits.memory, '512Mi');
  assert.equal(values.resources.requests.memory, '160Mi', 'the request is about the measured idle RSS');
  const exactly = render({ set: { 'resources.limits.memory': '320Mi' } });
  assert.equal(mailplaneContainer(exactly).resources.limits.memory, '320Mi');
  refused(
    { 'resources.limits.memory': '319Mi' },
    /resources\.limits\.memory: 319Mi is below what this config can need, 320Mi = 192Mi for the runtime \+ storage\.memoryBudget \(64Mi\) \+ the larger of delivery\.maxBytesInFlight \(64Mi\) and smtp\.maxMessageSize \(24Mi\).*at least 320Mi/,
  );
  // a large message size: the one message that may go alone counts in full
  refused({ 'config.smtp.maxMessageSize': '500MB' }, /512Mi is below what this config can need, 733Mi = .*smtp\.maxMessageSize \(477Mi\)/);
  assert.ok(render({ set: { 'config.smtp.maxMessageSize': '500MB', 'resources.limits.memory': '1Gi' } }).length);
  // the budgets, as sizes or bytes, in other units
  refused({ 'config.delivery.maxBytesInFlight': '400MiB' }, /656Mi = 192Mi for the runtime \+ storage\.memoryBudget \(64Mi\) \+ the larger of delivery\.maxBytesInFlight \(400Mi\)/);
  refused({ 'config.storage.memoryBudget': 314572800, 'resources.limits.memory': '0.5Gi' }, /0\.5Gi is below what this config can need, 556Mi/);
  refused({ 'resources.limits.memory': '600M', 'config.smtp.maxMessageSize': '400MiB' }, /600M is below .* 656Mi/);
  refused({ 'resources.limits.memory': 'a lot' }, /resources\.limits\.memory: "a lot" is not a memory quantity/);
  refused({ 'resources.limits.memory': 268435456 }, /is below what this config can need, 320Mi/); // bytes, as a number
  assert.ok(render({ set: { 'resources.limits.memory': 536870912 } }).length);
  // no limit: nothing to check
  assert.equal(mailplaneContainer(render({ set: { 'resources.limits.memory': null, 'config.smtp.maxMessageSize': '2GB' } })).resources.limits?.memory, undefined);
});

test('replicas > 1 only with a mailbox store the replicas share (mailboxes.store: lmtp); a PDB that blocks every drain is refused', { skip }, () => {
  // (what else several replicas need, and their own checks: test/cluster-*.test.ts, _cluster.tpl)
  refused({ replicas: 2 }, /replicas: 2 .*mailboxes\.store: lmtp/);
  refused({ 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.minAvailable': 1 }, /podDisruptionBudget\.minAvailable: 1 with replicas: 1 lets no pod be evicted/);
  refused({ 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.minAvailable': '100%' }, /minAvailable: 100% with replicas: 1/);
  refused({ 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.maxUnavailable': 0 }, /podDisruptionBudget\.maxUnavailable: 0 lets no pod be evicted/);
  assert.equal(find(render({ set: { 'podDisruptionBudget.enabled': true } }), 'PodDisruptionBudget').spec.maxUnavailable, 1, 'the default lets the one pod be drained');
  assert.equal(find(render({ set: { 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.minAvailable': '50%' } }), 'PodDisruptionBudget').spec.minAvailable, '50%');
});

test('the image must be named: no public registry publishes it; the chart runs its entrypoint (mailplane) with the subcommand run', { skip }, () => {
  const dockerfile = readFileSync(join(CHART, '../../Dockerfile'), 'utf8');
  const cmd = JSON.parse(dockerfile.match(/^CMD (.*)$/m)![1]!) as string[];
  const args = mailplaneContainer(render()).args as string[];
  assert.deepEqual(args.slice(0, 3), cmd, 'the chart gives the same subcommand and config path as the image by default');
  assert.equal(mailplaneContainer(render()).command, undefined, "the image's entrypoint (tini, mailplane) stays");
  refused({}, /image\.repository: set it to the image you built from mailplane's Dockerfile.*docker build -t/, { noImage: true });
  assert.equal(values.image.repository, '');
  assert.equal(mailplaneContainer(render({ set: { 'image.repository': 'registry.example.com/mail/mailplane', 'image.tag': '1.2.3' } })).image, 'registry.example.com/mail/mailplane:1.2.3');
  assert.equal(mailplaneContainer(render({ set: { 'image.digest': `sha256:${'a'.repeat(64)}` } })).image, `registry.example.com/mailplane@sha256:${'a'.repeat(64)}`);
});

test('a chart upgrade leaves the pod template alone: no chart or app version in its labels', { skip }, () => {
  const before = render();
  const labels = statefulSet(before).spec.template.metadata.labels;
  assert.equal(labels['helm.sh/chart'], undefined);
  assert.equal(labels['app.kubernetes.io/version'], undefined);
  for (const [k, v] of Object.entries(statefulSet(before).spec.selector.matchLabels)) assert.equal(labels[k], v, 'the selector still matches');
  // the same chart with another version (and the image pinned, as a real upgrade would keep it)
  const bumped = join(tempDir('chart-bump'), 'mailplane');
  cpSync(CHART, bumped, { recursive: true });
  const chartYaml = join(bumped, 'Chart.yaml');
  writeFileSync(
    chartYaml,
    readFileSync(chartYaml, 'utf8')
      .replace(/^version: .*$/m, 'version: 9.9.9')
      .replace(/^appVersion: .*$/m, 'appVersion: "9.9.9"'),
  );
  const after = render({ chart: bumped, set: { 'image.tag': '0.1.0' } });
  assert.equal(find(after, 'Service', 'mail-mailplane').metadata.labels['helm.sh/chart'], 'mailplane-9.9.9', 'the other objects do carry it');
  assert.deepEqual(statefulSet(after).spec.template, statefulSet(render({ set: { 'image.tag': '0.1.0' } })).spec.template);
  // your own labels do reach the pods
  assert.equal(statefulSet(render({ set: { podLabels: { tier: 'edge' }, commonLabels: { team: 'mail' } } })).spec.template.metadata.labels.tier, 'edge');
});

test('volume claim templates carry apiVersion and kind; their retention policy is a value', { skip }, async () => {
  const ms = render({ set: { persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Delete' } } });
  const sts = statefulSet(ms);
  assert.equal(sts.spec.volumeClaimTemplates[0].apiVersion, 'v1');
  assert.equal(sts.spec.volumeClaimTemplates[0].kind, 'PersistentVolumeClaim');
  assert.deepEqual(sts.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Delete' });
  assert.equal(statefulSet(render()).spec.persistentVolumeClaimRetentionPolicy, undefined);
  await valid('retention', ms);
  // the resize runbook says what to do, since persistence.* is immutable in a StatefulSet
  const runbooks = readFileSync(join(CHART, '../../docs/runbooks.md'), 'utf8');
  assert.match(runbooks, /## Resize the data volume[\s\S]*kubectl -n mail patch pvc data-mail-mailplane-0[\s\S]*--cascade=orphan[\s\S]*helm upgrade/);
  assert.equal(sts.spec.volumeClaimTemplates[0].metadata.name, 'data');
  assert.equal(`${sts.spec.volumeClaimTemplates[0].metadata.name}-${sts.metadata.name}-0`, 'data-mail-mailplane-0', 'the claim the runbook names');
});

test('the self-signed certificate is the same on every render: a cert-manager self-signed Issuer, never Helm-made key material', { skip }, () => {
  const a = render();
  const b = render();
  const stable = (ms: readonly Manifest[]) => ms.filter((m) => !(m.kind === 'Secret' && m.metadata.name === 'mail-mailplane-ops-token'));
  assert.deepEqual(stable(a), stable(b));
  assert.ok(!findAll(a, 'Secret').some((s) => s.type === 'kubernetes.io/tls'), 'no TLS Secret rendered by Helm');
  assert.ok(!JSON.stringify(a).includes('PRIVATE KEY'));
  const issuer = find(a, 'Issuer');
  assert.deepEqual(issuer.spec, { selfSigned: {} });
  assert.deepEqual(find(a, 'Certificate').spec.issuerRef, { name: issuer.metadata.name, kind: 'Issuer', group: 'cert-manager.io' });
  // any issuer kind (external issuers have their own)
  const external = render({
    set: { 'tls.certManager.enabled': true, 'tls.certManager.issuerRef': { name: 'pca', kind: 'AWSPCAClusterIssuer', group: 'awspca.cert-manager.io' } },
  });
  assert.deepEqual(find(external, 'Certificate').spec.issuerRef, { name: 'pca', kind: 'AWSPCAClusterIssuer', group: 'awspca.cert-manager.io' });
  assert.deepEqual(findAll(external, 'Issuer'), []);
  // an existing Secret: no cert-manager objects at all
  const existing = render({ set: { 'tls.existingSecret': 'mail-tls' } });
  assert.deepEqual([...findAll(existing, 'Issuer'), ...findAll(existing, 'Certificate')], []);
});

test('monitoring: instance is the pod, the rules link their runbooks where you read them', { skip }, () => {
  const ms = render({
    set: {
      'monitoring.serviceMonitor.enabled': true,
      'monitoring.prometheusRule.enabled': true,
      'monitoring.prometheusRule.runbookBaseUrl': 'https://git.example.com/mail/mailplane/-/blob/main/docs/runbooks.md',
    },
  });
  const relabel = find(ms, 'ServiceMonitor').spec.endpoints[0].relabelings;
  assert.ok(relabel.some((r: any) => r.targetLabel === 'instance' && r.sourceLabels?.[0] === '__meta_kubernetes_pod_name'));
  const rules = find(ms, 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
  for (const r of rules) assert.equal(r.annotations.runbook_url, `https://git.example.com/mail/mailplane/-/blob/main/docs/runbooks.md#${r.alert.toLowerCase()}`);
  const plain = find(render({ set: { 'monitoring.prometheusRule.enabled': true } }), 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
  for (const r of plain) assert.equal(r.annotations.runbook_url, `docs/runbooks.md#${r.alert.toLowerCase()}`);
});

test("the operator's values: init and extra containers, lifecycle, startup probe, DNS, ServiceAccount, ownership fix", { skip }, async () => {
  const ms = render({
    set: {
      extraInitContainers: [{ name: 'wait-for-ldap', image: 'busybox:1.36', command: ['sh', '-c', 'until nc -z ldap 389; do sleep 1; done'] }],
      extraContainers: [{ name: 'log-shipper', image: 'fluent/fluent-bit:3.0' }],
      lifecycle: { preStop: { sleep: { seconds: 5 } } },
      startupProbe: { periodSeconds: 5, failureThreshold: 60 },
      dnsPolicy: 'None',
      dnsConfig: { nameservers: ['192.0.2.53'], options: [{ name: 'ndots', value: '1' }] },
      serviceAccount: { create: true, annotations: { 'iam.example.com/role': 'mail' } },
      'persistence.fixOwnership': true,
    },
  });
  const spec = pod(ms);
  const c = mailplaneContainer(ms);
  assert.deepEqual(
    spec.initContainers.map((i: any) => i.name),
    ['fix-ownership', 'wait-for-ldap'],
  );
  const fix = spec.initContainers[0];
  assert.equal(fix.image, c.image);
  assert.deepEqual(fix.volumeMounts, [{ name: 'data', mountPath: '/var/lib/mailplane' }]);
  assert.match(fix.command.join(' '), /find \/var\/lib\/mailplane .*-exec chown -h 10001:10001/);
  assert.deepEqual(fix.securityContext.capabilities, { drop: ['ALL'], add: ['CHOWN', 'DAC_READ_SEARCH'] });
  assert.ok(spec.containers.some((x: any) => x.name === 'log-shipper'));
  assert.deepEqual(c.lifecycle, { preStop: { sleep: { seconds: 5 } } });
  assert.deepEqual(c.startupProbe, { httpGet: { path: '/healthz', port: 'ops' }, periodSeconds: 5, failureThreshold: 60 });
  assert.equal(spec.dnsPolicy, 'None');
  assert.deepEqual(spec.dnsConfig.nameservers, ['192.0.2.53']);
  assert.equal(spec.serviceAccountName, 'mail-mailplane');
  assert.equal(spec.automountServiceAccountToken, false);
  const sa = find(ms, 'ServiceAccount');
  assert.equal(sa.metadata.annotations['iam.example.com/role'], 'mail');
  await valid('operator values', ms);
  // none of it by default
  const plain = pod(render());
  assert.equal(plain.initContainers, undefined);
  assert.equal(mailplaneContainer(render()).startupProbe, undefined);
  assert.equal(plain.serviceAccountName, undefined);
  assert.equal(pod(render({ set: { serviceAccountName: 'existing' } })).serviceAccountName, 'existing', 'the older value still works');
});

test('NetworkPolicy: port 25 public, submission from the offices only; egress derived from the config', { skip }, async () => {
  const offices = [{ ipBlock: { cidr: '198.51.100.0/24' } }];
  const ms = render({
    set: {
      'networkPolicy.listenerFrom': { submission: offices, submissions: offices },
      'networkPolicy.egressFromConfig': true,
      'config.relay': { enabled: true, host: '192.0.2.25', port: 465 },
      'config.delivery.dns.servers': ['192.0.2.53', '[2001:db8::53]:5353'],
      'config.accounts': { ldap: { url: 'ldaps://ldap.example.com', userBase: 'ou=people,dc=example,dc=com' } },
    },
  });
  const np = find(ms, 'NetworkPolicy');
  assert.deepEqual(np.spec.ingress.slice(0, 2), [{ ports: [{ port: 2525, protocol: 'TCP' }] }, { ports: [{ port: 2587, protocol: 'TCP' }], from: offices }]);
  assert.deepEqual(np.spec.ingress[2], { ports: [{ port: 2465, protocol: 'TCP' }], from: offices });
  assert.deepEqual(np.spec.policyTypes, ['Ingress', 'Egress']);
  const egress = np.spec.egress.map((r: any) => [r.ports.map((p: any) => `${p.port}/${p.protocol}`).join(','), (r.to ?? []).map((t: any) => t.ipBlock?.cidr ?? 'kube-dns').join(',')]);
  assert.deepEqual(egress, [
    ['53/UDP,53/TCP', 'kube-dns'],
    ['53/UDP,53/TCP', '192.0.2.53/32'],
    ['5353/UDP,5353/TCP', '2001:db8::53/128'],
    ['465/TCP', '192.0.2.25/32'],
    ['636/TCP', '0.0.0.0/0,::/0'],
  ]);
  // direct delivery: port 25 (and HTTPS for MTA-STS) anywhere
  const direct = find(render({ set: { 'networkPolicy.egressFromConfig': true } }), 'NetworkPolicy');
  assert.deepEqual(
    direct.spec.egress[1].ports.map((p: any) => p.port),
    [25, 443],
  );
  // and the rules you add come first
  const more = find(render({ set: { 'networkPolicy.egressFromConfig': true, 'networkPolicy.egress': [{ ports: [{ port: 6379, protocol: 'TCP' }] }] } }), 'NetworkPolicy');
  assert.equal(more.spec.egress[0].ports[0].port, 6379);
  await valid('network policy', [np, direct, more]);
});

test('an optional second Service for submission: those listeners leave the main Service', { skip }, async () => {
  const ms = render({
    set: {
      'service.submission': { enabled: true, type: 'LoadBalancer', annotations: { 'networking.example.com/internal': 'true' }, loadBalancerSourceRanges: ['198.51.100.0/24'] },
    },
  });
  const main = find(ms, 'Service', 'mail-mailplane');
  const second = find(ms, 'Service', 'mail-mailplane-submission');
  assert.deepEqual(
    main.spec.ports.map((p: any) => [p.name, p.port, p.targetPort]),
    [['mx', 25, 2525]],
  );
  assert.deepEqual(
    second.spec.ports.map((p: any) => [p.name, p.port, p.targetPort]),
    [
      ['submission', 587, 2587],
      ['submissions', 465, 2465],
    ],
  );
  assert.equal(second.spec.externalTrafficPolicy, 'Local');
  assert.deepEqual(second.spec.loadBalancerSourceRanges, ['198.51.100.0/24']);
  assert.equal(second.metadata.annotations['networking.example.com/internal'], 'true');
  assert.deepEqual(second.spec.selector, main.spec.selector);
  await valid('second service', ms);
  assert.deepEqual(
    findAll(render(), 'Service').map((s) => s.metadata.name),
    ['mail-mailplane-headless', 'mail-mailplane'],
  );
  refused({ 'service.submission': { enabled: true, listeners: ['nope'] } }, /service\.submission\.listeners: none of \[nope\]/);
});
