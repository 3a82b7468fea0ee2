// Runs the real, pinned helm binary (installed into .tools/ by scripts/install-helm.ts) on the
// chart, and parses what it renders.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ensureHelm } from '../../scripts/install-helm.js';
import type { Manifest } from './k8s-validate.js';
import { tempDir } from './tmp.js';

export const CHART = fileURLToPath(new URL('../../helm/mailplane', import.meta.url));
export const HELM_FIXTURES = fileURLToPath(new URL('../fixtures/helm', import.meta.url));

let helmPath: string | null | undefined;

/**
 * The helm binary, or null outside CI when it cannot be installed (the caller skips loudly).
 * In CI a missing helm is a failure.
 */
export function helmOrSkip(): string | null {
  if (helmPath !== undefined) return helmPath;
  try {
    helmPath = ensureHelm();
  } catch (e) {
    if (process.env.CI) throw new Error(`helm is required in CI and could not be installed: ${(e as Error).message}`, { cause: e });
    console.warn(`\n*** SKIPPED LOUDLY: helm could not be installed (${(e as Error).message}); chart not checked ***\n`);
    helmPath = null;
  }
  return helmPath;
}

// helm keeps caches and settings under $HOME unless told otherwise
const home = tempDir('helm-home');
const helmEnv = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };

export interface HelmResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function helm(args: string[]): HelmResult {
  const bin = helmOrSkip();
  if (!bin) throw new Error('helm is not available');
  const r = spawnSync(bin, args, { env: helmEnv, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface RenderOptions {
  /** values files, relative to test/fixtures/helm or absolute */
  readonly values?: readonly string[];
  /** --set-json pairs: path → value */
  readonly set?: Readonly<Record<string, unknown>>;
  readonly release?: string;
  readonly namespace?: string;
  /** another copy of the chart (default: helm/mailplane) */
  readonly chart?: string;
  /** leave out fixtures/helm/image.yaml (the image.repository every other render names) */
  readonly noImage?: boolean;
}

/** The values file naming an image, which the chart requires: given first, so a test's own values override it. */
export const IMAGE_VALUES = join(HELM_FIXTURES, 'image.yaml');

function templateArgs(o: RenderOptions): string[] {
  const args = ['template', o.release ?? 'mail', o.chart ?? CHART, '--namespace', o.namespace ?? 'mail'];
  if (!o.noImage) args.push('-f', IMAGE_VALUES);
  for (const v of o.values ?? []) args.push('-f', v.startsWith('/') ? v : join(HELM_FIXTURES, v));
  for (const [k, v] of Object.entries(o.set ?? {})) args.push('--set-json', `${k}=${JSON.stringify(v)}`);
  return args;
}

/** `helm template`, which must succeed; the manifests it renders. */
export function render(o: RenderOptions = {}): Manifest[] {
  const r = helm(templateArgs(o));
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}):\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => {
      if (d.errors.length) throw new Error(`helm rendered invalid YAML: ${d.errors[0]!.message}`);
      return d.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}

/** `helm template` that is expected to fail: its result. */
export function renderFailing(o: RenderOptions): HelmResult {
  return helm(templateArgs(o));
}

export function find(manifests: readonly Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? `/${name}` : ''}, found ${found.length}: ${manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ')}`);
  return found[0]!;
}

export function findAll(manifests: readonly Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind);
}
