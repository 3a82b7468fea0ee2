// The values schema of the chart's optional parts around the server (dns.externalDns, mtaSts.ingress,
// rspamd, mailboxes.dovecot), merged into helm/mailplane/values.schema.json by gen-helm-schema.ts.

type Schema = Record<string, unknown>;

const str = (description?: string): Schema => ({ type: 'string', ...(description ? { description } : {}) });
const bool = (description?: string): Schema => ({ type: 'boolean', ...(description ? { description } : {}) });
const arr = (description?: string): Schema => ({ type: 'array', ...(description ? { description } : {}) });
const obj = (description?: string): Schema => ({ type: 'object', ...(description ? { description } : {}) });
const strict = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', additionalProperties: false, properties, ...extra });
const stringMap = (description: string): Schema => ({ type: 'object', description, additionalProperties: { type: 'string' } });
const port: Schema = { type: 'integer', minimum: 1, maximum: 65535 };

const image = (description: string): Schema =>
  strict(
    {
      repository: { type: 'string', minLength: 1 },
      tag: str('The tag; with digest it only documents the image.'),
      digest: { type: 'string', pattern: '^(sha256:[0-9a-f]{64})?$', description: 'sha256:… of the image (its multi-arch index); "" pulls by tag.' },
      pullPolicy: { type: 'string', enum: ['Always', 'IfNotPresent', 'Never'] },
    },
    { description },
  );

export const addonProperties: Record<string, Schema> = {
  dns: strict({
    externalDns: strict({
      enabled: bool('DNSEndpoint resources (external-dns) with the records `mailplane dns --format external-dns` prints.'),
      labels: stringMap('Labels of the DNSEndpoints (e.g. for external-dns --label-filter).'),
      annotations: stringMap('Annotations of the DNSEndpoints.'),
      dkimRecords: {
        type: 'array',
        description: 'DKIM TXT values: Helm cannot read a public key out of the Secret.',
        items: strict(
          {
            domain: { type: 'string', minLength: 1 },
            selector: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$' },
            value: { type: 'string', pattern: '^\\s*v=DKIM1;', description: 'The TXT value, "v=DKIM1; k=rsa; p=…".' },
          },
          { required: ['domain', 'selector', 'value'] },
        ),
      },
      requireDkimRecords: bool('Refuse to render when a config.dkim.keys entry has no dkimRecords value (false: leave its record out).'),
      srvTargetTrailingDot: bool('SRV targets as absolute names (RFC 2782; required by the current external-dns CRD).'),
    }),
  }),
  mtaSts: strict({
    ingress: strict({
      enabled: bool('An Ingress for https://mta-sts.<domain>/.well-known/mta-sts.txt (that path only) to the ops port.'),
      className: str(),
      annotations: stringMap('Annotations of the Ingress (e.g. cert-manager.io/cluster-issuer).'),
      labels: stringMap('Labels of the Ingress.'),
      hosts: { type: 'array', items: { type: 'string', pattern: '^mta-sts\\.', minLength: 9 }, description: 'Default: mta-sts.<domain> of every config.domains entry.' },
      tls: strict({ enabled: bool(), secretName: str('Default: <fullname>-mta-sts-tls.') }),
      from: arr('NetworkPolicyPeers allowed to reach the ops port for it (the ingress controller).'),
    }),
  }),
  rspamd: strict({
    enabled: bool('Run Rspamd and Redis with the chart; config.inbound.spamFilter.url points at it.'),
    existingUrl: { type: 'string', pattern: '^(https?://[^\\s/?#]+(/[^\\s?#]*)?)?$', description: "An Rspamd you run: its normal worker's URL." },
    image: image('The Rspamd image (its own config in /etc/rspamd, upstream config in /usr/share/rspamd/config, user 11333).'),
    replicas: { type: 'integer', minimum: 1 },
    resources: obj(),
    files: {
      type: 'object',
      description: 'Files in /etc/rspamd (local.d/<file>, override.d/<file>) over the chart’s; null removes one of the chart’s.',
      propertyNames: { pattern: '^(local\\.d|override\\.d)/[A-Za-z0-9_.-]+$' },
      additionalProperties: { type: ['string', 'null'] },
    },
    nodeSelector: stringMap('Node labels the Rspamd and Redis pods must run on.'),
    tolerations: arr(),
    affinity: obj(),
    redis: strict({
      image: image('The Redis image (user 999, group 1000).'),
      resources: obj(),
      maxmemory: { type: 'string', pattern: '^[0-9]+(b|kb|mb|gb)?$', description: 'Redis --maxmemory (e.g. 192mb).' },
      persistence: strict({ enabled: bool(), existingClaim: str(), size: { type: ['string', 'integer'] }, storageClassName: str() }),
    }),
  }),
  mailboxes: strict({
    dovecot: strict({
      enabled: bool('Dovecot in the mailplane pod: IMAPS/POP3S over the Maildirs and passwd-file mailplane writes.'),
      image: image('The Dovecot 2.3 image (docs/dovecot.md is 2.3 syntax).'),
      pop3: bool('POP3S on 995 besides IMAPS on 993.'),
      servicePorts: strict({ imaps: port, pop3s: port }),
      from: arr('NetworkPolicyPeers allowed to reach IMAPS and POP3S (empty: everyone).'),
      extraConfig: str('Appended to dovecot.conf.'),
      reloadCheckSeconds: { type: 'integer', minimum: 1, description: 'How often a renewed certificate or changed config is looked for (then doveadm reload).' },
      resources: obj(),
    }),
  }),
};

/**
 * The config schema as the chart takes it: config.inbound.spamFilter without `required`, since
 * with rspamd.enabled or rspamd.existingUrl the chart sets its type and url (and refuses, with
 * the reason, a spamFilter it cannot complete).
 */
export function relaxConfigForAddons(config: Schema): void {
  const spamFilter = (config as { properties?: { inbound?: { properties?: { spamFilter?: Schema } } } }).properties?.inbound?.properties?.spamFilter;
  if (!spamFilter || !Array.isArray(spamFilter.required)) throw new Error('config.inbound.spamFilter is not where scripts/helm-addons-schema.ts expects it');
  delete spamFilter.required;
  spamFilter.description = `${String(spamFilter.description)} In the chart, type and url may be left to rspamd.enabled or rspamd.existingUrl.`;
}
