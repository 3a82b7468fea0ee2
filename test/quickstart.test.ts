// The README's quick start, literally: `npm start` with no mailserver.yaml serves the embedded
// config, and a mail client logged in as the demo user gets a message into the Maildir.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import nodemailer from 'nodemailer';
import { ROOT } from './helpers/cli.js';
import { waitFor } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

test('npm start serves the quick start and the demo user can send mail', async () => {
  const busy = await fetch('http://127.0.0.1:9465/healthz').then(
    () => true,
    () => false,
  );
  assert.equal(busy, false, 'port 9465 is taken by another process; the quick start needs it');
  const dir = tempDir('quickstart');
  // npm runs the script in the package folder; INIT_CWD (this temp folder) is where data goes
  const { INIT_CWD: _i, npm_lifecycle_event: _e, ...parentEnv } = process.env;
  // its own process group, so that the signal reaches npm, its shell and mailplane alike
  const child = spawn('npm', ['--prefix', ROOT, 'start'], { cwd: dir, env: parentEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {}
  };
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  process.on('exit', () => signalGroup('SIGKILL'));
  try {
    await waitFor(
      'quick start ready',
      async () => (await fetch('http://127.0.0.1:9465/readyz').catch(() => null))?.status === 200,
      30_000,
      () => out,
    );
    assert.match(out, /login demo \/ demo, address demo@localhost/);
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: 2587, secure: false, requireTLS: true, auth: { user: 'demo', pass: 'demo' }, tls: { rejectUnauthorized: false } });
    const info = await t.sendMail({ from: 'demo@localhost', to: 'demo@localhost', subject: 'quick start works', text: 'hello' });
    assert.match(info.response, /^250 /);
    t.close();
    const dirNew = join(dir, 'data', 'mail', 'demo', 'new');
    const files = readdirSync(dirNew);
    assert.equal(files.length, 1);
    assert.match(readFileSync(join(dirNew, files[0]!), 'utf8'), /Subject: quick start works/);
    assert.ok(readFileSync(join(dir, 'data', 'tls', 'dev.crt'), 'utf8').includes('BEGIN CERTIFICATE'));
  } finally {
    signalGroup('SIGTERM');
    await exited;
    await waitFor(
      'mailplane to stop',
      () => /"msg":"stopped"|INFO {2}stopped/.test(out),
      20_000,
      () => out,
    );
  }
});
