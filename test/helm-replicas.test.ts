// The Helm chart with several replicas (issue 23, docs/kubernetes.md "Several replicas"), rendered
// by the real pinned helm: the manifests pass the Kubernetes schemas, the rendered config passes
// `mailplane validate` with the files the pod mounts (the peer secret and the Redis password
// included), and the promises: the LMTP store and a Redis are required, the peer listener sits
// behind its own ClusterIP Service that only ready pods of the release back and only the release's
// pods may reach, config.cluster.peers.handoff names that Service, the preStop hook hands the
// queue over within a grace period long enough for it, the pods spread, and a PDB lets one go at a
// time. One replica renders none of it.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { mailplane } from './helpers/cli.js';
import { CHART, find, findAll, helm, helmOrSkip, render, renderFailing } from './helpers/helm.js';
import { validateManifests, type Labelled, type Manifest } from './helpers/k8s-validate.js';
import { podFiles, type Cluster } from './helpers/pod-files.js';

const skip = helmOrSkip() ? false : 'helm is not installed';

const LMTP = { store: 'lmtp', lmtp: { address: 'dovecot.mail.svc:24' } };
/** replicas 3 with the chart's Redis */
const WITH_CHART_REDIS = { replicas: 3, 'config.mailboxes': LMTP, 'cluster.redis.deploy.enabled': true };
/** replicas 2 with a Redis of one's own, its password in a Secret */
const WITH_OWN_REDIS = {
  replicas: 2,
  'config.mailboxes': LMTP,
  'config.cluster': { redis: { timeout: '200ms', keyPrefix: 'mail1:' } },
  'cluster.redis.url': 'rediss://redis.shared.svc:6380/2',
  'cluster.redis.existingSecret': 'shared-redis',
  'cluster.redis.key': 'redis-password',
};
const CLUSTER: Cluster = { secrets: { 'shared-redis': { 'redis-password': 'a-redis-password-of-our-own\n' } } };

const VARIANTS: { name: string; set: Record<string, unknown> }[] = [
  { name: 'chart redis', set: WITH_CHART_REDIS },
  { name: 'own redis', set: WITH_OWN_REDIS },
  // with the rest of the chart's add-ons and options around: the Rspamd Redis stays apart
  {
    name: 'chart redis + rspamd + egress + proxy protocol',
    set: { ...WITH_CHART_REDIS, 'rspamd.enabled': true, 'proxyProtocol.enabled': true, 'networkPolicy.egress': [{ ports: [{ port: 53, protocol: 'UDP' }] }] },
  },
];

const statefulSet = (ms: readonly Manifest[]) => find(ms, 'StatefulSet');
const podSpec = (ms: readonly Manifest[]) => statefulSet(ms).spec.template.spec;
const container = (ms: readonly Manifest[]) => podSpec(ms).containers.find((c: any) => c.name === 'mailplane');
const renderedConfig = (ms: readonly Manifest[]) => parseYaml(find(ms, 'ConfigMap', 'mail-mailplane-config').data['mailserver.yaml']);
const secretData = (ms: readonly Manifest[], name: string, key: string) => Buffer.from(find(ms, 'Secret', name).data[key], 'base64').toString('utf8');
const SELECTOR = { 'app.kubernetes.io/name': 'mailplane', 'app.kubernetes.io/instance': 'mail' };

test('helm lint --strict passes with several replicas', { skip }, () => {
  for (const v of VARIANTS) {
    const r = helm(['lint', '--strict', CHART, ...Object.entries(v.set).flatMap(([k, x]) => ['--set-json', `${k}=${JSON.stringify(x)}`])]);
    assert.equal(r.code, 0, `${v.name}:\n${r.stdout}${r.stderr}`);
  }
});

test('with several replicas every rendered manifest passes the Kubernetes schemas, unknown fields included', { skip }, async () => {
  const all: Labelled[] = [];
  for (const v of VARIANTS) for (const manifest of render({ set: v.set })) all.push({ source: v.name, manifest });
  assert.deepEqual(await validateManifests(all), []);
});

test('the rendered config with several replicas passes mailplane validate with the files the pod mounts', { skip }, async () => {
  const files = VARIANTS.map((v) => podFiles(render({ set: v.set }), CLUSTER));
  for (const f of files) {
    // the secrets land where config.cluster looks for them
    const cfg = parseYaml(readFileSync(f.configFile, 'utf8'));
    const dir = join(f.configFile, '..');
    const peer = f.volumes.get('cluster')!.files['peer-secret']!;
    assert.ok(peer.trim().length >= 16, 'the peer secret has at least 16 characters');
    assert.equal(join(dir, cfg.cluster.peers.secretFile), join(f.root, '/etc/mailplane/cluster/peer-secret'));
    assert.equal(join(dir, cfg.cluster.redis.passwordFile), join(f.root, '/etc/mailplane/cluster/redis-password'));
    assert.ok(f.volumes.get('cluster')!.files['redis-password']!.trim().length > 0);
  }
  const r = await mailplane(['validate', ...files.map((f) => f.configFile)]);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  for (const f of files) assert.ok(r.stdout.includes(`${f.configFile}: ok`), `${f.configFile} not ok:\n${r.stdout}`);
});

test('the peer listener: its own ClusterIP Service of ready pods, named by config.cluster.peers.handoff, reachable from the release only', { skip }, () => {
  const ms = render({ set: WITH_CHART_REDIS });
  const cfg = renderedConfig(ms);
  const peer = cfg.smtp.listeners.find((l: any) => l.role === 'peer');
  assert.deepEqual(peer, { name: 'peer', port: 2526, role: 'peer', tls: 'starttls', proxyProtocol: false });
  assert.equal(cfg.cluster.peers.handoff, 'mail-mailplane-smtp-peers.mail.svc:2525');
  const svc = find(ms, 'Service', 'mail-mailplane-smtp-peers');
  assert.equal(svc.spec.type, 'ClusterIP');
  assert.equal(svc.spec.publishNotReadyAddresses, false);
  assert.deepEqual(svc.spec.selector, SELECTOR);
  assert.deepEqual(svc.spec.ports, [{ name: 'peer', port: 2525, targetPort: 'peer', protocol: 'TCP' }]);
  assert.deepEqual(
    container(ms).ports.find((p: any) => p.name === 'peer'),
    { name: 'peer', containerPort: 2526, protocol: 'TCP' },
  );
  // never on the public Service, never open to smtpFrom
  const pub = find(ms, 'Service', 'mail-mailplane');
  assert.ok(!pub.spec.ports.some((p: any) => p.targetPort === 2526 || p.name === 'peer'), JSON.stringify(pub.spec.ports));
  const main = find(ms, 'NetworkPolicy', 'mail-mailplane');
  assert.ok(!JSON.stringify(main.spec.ingress).includes('2526'));
  const np = find(ms, 'NetworkPolicy', 'mail-mailplane-peers');
  assert.deepEqual(np.spec.podSelector, { matchLabels: SELECTOR });
  assert.deepEqual(np.spec.ingress, [{ ports: [{ port: 2526, protocol: 'TCP' }], from: [{ podSelector: { matchLabels: SELECTOR } }] }]);
  assert.deepEqual(np.spec.policyTypes, ['Ingress']);
  // the generated peer secret is mounted for secretFile
  assert.ok(secretData(ms, 'mail-mailplane-peer-secret', 'secret').length >= 16);
  // with limited egress the pods may still reach each other's peer listener and the Redis
  const limited = render({ set: { ...WITH_CHART_REDIS, 'networkPolicy.egress': [{ ports: [{ port: 53, protocol: 'UDP' }] }] } });
  const egress = find(limited, 'NetworkPolicy', 'mail-mailplane-peers');
  assert.deepEqual(egress.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(
    egress.spec.egress.map((e: any) => e.ports[0].port),
    [2526, 6379],
  );
  // other ports
  const moved = render({ set: { ...WITH_CHART_REDIS, 'cluster.peers.servicePort': 10025, 'cluster.peers.containerPort': 3525 } });
  assert.equal(renderedConfig(moved).cluster.peers.handoff, 'mail-mailplane-smtp-peers.mail.svc:10025');
  assert.equal(renderedConfig(moved).smtp.listeners.find((l: any) => l.role === 'peer').port, 3525);
  // a Secret of one's own
  const own = render({ set: { ...WITH_CHART_REDIS, 'cluster.peers.existingSecret': 'peers', 'cluster.peers.key': 's' } });
  assert.equal(findAll(own, 'Secret').filter((s) => s.metadata.name === 'mail-mailplane-peer-secret').length, 0);
  const cluster = podSpec(own).volumes.find((v: any) => v.name === 'cluster');
  assert.deepEqual(cluster.projected.sources[0], { secret: { name: 'peers', items: [{ key: 's', path: 'peer-secret' }] } });
});

test('a leaving pod hands its queue over in preStop, within a grace period long enough for it', { skip }, () => {
  const ms = render({ set: WITH_CHART_REDIS });
  assert.deepEqual(container(ms).lifecycle, {
    preStop: { exec: { command: ['node', '/app/bin/mailplane.js', 'queue', 'handoff', '--config', '/etc/mailplane/config/mailserver.yaml', '--timeout', '330s'] } },
  });
  // drainGrace (30 s) + cluster.handoff.timeoutSeconds (300) + 30
  assert.equal(podSpec(ms).terminationGracePeriodSeconds, 360);
  const slow = render({ set: { ...WITH_CHART_REDIS, 'config.smtp.drainGrace': '1m', 'cluster.handoff.timeoutSeconds': 600 } });
  assert.equal(container(slow).lifecycle.preStop.exec.command.at(-1), '660s');
  assert.equal(podSpec(slow).terminationGracePeriodSeconds, 690);
  // a longer grace of one's own is kept
  assert.equal(podSpec(render({ set: { ...WITH_CHART_REDIS, terminationGracePeriodSeconds: 1200 } })).terminationGracePeriodSeconds, 1200);
});

test('several replicas spread over nodes and zones, and a PodDisruptionBudget lets one go at a time', { skip }, () => {
  const ms = render({ set: WITH_CHART_REDIS });
  const term = { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: SELECTOR } };
  assert.deepEqual(podSpec(ms).affinity, { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: term }] } });
  assert.deepEqual(podSpec(ms).topologySpreadConstraints, [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: SELECTOR } }]);
  const pdb = find(ms, 'PodDisruptionBudget');
  assert.equal(pdb.spec.maxUnavailable, 1);
  assert.deepEqual(pdb.spec.selector, { matchLabels: SELECTOR });
  const hard = render({ set: { ...WITH_CHART_REDIS, 'cluster.podAntiAffinity': 'hard', 'cluster.topologySpread': false } });
  assert.deepEqual(podSpec(hard).affinity, { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term] } });
  assert.equal(podSpec(hard).topologySpreadConstraints, undefined);
  assert.equal(podSpec(render({ set: { ...WITH_CHART_REDIS, 'cluster.podAntiAffinity': 'none' } })).affinity, undefined);
  // values of one's own win
  const affinity = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'mail', operator: 'Exists' }] }] } } };
  assert.deepEqual(podSpec(render({ set: { ...WITH_CHART_REDIS, affinity } })).affinity, affinity);
});

test("the chart's Redis: no persistence, a generated password it requires, reached by the mailplane pods only; Rspamd's Redis stays apart", { skip }, () => {
  const ms = render({ set: { ...WITH_CHART_REDIS, 'rspamd.enabled': true } });
  const password = secretData(ms, 'mail-mailplane-cluster-redis', 'password');
  assert.match(password, /^[A-Za-z0-9]{48}$/);
  const conf = secretData(ms, 'mail-mailplane-cluster-redis', 'redis.conf');
  assert.ok(conf.includes(`requirepass ${password}\n`), conf);
  assert.ok(conf.includes('save ""\n'), conf);
  assert.ok(conf.includes('appendonly no\n'), conf);
  const deploy = find(ms, 'Deployment', 'mail-mailplane-cluster-redis');
  const spec = deploy.spec.template.spec;
  assert.deepEqual(spec.containers[0].args, ['/etc/redis/redis.conf']);
  assert.deepEqual(
    spec.volumes.find((v: any) => v.name === 'data'),
    { name: 'data', emptyDir: {} },
  );
  assert.ok(!findAll(ms, 'PersistentVolumeClaim').some((p) => p.metadata.name.includes('cluster')));
  assert.equal(renderedConfig(ms).cluster.redis.url, 'redis://mail-mailplane-cluster-redis.mail.svc:6379/0');
  const np = find(ms, 'NetworkPolicy', 'mail-mailplane-cluster-redis');
  assert.deepEqual(np.spec.ingress, [{ ports: [{ port: 6379, protocol: 'TCP' }], from: [{ podSelector: { matchLabels: SELECTOR } }] }]);
  assert.deepEqual(np.spec.egress, []);
  // the mailplane pods' selector never picks the Redis pods, nor the other way round
  assert.equal(deploy.spec.selector.matchLabels['app.kubernetes.io/name'], 'cluster-redis');
  // Rspamd keeps its own Redis, without a password, as before
  assert.equal(find(ms, 'Deployment', 'mail-mailplane-redis').spec.template.spec.containers[0].args.includes('--maxmemory'), true);
  assert.equal(find(ms, 'Service', 'mail-mailplane-redis').spec.ports[0].port, 6379);
  // an own Redis: its URL, the password from its Secret, no Redis rendered; timeout and keyPrefix kept
  const own = render({ set: WITH_OWN_REDIS });
  assert.deepEqual(renderedConfig(own).cluster.redis, { url: 'rediss://redis.shared.svc:6380/2', passwordFile: '../cluster/redis-password', timeout: '200ms', keyPrefix: 'mail1:' });
  assert.equal(findAll(own, 'Deployment').length, 0);
  const vol = podSpec(own).volumes.find((v: any) => v.name === 'cluster');
  assert.deepEqual(vol.projected.sources[1], { secret: { name: 'shared-redis', items: [{ key: 'redis-password', path: 'redis-password' }] } });
});

test('one replica renders nothing of the cluster', { skip }, () => {
  for (const set of [{}, { ...WITH_CHART_REDIS, replicas: 1 }]) {
    const ms = render({ set });
    assert.equal(renderedConfig(ms).cluster, undefined);
    assert.ok(!renderedConfig(ms).smtp.listeners.some((l: any) => l.role === 'peer'));
    assert.equal(podSpec(ms).terminationGracePeriodSeconds, 60);
    assert.equal(container(ms).lifecycle, undefined);
    assert.equal(podSpec(ms).affinity, undefined);
    assert.equal(podSpec(ms).topologySpreadConstraints, undefined);
    assert.ok(!podSpec(ms).volumes.some((v: any) => v.name === 'cluster'));
    for (const [kind, name] of [
      ['Service', 'mail-mailplane-smtp-peers'],
      ['Secret', 'mail-mailplane-peer-secret'],
      ['NetworkPolicy', 'mail-mailplane-peers'],
      ['Deployment', 'mail-mailplane-cluster-redis'],
      ['PodDisruptionBudget', 'mail-mailplane'],
    ]) {
      assert.ok(!ms.some((m) => m.kind === kind && m.metadata.name === name), `${kind}/${name} rendered with one replica`);
    }
  }
});

test('several replicas are refused, saying why, without the LMTP store, its address or a Redis', { skip }, async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ replicas: 2, 'cluster.redis.deploy.enabled': true }, /replicas: 2 needs config\.mailboxes\.store: lmtp .*with maildir every replica would keep its own part of the mailboxes/],
    [{ replicas: 2, 'config.mailboxes': { store: 'maildir' }, 'cluster.redis.deploy.enabled': true }, /needs config\.mailboxes\.store: lmtp/],
    [{ replicas: 2, 'config.mailboxes': { store: 'lmtp' }, 'cluster.redis.deploy.enabled': true }, /needs config\.mailboxes\.lmtp\.address/],
    [{ replicas: 2, 'config.mailboxes': LMTP }, /needs a Redis .*cluster\.redis\.url .*cluster\.redis\.deploy\.enabled/],
    [{ replicas: 2, 'config.mailboxes': LMTP, 'cluster.redis.url': 'redis://r:6379/0' }, /cluster\.redis\.existingSecret: .*required/],
    [{ ...WITH_CHART_REDIS, 'cluster.redis.url': 'redis://r:6379/0' }, /not both/],
    [{ ...WITH_CHART_REDIS, 'config.cluster': { redis: { url: 'redis://r:6379/0' } } }, /config\.cluster\.redis\.url: the chart sets it/],
    [{ ...WITH_CHART_REDIS, 'config.cluster': { peers: { handoff: 'x:2525' } } }, /config\.cluster\.peers: .*the chart sets it/],
    [{ ...WITH_CHART_REDIS, 'config.smtp.listeners': [{ name: 'mx', port: 2526, role: 'mx' }] }, /mx uses port 2526, the peer listener's/],
    [
      {
        ...WITH_CHART_REDIS,
        'config.smtp.listeners': [
          { name: 'mx', port: 2525, role: 'mx' },
          { name: 'p', port: 2600, role: 'peer' },
        ],
      },
      /p has role: peer/,
    ],
    [{ ...WITH_CHART_REDIS, 'persistence.existingClaim': 'mail-data' }, /existingClaim allows only 1 replica/],
    [{ ...WITH_CHART_REDIS, 'mailboxes.dovecot.enabled': true }, /keep replicas: 1|use maildir/],
  ];
  for (const [set, message] of cases) {
    const r = renderFailing({ set });
    assert.notEqual(r.code, 0, `${JSON.stringify(set)} was accepted`);
    assert.match(r.stderr, message, JSON.stringify(set));
  }
  for (const [path, value] of [
    ['cluster.podAntiAffinity', 'always'],
    ['cluster.peers.containerPort', 25],
    ['cluster.redis.url', 'redis://user:pass@r:6379/0'],
    ['cluster.handoff.timeoutSeconds', 0],
    ['cluster.redis.deploy.persistence', true],
  ] as const) {
    const r = renderFailing({ set: { ...WITH_CHART_REDIS, [path]: value } });
    assert.notEqual(r.code, 0, `${path} = ${JSON.stringify(value)} was accepted`);
    assert.match(r.stderr, /values don't meet the specifications of the schema/);
  }
  // the same rule as the server's: the rendered config, with the files the pod mounts, refused
  // by mailplane validate for that alone once its store is maildir
  const ms = render({ set: WITH_CHART_REDIS });
  const pod = podFiles(ms);
  const file = join(dirname(pod.configFile), 'maildir.yaml');
  writeFileSync(file, stringifyYaml({ ...renderedConfig(ms), mailboxes: { store: 'maildir' } }));
  const v = await mailplane(['validate', file]);
  assert.equal(v.code, 1, v.stdout + v.stderr);
  assert.match(v.stdout, /cluster: cluster settings mean several replicas, and with mailboxes\.store: maildir/);
  assert.match(v.stdout, /invalid: 1 error/);
});
