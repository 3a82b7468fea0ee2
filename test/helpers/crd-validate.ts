// Checks a custom resource against the CRD its project publishes (the file in test/fixtures), as
// the API server would with `kubectl apply --validate=strict`: the openAPIV3Schema (types,
// patterns, enums, lengths; unknown fields are errors, not pruned), the x-kubernetes-validations
// CEL rules (restated below in TypeScript, each by its exact rule text, so a new rule in an
// updated CRD file fails loudly until it is restated) and the object name.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import type { Manifest } from './k8s-validate.js';

/** The CRD files of the custom resources the chart may render, by "apiVersion/kind". */
const CRDS: Record<string, string> = {
  'externaldns.k8s.io/v1alpha1/DNSEndpoint': '../fixtures/external-dns/dnsendpoints.externaldns.k8s.io.yaml',
};

type Json = any;

/** The CEL rules of the CRDs above, by their exact text: true when the value passes. */
const CEL: Record<string, (self: Json) => boolean> = {
  "self.size() <= (self.endsWith('.') ? 254 : 253)": (s: string) => s.length <= (s.endsWith('.') ? 254 : 253),
  "self.recordType != 'SRV' || !has(self.targets) || self.targets.all(t, t.endsWith('.'))": (s) => s.recordType !== 'SRV' || s.targets === undefined || s.targets.every((t: string) => t.endsWith('.')),
  "self.recordType != 'NAPTR' || !has(self.targets) || self.targets.all(t, t.endsWith('.'))": (s) =>
    s.recordType !== 'NAPTR' || s.targets === undefined || s.targets.every((t: string) => t.endsWith('.')),
  "self.recordType != 'PTR' || self.dnsName.lowerAscii().endsWith('.in-addr.arpa') || self.dnsName.lowerAscii().endsWith('.ip6.arpa')": (s) =>
    s.recordType !== 'PTR' || /\.(in-addr|ip6)\.arpa$/.test(String(s.dnsName).toLowerCase()),
};

/** The openAPIV3Schema as a JSON schema for ajv: objects with properties refuse unknown ones, and
the Kubernetes extensions go (kept aside for the CEL pass). */
function strictSchema(s: Json): Json {
  if (Array.isArray(s)) return s.map(strictSchema);
  if (s === null || typeof s !== 'object') return s;
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) {
    if (k.startsWith('x-kubernetes-') || k === 'description') continue;
    out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v as Json).map(([p, ps]) => [p, strictSchema(ps)])) : strictSchema(v);
  }
  if (out.type === 'object' && out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

/** Every CEL rule of the schema applied to the value, as problems "path: message". */
function celProblems(schema: Json, value: Json, path: string): string[] {
  if (value === undefined || value === null || !schema) return [];
  const out: string[] = [];
  for (const v of schema['x-kubernetes-validations'] ?? []) {
    const rule = CEL[v.rule];
    if (!rule) out.push(`${path || '(top)'}: the CRD has a CEL rule this checker does not restate: ${v.rule}`);
    else if (!rule(value)) out.push(`${path || '(top)'}: ${v.message}`);
  }
  if (schema.properties && typeof value === 'object') {
    for (const [k, ps] of Object.entries(schema.properties)) out.push(...celProblems(ps, value[k], path ? `${path}.${k}` : k));
  }
  if (schema.items && Array.isArray(value)) value.forEach((x, i) => out.push(...celProblems(schema.items, x, `${path}[${i}]`)));
  return out;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const compiled = new Map<string, { schema: Json; validate: ValidateFunction }>();

function load(key: string): { schema: Json; validate: ValidateFunction } | null {
  const file = CRDS[key];
  if (!file) return null;
  let c = compiled.get(key);
  if (!c) {
    const crd = parse(readFileSync(fileURLToPath(new URL(file, import.meta.url)), 'utf8'));
    const version = key.split('/').at(-2);
    const schema = crd.spec.versions.find((v: Json) => v.name === version)?.schema?.openAPIV3Schema;
    if (!schema) throw new Error(`${file} has no schema for ${key}`);
    const ajv = new Ajv({ allErrors: true, strict: false, formats: { int64: true, int32: true, 'date-time': true } });
    c = { schema, validate: ajv.compile(strictSchema(schema)) };
    compiled.set(key, c);
  }
  return c;
}

/** Problems of a custom resource ("path: message"; empty: valid), or null when no CRD is known for it. */
export function validateCustomResource(m: Manifest): string[] | null {
  const c = load(`${m.apiVersion}/${m.kind}`);
  if (!c) return null;
  const problems: string[] = [];
  if (!c.validate(m)) {
    for (const e of c.validate.errors ?? []) {
      const where = e.instancePath
        .replace(/^\//, '')
        .replace(/\/(\d+)/g, '[$1]')
        .replace(/\//g, '.');
      const extra = e.keyword === 'additionalProperties' ? ` (${(e.params as { additionalProperty: string }).additionalProperty})` : '';
      problems.push(`${where || '(top)'}: ${e.message}${extra}`);
    }
  }
  problems.push(...celProblems(c.schema, m, ''));
  const name = m.metadata?.name;
  if (typeof name !== 'string' || name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) problems.push(`metadata.name: ${JSON.stringify(name)} is not a DNS-1123 subdomain`);
  for (const [k, v] of Object.entries((m.metadata?.labels ?? {}) as Record<string, unknown>)) {
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v)) problems.push(`metadata.labels.${k}: ${JSON.stringify(v)} is not a label value`);
  }
  return problems;
}
