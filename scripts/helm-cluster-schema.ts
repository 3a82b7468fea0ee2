// The values schema of the chart's `cluster` block (replicas > 1: Redis, the peer listener and its
// Service, the preStop hand-off, spreading the pods), merged into helm/mailplane/values.schema.json
// by gen-helm-schema.ts.

type Schema = Record<string, unknown>;

const str = (description?: string): Schema => ({ type: 'string', ...(description ? { description } : {}) });
const bool = (description?: string): Schema => ({ type: 'boolean', ...(description ? { description } : {}) });
const strict = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', additionalProperties: false, properties, ...extra });
const port: Schema = { type: 'integer', minimum: 1, maximum: 65535 };
const secretKey: Schema = { type: 'string', minLength: 1, pattern: '^[-._a-zA-Z0-9]+$' };

export const clusterProperties: Record<string, Schema> = {
  cluster: strict(
    {
      redis: strict({
        url: { type: 'string', pattern: '^(rediss?://[^\\s:@/]+(:[0-9]+)?(/[0-9]*)?)?$', description: 'A Redis you run (redis:// or rediss://, no password in it).' },
        existingSecret: str('The Secret holding the password of url, mounted for config.cluster.redis.passwordFile.'),
        key: { ...secretKey, description: 'Its key in existingSecret.' },
        deploy: strict({
          enabled: bool('A small Redis from the chart (no persistence, generated password).'),
          image: strict({
            repository: { type: 'string', minLength: 1 },
            tag: str(),
            digest: { type: 'string', pattern: '^(sha256:[0-9a-f]{64})?$' },
            pullPolicy: { type: 'string', enum: ['Always', 'IfNotPresent', 'Never'] },
          }),
          resources: { type: 'object' },
          maxmemory: { type: 'string', pattern: '^[0-9]+(b|kb|mb|gb)?$', description: 'Redis maxmemory (e.g. 96mb).' },
        }),
      }),
      peers: strict({
        servicePort: { ...port, description: 'Port of the Service <fullname>-smtp-peers (config.cluster.peers.handoff).' },
        containerPort: { ...port, minimum: 1024, description: 'The peer listener in the pod (no root: 1024 or more).' },
        existingSecret: str('A Secret you manage for config.cluster.peers.secretFile instead of the generated one.'),
        key: { ...secretKey, description: 'Its key in existingSecret.' },
      }),
      handoff: strict({
        timeoutSeconds: { type: 'integer', minimum: 1, description: 'How long the preStop hand-off may take besides drainGrace; the grace period is at least drainGrace + this + 30.' },
      }),
      podAntiAffinity: { type: 'string', enum: ['soft', 'hard', 'none'], description: 'With empty affinity: keep the pods off each other’s nodes.' },
      topologySpread: bool('With empty topologySpreadConstraints: spread the pods over zones.'),
    },
    { description: 'Several replicas (replicas > 1); ignored with one.' },
  ),
};

/**
 * The config schema as the chart takes it: config.cluster.redis without `required`, since with
 * replicas > 1 the chart sets its url (and passwordFile) from cluster.redis (and refuses, with
 * the reason, what it cannot complete); timeout and keyPrefix stay in config.
 */
export function relaxConfigForCluster(config: Schema): void {
  const redis = (config as { properties?: { cluster?: { properties?: { redis?: Schema } } } }).properties?.cluster?.properties?.redis;
  if (!redis || !Array.isArray(redis.required)) throw new Error('config.cluster.redis is not where scripts/helm-cluster-schema.ts expects it');
  delete redis.required;
  redis.description = `${String(redis.description)} In the chart, url and passwordFile may be left to cluster.redis (replicas > 1).`;
}
