// The files a pod of the chart sees, laid out under a temp folder: every ConfigMap, Secret and
// projected volume of the rendered StatefulSet, written the way the kubelet writes them (a
// timestamped folder, a `..data` symlink to it, one symlink per file through `..data`), and
// updated the way the kubelet updates them (a new folder, then `..data` renamed over).
import { mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Manifest } from './k8s-validate.js';
import { serverCert } from './tls.js';
import { tempDir } from './tmp.js';

/** Secrets and ConfigMaps that exist in the cluster, not rendered by the chart: name → key → content. */
export interface Cluster {
  readonly secrets?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  readonly configMaps?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

export interface PodFiles {
  /** the folder standing for the pod's / */
  readonly root: string;
  /** the container's args after the subcommand (run), with the --config path moved under root */
  readonly args: string[];
  readonly configFile: string;
  /** the files of each ConfigMap/Secret/projected volume, by volume name */
  readonly volumes: Map<string, { dir: string; files: Record<string, string> }>;
}

let generation = 0;

/** Writes files into dir as the kubelet's atomic writer does. */
export function writeAtomic(dir: string, files: Readonly<Record<string, string>>): void {
  mkdirSync(dir, { recursive: true });
  const old = existsSync(join(dir, '..data')) ? readlinkSync(join(dir, '..data')) : null;
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${process.pid}.${generation++}`;
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, stamp, path)), { recursive: true });
    writeFileSync(join(dir, stamp, path), content);
  }
  symlinkSync(stamp, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  const top = new Set(Object.keys(files).map((p) => p.split('/')[0]!));
  for (const name of top) if (!existsSync(join(dir, name))) symlinkSync(join('..data', name), join(dir, name));
  for (const name of readdirSync(dir)) if (!name.startsWith('..') && !top.has(name)) rmSync(join(dir, name), { force: true });
  if (old) rmSync(join(dir, old), { recursive: true, force: true });
}

function rendered(manifests: readonly Manifest[], kind: 'Secret' | 'ConfigMap', name: string): Record<string, string> | undefined {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) return undefined;
  const out: Record<string, string> = { ...(m.stringData ?? {}) };
  for (const [k, v] of Object.entries((m.data ?? {}) as Record<string, string>)) out[k] = kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : v;
  return out;
}

/** What cert-manager writes for a Certificate of the render signed by a self-signed Issuer of the same render (the chart's default TLS), once per render. */
const issued = new WeakMap<readonly Manifest[], Map<string, Record<string, string>>>();
function selfSigned(manifests: readonly Manifest[], secretName: string): Record<string, string> | undefined {
  const c = manifests.find((m) => m.kind === 'Certificate' && m.spec?.secretName === secretName);
  const issuer = c && manifests.find((m) => m.kind === 'Issuer' && m.metadata.name === c.spec.issuerRef?.name && m.spec?.selfSigned);
  if (!c || !issuer) return undefined;
  let byName = issued.get(manifests);
  if (!byName) issued.set(manifests, (byName = new Map()));
  if (!byName.has(secretName)) {
    const cert = serverCert(c.spec.commonName);
    byName.set(secretName, { 'tls.crt': cert.certPem, 'tls.key': cert.keyPem, 'ca.crt': cert.certPem });
  }
  return byName.get(secretName);
}

interface KeyToPath {
  key: string;
  path: string;
}

function pick(kind: string, name: string, data: Record<string, string> | undefined, items: KeyToPath[] | undefined): Record<string, string> {
  if (!data) throw new Error(`the pod would not start: ${kind} ${name} does not exist`);
  if (!items) return { ...data };
  const out: Record<string, string> = {};
  for (const { key, path } of items) {
    if (!(key in data)) throw new Error(`the pod would not start: ${kind} ${name} has no key ${key}`);
    out[path] = data[key]!;
  }
  return out;
}

/** The content of one volume of the pod spec (null for volumes that hold data, not files we know). */
export function volumeFiles(manifests: readonly Manifest[], cluster: Cluster, volume: any): Record<string, string> | null {
  const secret = (name: string, items?: KeyToPath[]) => pick('Secret', name, rendered(manifests, 'Secret', name) ?? cluster.secrets?.[name] ?? selfSigned(manifests, name), items);
  const configMap = (name: string, items?: KeyToPath[]) => pick('ConfigMap', name, rendered(manifests, 'ConfigMap', name) ?? cluster.configMaps?.[name], items);
  if (volume.secret) return secret(volume.secret.secretName, volume.secret.items);
  if (volume.configMap) return configMap(volume.configMap.name, volume.configMap.items);
  if (volume.projected) {
    const out: Record<string, string> = {};
    for (const s of volume.projected.sources) {
      if (s.secret) Object.assign(out, secret(s.secret.name, s.secret.items));
      else if (s.configMap) Object.assign(out, configMap(s.configMap.name, s.configMap.items));
      else throw new Error(`projected source not understood: ${JSON.stringify(s)}`);
    }
    return out;
  }
  return null;
}

export function podFiles(manifests: readonly Manifest[], cluster: Cluster = {}): PodFiles {
  const sts = manifests.find((m) => m.kind === 'StatefulSet');
  if (!sts) throw new Error('no StatefulSet rendered');
  const pod = sts.spec.template.spec;
  const container = pod.containers.find((c: any) => c.name === 'mailplane');
  const root = tempDir('pod');
  const volumes = new Map<string, { dir: string; files: Record<string, string> }>();
  for (const mount of container.volumeMounts) {
    if (mount.subPath) throw new Error(`volume ${mount.name} is mounted with subPath: Kubernetes never updates it`);
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    if (!volume) {
      if ((sts.spec.volumeClaimTemplates ?? []).some((t: any) => t.metadata.name === mount.name)) continue;
      throw new Error(`volumeMount ${mount.name} has no volume`);
    }
    const files = volumeFiles(manifests, cluster, volume);
    if (!files) continue;
    const dir = join(root, mount.mountPath);
    writeAtomic(dir, files);
    volumes.set(mount.name, { dir, files });
  }
  // the image's entrypoint is `mailplane`: the args start with its subcommand, run
  if (container.args[0] !== 'run') throw new Error(`the container's args do not start with the subcommand run: ${container.args.join(' ')}`);
  const args = container.args.slice(1);
  const at = args.indexOf('--config');
  if (at < 0) throw new Error('the container is not given --config');
  args[at + 1] = join(root, args[at + 1]);
  return { root, args, configFile: args[at + 1]!, volumes };
}
