// The npm package is complete: `npm pack` makes a tarball that installs and runs on its own, so a
// config repository's CI can use it without this repository: in an empty folder,
// `npx ./mailplane-<version>.tgz validate mailserver.yaml` validates (its dependencies come from
// the registry, or npm's cache). The tarball is packed from the built dist/ (npm test builds
// first; --ignore-scripts, so that packing does not rebuild dist/ under the tests running beside).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ROOT } from './helpers/cli.js';
import { serverCert, writeCert } from './helpers/tls.js';
import { tempDir } from './helpers/tmp.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const env = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

test('npm pack makes a complete package, and `npx ./mailplane-*.tgz validate` works in an empty folder', { timeout: 600_000 }, () => {
  assert.ok(existsSync(join(ROOT, 'dist/cli/main.js')), 'dist/ is built (npm test builds first)');
  const out = tempDir('npm-pack');
  const packed = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], { cwd: ROOT, encoding: 'utf8', env })) as {
    filename: string;
    files: { path: string }[];
  }[];
  const files = packed[0]!.files.map((f) => f.path);
  for (const f of ['package.json', 'README.md', 'bin/mailplane.js', 'dist/cli/main.js', 'dist/outbound/queue-loader-worker.js', 'schema/mailserver.schema.json'])
    assert.ok(files.includes(f), `${f} is in the package`);
  for (const f of files) assert.ok(!/^(src|test|bench|helm|scripts|node_modules)\//.test(f), `${f} does not belong in the package`);
  const tarball = join(out, packed[0]!.filename);
  assert.equal(packed[0]!.filename, `${pkg.name}-${pkg.version}.tgz`);

  // a config repository: nothing but the config and its certificate
  const repo = tempDir('config-repo');
  writeCert(repo, serverCert('mail.example.com'));
  writeFileSync(
    join(repo, 'mailserver.yaml'),
    'version: 1\nhostname: mail.example.com\ndomains: [example.com]\nsmtp:\n  tls: { certFile: tls.crt, keyFile: tls.key }\n  listeners:\n    - { name: mx, port: 2525, role: mx }\n',
  );
  writeFileSync(join(repo, 'broken.yaml'), 'version: 1\nhostname: mail.example.com\ndomains: [example.com]\nsmtp:\n  listeners:\n    - { name: mx, prot: 2525, role: mx }\n');
  // as the docs say: the tarball beside the config, `npx ./mailplane-<version>.tgz …`
  copyFileSync(tarball, join(repo, packed[0]!.filename));
  const npx = (args: string[]) => spawnSync('npx', ['--yes', '--prefer-offline', `./${packed[0]!.filename}`, ...args], { cwd: repo, encoding: 'utf8', env, timeout: 300_000 });
  const ok = npx(['validate', 'mailserver.yaml']);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /mailserver\.yaml: ok/);
  const bad = npx(['validate', 'broken.yaml']);
  assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout + bad.stderr, /unknown key 'prot'; did you mean 'port'\?/);
  assert.equal(npx(['--version']).stdout.trim(), pkg.version);
  assert.ok(!existsSync(join(repo, 'node_modules')), 'nothing installed into the config repository');
});

test('.pre-commit-hooks.yaml: a hook running `mailplane validate` (a bin of this package) on mailserver.yaml files', () => {
  const hooks = parseYaml(readFileSync(join(ROOT, '.pre-commit-hooks.yaml'), 'utf8')) as { id: string; entry: string; language: string; files: string; pass_filenames: boolean }[];
  const hook = hooks.find((h) => h.id === 'mailplane-validate');
  assert.ok(hook);
  assert.equal(hook.language, 'node');
  assert.equal(hook.entry, 'mailplane validate');
  assert.ok(Object.keys((pkg as unknown as { bin: Record<string, string> }).bin).includes(hook.entry.split(' ')[0]!));
  assert.equal(hook.pass_filenames, true);
  const files = new RegExp(hook.files);
  for (const f of ['mailserver.yaml', 'prod/mailserver.yml']) assert.ok(files.test(f), f);
  for (const f of ['values.yaml', 'mailserver.yaml.bak', 'notmailserver.yaml']) assert.ok(!files.test(f), f);
});
