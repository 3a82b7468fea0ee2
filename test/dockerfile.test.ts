// The Dockerfile, without a Docker engine (none runs here): it agrees with the chart (entrypoint,
// config path, user, ports), its runtime stage holds production dependencies only and all that
// the compiled code imports, and the files it copies into the image are enough to run
// `mailplane` from the image's own layout.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import { cpSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { mailplane, ROOT } from './helpers/cli.js';
import { CHART } from './helpers/helm.js';
import { serverCert, writeCert } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';

interface Instruction {
  readonly op: string;
  readonly args: string;
}

/** The stages of the Dockerfile, by name (the last one also as ''), with their instructions. */
function stages(): Map<string, Instruction[]> {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const out = new Map<string, Instruction[]>();
  let current: Instruction[] | null = null;
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    const [, op, args] = line.match(/^(\w+)\s+(.*)$/)!;
    if (op!.toUpperCase() === 'FROM') {
      current = [];
      out.set(args!.match(/\sAS\s+(\S+)$/i)?.[1] ?? '', current);
    }
    current?.push({ op: op!.toUpperCase(), args: args! });
  }
  return out;
}

const final = () => stages().get('')!;
const one = (stage: Instruction[], op: string) => {
  const found = stage.filter((i) => i.op === op);
  assert.equal(found.length, 1, `one ${op} expected`);
  return found[0]!.args;
};
const values = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
/** What /usr/local/bin/mailplane links to in the runtime stage. */
const onPath = () => {
  const link = final()
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args.match(/ln -s (\S+) \/usr\/local\/bin\/mailplane\b/)?.[1])
    .find(Boolean);
  assert.ok(link, 'no RUN ln -s … /usr/local/bin/mailplane');
  return link;
};

test('the runtime stage keeps no package manager, carries OCI labels, and every stage is on the base pinned by digest', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const pin = text.match(/^ARG NODE_IMAGE=(\S+)$/m)?.[1] ?? '';
  assert.match(pin, /^node:24-bookworm-slim@sha256:[0-9a-f]{64}$/, 'Node 24, pinned by digest');
  for (const [name, stage] of stages()) assert.equal(stage[0]!.args.split(/\s+/)[0], '${NODE_IMAGE}', `stage ${name || 'runtime'} is on the pinned base`);
  const removed = final()
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join(' ');
  for (const gone of [
    '/usr/local/lib/node_modules/npm',
    '/usr/local/lib/node_modules/corepack',
    '/opt/yarn-*',
    '/usr/local/bin/npm',
    '/usr/local/bin/npx',
    '/usr/local/bin/yarn',
    '/usr/local/bin/corepack',
  ]) {
    assert.ok(removed.includes(gone), `the runtime stage removes ${gone}`);
  }
  assert.ok(removed.includes('rm -rf /var/lib/apt/lists/*'));
  const labels = final()
    .filter((i) => i.op === 'LABEL')
    .map((i) => i.args)
    .join(' ');
  for (const key of ['title', 'description', 'licenses', 'version', 'revision', 'created', 'base.name'])
    assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${key.replace('.', '\\.')}=`), key);
  assert.match(labels, /licenses="Apache-2\.0"/);
});

test("the image's entrypoint is the mailplane command under tini, by default `run` with the config path the chart mounts, as the chart's user, on the config's ports", () => {
  const stage = final();
  assert.deepEqual(JSON.parse(one(stage, 'ENTRYPOINT')), ['/usr/bin/tini', '--', 'mailplane']);
  assert.deepEqual(JSON.parse(one(stage, 'CMD')), ['run', '--config', `/etc/mailplane/config/${values.configMapKey}`]);
  assert.ok(
    stage.some((i) => i.op === 'RUN' && /apt-get install -y --no-install-recommends tini\b/.test(i.args)),
    'tini is installed as PID 1',
  );
  assert.match(onPath(), /^\/app\/bin\/mailplane\.js$/, 'mailplane is on PATH');
  assert.equal(one(stage, 'USER'), `${values.podSecurityContext.runAsUser}:${values.podSecurityContext.runAsGroup}`);
  const ports = one(stage, 'EXPOSE').split(/\s+/).map(Number);
  assert.deepEqual(ports, [...values.config.smtp.listeners.map((l: { port: number }) => l.port), Number(values.config.observability.listen.split(':')[1])]);
});

test('the runtime stage has production dependencies only, and they cover every package the compiled code imports', () => {
  const deps = stages().get('deps')!;
  assert.ok(
    deps.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args)),
    'deps stage installs with --omit=dev',
  );
  assert.ok(!final().some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args)), 'nothing is installed in the runtime stage itself');
  assert.ok(final().some((i) => i.op === 'COPY' && i.args.startsWith('--from=deps ') && i.args.includes('node_modules')));

  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const files = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
  const missing = new Set<string>();
  for (const file of [...files(join(ROOT, 'dist')), join(ROOT, 'bin/mailplane.js')].filter((f) => f.endsWith('.js'))) {
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      if (!spec || spec.startsWith('.') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      if (!pkg.dependencies[name]) missing.add(`${name} (imported by ${relative(ROOT, file)})`);
    }
  }
  assert.deepEqual([...missing], [], 'packages the image would lack');
});

test('the files the image gets are enough to run mailplane from the image layout', async () => {
  const app = tempDir('image');
  // the runtime stage's COPY lines, with the build stages standing for what they make here:
  // dist is what `npm run build` compiles, node_modules what `npm ci` installs
  for (const { args } of final().filter((i) => i.op === 'COPY')) {
    const parts = args.split(/\s+/);
    const from = parts[0]!.startsWith('--from=') ? parts.shift()!.slice(7) : null;
    const [src, dest] = parts as [string, string];
    const local = from ? join(ROOT, src.replace(/^\/(src|app)\//, '')) : join(ROOT, src);
    const target = join(app, dest === './' ? src : dest);
    if (from === 'deps') symlinkSync(local, target);
    else cpSync(local, target, { recursive: true });
  }
  // .dockerignore must not hide what the COPY lines take from the context
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));
  for (const { args } of final().filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) assert.ok(!ignored.includes(args.split(/\s+/)[0]!), args);

  const dir = tempDir('image-config');
  writeCert(dir, serverCert());
  writeFileSync(
    join(dir, 'mailserver.yaml'),
    'version: 1\nhostname: mail.example.com\ndomains: [example.com]\nsmtp:\n  tls: { certFile: tls.crt, keyFile: tls.key }\n  listeners:\n    - { name: mx, port: 2525, role: mx }\n',
  );
  // ENTRYPOINT mailplane: the link on PATH, into the app
  const bin = join(app, relative('/app', onPath()));
  const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { cwd: app, encoding: 'utf8' });
  const validated = run(['validate', join(dir, 'mailserver.yaml')]);
  assert.equal(validated.status, 0, validated.stdout + validated.stderr);
  assert.match(validated.stdout, /mailserver\.yaml: ok/);
  assert.equal(run(['--version']).stdout.trim(), (await mailplane(['--version'])).stdout.trim());
});
