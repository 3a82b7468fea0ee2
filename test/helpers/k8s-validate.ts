// Checks rendered Kubernetes manifests as strictly as `kubectl apply --validate=strict` would:
// * field types, required fields, enums and formats, with the validators that kubernetes-models
//   generates from the Kubernetes OpenAPI schemas (and from the prometheus-operator and
//   cert-manager CRDs);
// * unknown fields, which those validators let through (the schemas do not forbid them): each
//   manifest is type-checked as an object literal against the same models' TypeScript
//   interfaces, and TypeScript's excess-property check rejects an unknown key at any depth.
// Custom resources of other projects without such models (external-dns' DNSEndpoint) are checked
// against the CRD file their project publishes, in test/fixtures (crd-validate.ts).
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { validateCustomResource } from './crd-validate.js';

interface KindInfo {
  readonly module: string;
  readonly className: string;
}

/** Every kind the chart may render; anything else is an error (an unchecked kind is no check). */
const KINDS: Record<string, KindInfo> = {
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', className: 'ConfigMap' },
  'v1/Secret': { module: 'kubernetes-models/v1/Secret', className: 'Secret' },
  'v1/Service': { module: 'kubernetes-models/v1/Service', className: 'Service' },
  'apps/v1/StatefulSet': { module: 'kubernetes-models/apps/v1/StatefulSet', className: 'StatefulSet' },
  'apps/v1/Deployment': { module: 'kubernetes-models/apps/v1/Deployment', className: 'Deployment' },
  'v1/PersistentVolumeClaim': { module: 'kubernetes-models/v1/PersistentVolumeClaim', className: 'PersistentVolumeClaim' },
  'networking.k8s.io/v1/Ingress': { module: 'kubernetes-models/networking.k8s.io/v1/Ingress', className: 'Ingress' },
  'policy/v1/PodDisruptionBudget': { module: 'kubernetes-models/policy/v1/PodDisruptionBudget', className: 'PodDisruptionBudget' },
  'networking.k8s.io/v1/NetworkPolicy': { module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', className: 'NetworkPolicy' },
  'monitoring.coreos.com/v1/ServiceMonitor': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', className: 'ServiceMonitor' },
  'monitoring.coreos.com/v1/PrometheusRule': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', className: 'PrometheusRule' },
  'cert-manager.io/v1/Certificate': { module: '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate', className: 'Certificate' },
  'cert-manager.io/v1/Issuer': { module: '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer', className: 'Issuer' },
  'v1/ServiceAccount': { module: 'kubernetes-models/v1/ServiceAccount', className: 'ServiceAccount' },
};

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [key: string]: any };
  [key: string]: any;
}

export interface Labelled {
  /** where the manifest comes from, for messages (e.g. the values file) */
  readonly source: string;
  readonly manifest: Manifest;
}

const id = (l: Labelled) => `${l.source}: ${l.manifest.kind}/${l.manifest.metadata?.name}`;

/** Problems of each manifest, as "source: Kind/name: path: message" lines (empty: all valid). */
export async function validateManifests(all: readonly Labelled[]): Promise<string[]> {
  const problems: string[] = [];
  const typed: { l: Labelled; info: KindInfo }[] = [];
  for (const l of all) {
    const info = KINDS[`${l.manifest.apiVersion}/${l.manifest.kind}`];
    if (!info) {
      // custom resources of other projects: against their published CRD (crd-validate.ts)
      const custom = validateCustomResource(l.manifest);
      if (custom) {
        problems.push(...custom.map((p) => `${id(l)}: ${p}`));
        continue;
      }
      problems.push(`${id(l)}: no schema known for ${l.manifest.apiVersion} ${l.manifest.kind}`);
      continue;
    }
    typed.push({ l, info });
    const Model = (await import(info.module))[info.className] as new (data: unknown) => { validate(): void };
    try {
      new Model(structuredClone(l.manifest)).validate();
    } catch (e) {
      problems.push(`${id(l)}: ${(e as Error).message}`);
    }
  }
  problems.push(...unknownFields(typed));
  return problems;
}

function unknownFields(typed: readonly { l: Labelled; info: KindInfo }[]): string[] {
  // a file in test/ so that module resolution finds the repository's node_modules
  const file = fileURLToPath(new URL('../__rendered_manifests__.ts', import.meta.url));
  const imports = new Map<string, string>();
  const decls: string[] = [];
  typed.forEach(({ l, info }, i) => {
    const alias = `I${info.className}`;
    imports.set(alias, `import type { ${alias} } from '${info.module}';`);
    decls.push(`export const m${i}: ${alias} = ${JSON.stringify(l.manifest, null, 1)};`);
  });
  const text = [...imports.values(), ...decls].join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) => (name === file ? source : getSourceFile(name, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const out: string[] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (d.file !== source || d.start === undefined) {
      out.push(`type check: ${message}`);
      continue;
    }
    const { index, path } = locate(source, d.start);
    const which = index === null ? 'manifests' : id(typed[index]!.l);
    out.push(`${which}: ${path || '(top)'}: ${message.length > 300 ? `${message.slice(0, 300)}…` : message}`);
  }
  return out;
}

/** Which manifest (m<i>) and which field path a position of the generated source is in. */
function locate(source: ts.SourceFile, pos: number): { index: number | null; path: string } {
  let index: number | null = null;
  const path: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && /^m\d+$/.test(node.name.text)) index = Number(node.name.text.slice(1));
    if (ts.isPropertyAssignment(node) && (ts.isStringLiteral(node.name) || ts.isIdentifier(node.name))) path.push(node.name.text);
    if (node.parent && ts.isArrayLiteralExpression(node.parent) && node.parent.elements.includes(node as ts.Expression)) {
      path.push(`[${node.parent.elements.indexOf(node as ts.Expression)}]`);
    }
    const child = node.getChildren(source).find((c) => c.getStart(source) <= pos && pos < c.getEnd());
    if (child) visit(child);
  };
  visit(source);
  return { index, path: path.join('.').replace(/\.\[/g, '[') };
}
