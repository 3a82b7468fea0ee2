// How changes reach the server: editor renames, git checkout, the Kubernetes ..data symlink
// swap (for the config and for a mounted TLS Secret), bursts of writes, and a reload storm under
// continuous sending that must lose and reject nothing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { baseConfig, makeEnv, spawnMailplane, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { serverCert } from './helpers/tls.js';

async function status(mp: MailplaneProcess): Promise<{ generation: number; size: number; fingerprint: string }> {
  const s = await mp.status();
  return { generation: s.applied.generation, size: s.specs.policy.maxMessageSize, fingerprint: s.tls?.fingerprint256 };
}

async function untilSize(mp: MailplaneProcess, size: number): Promise<void> {
  await mp.waitFor(`maxMessageSize ${size}`, async () => (await status(mp)).size === size);
}

test('an editor that writes a temp file and renames it over the config', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const tmp = join(env.dir, '.mailserver.yaml.swp');
    writeFileSync(tmp, baseConfig(env, { maxMessageSize: 1234567 }));
    renameSync(tmp, env.configFile);
    await untilSize(mp, 1234567);
    assert.equal((await status(mp)).generation, 2);
  } finally {
    await mp.stop();
  }
});

test('git checkout of another revision of the config', async () => {
  const env = await makeEnv();
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd: env.dir, stdio: 'pipe' });
  writeFileSync(env.configFile, baseConfig(env));
  git('init', '-q');
  git('add', 'mailserver.yaml');
  git('commit', '-qm', 'one');
  writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: 2222222 }));
  git('commit', '-qam', 'two');
  const mp = spawnMailplane(env);
  await mp.waitReady();
  try {
    assert.equal((await status(mp)).size, 2222222);
    git('checkout', '-q', 'HEAD~1', '--', 'mailserver.yaml');
    await untilSize(mp, 1000000);
    git('checkout', '-q', 'HEAD', '--', 'mailserver.yaml');
    await untilSize(mp, 2222222);
  } finally {
    await mp.stop();
  }
});

/** A folder laid out the way the kubelet mounts a ConfigMap or Secret. */
class ProjectedVolume {
  private n = 0;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** Publishes a new revision: new timestamped folder, ..data_tmp symlink, atomic rename over ..data. */
  publish(files: Record<string, string>): void {
    const rev = `..2026_11_29_${String(++this.n).padStart(4, '0')}`;
    const revDir = join(this.dir, rev);
    mkdirSync(revDir);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(revDir, name), content);
    const old = readdirSync(this.dir).filter((f) => f.startsWith('..2026') && f !== rev);
    symlinkSync(rev, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    for (const name of Object.keys(files)) {
      try {
        symlinkSync(join('..data', name), join(this.dir, name));
      } catch {}
    }
    for (const o of old) rmSync(join(this.dir, o), { recursive: true });
  }
}

test('Kubernetes ..data symlink swap: config changes are seen three times in a row, and Secret rotation too', async () => {
  const base = await makeEnv();
  const cm = new ProjectedVolume(join(base.dir, 'config'));
  const secret = new ProjectedVolume(join(base.dir, 'tls-secret'));
  const first = serverCert();
  secret.publish({ 'tls.crt': first.certPem, 'tls.key': first.keyPem });
  const env: Env = { ...base, configFile: join(cm.dir, 'mailserver.yaml'), certFile: join(secret.dir, 'tls.crt'), keyFile: join(secret.dir, 'tls.key') };
  cm.publish({ 'mailserver.yaml': baseConfig(env) });
  const mp = spawnMailplane(env);
  await mp.waitReady();
  try {
    for (const [i, size] of [111111, 222222, 333333].entries()) {
      cm.publish({ 'mailserver.yaml': baseConfig(env, { maxMessageSize: size }) });
      await untilSize(mp, size);
      assert.equal((await status(mp)).generation, i + 2);
    }
    const before = (await status(mp)).fingerprint;
    for (let i = 0; i < 2; i++) {
      const next = serverCert();
      const gen = (await status(mp)).generation;
      secret.publish({ 'tls.crt': next.certPem, 'tls.key': next.keyPem });
      await mp.waitFor('certificate rotated', async () => (await status(mp)).generation === gen + 1);
    }
    assert.notEqual((await status(mp)).fingerprint, before);
  } finally {
    await mp.stop();
  }
});

test('20 rapid writes converge to the last one', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    for (let i = 1; i <= 20; i++) writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: 500000 + i }));
    await untilSize(mp, 500020);
    const gen = (await status(mp)).generation;
    assert.ok(gen >= 2 && gen <= 21, `bursts collapse: generation ${gen}`);
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    assert.ok((await c.ehlo()).lines.some((l) => l.endsWith('SIZE 500020')));
    await c.quit();
  } finally {
    await mp.stop();
  }
});

test('a reload storm under continuous sending loses and rejects nothing', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  let sending = true;
  const results: number[] = [];
  const errors: string[] = [];
  const sender = async (id: number) => {
    while (sending) {
      try {
        const { client } = await SmtpClient.connect({ port: env.ports.mx });
        await client.ehlo();
        for (let k = 0; k < 3 && sending; k++) {
          const r = await client.send('x@example.net', ['bob@example.com'], message(`storm ${id} ${results.length}`));
          results.push(r.data?.code ?? r.rcpt[0]?.code ?? r.mail.code);
        }
        await client.quit();
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  };
  const senders = [1, 2, 3, 4].map(sender);
  try {
    for (let i = 0; i < 12; i++) {
      const cert = i % 4 === 3 ? serverCert() : null;
      if (cert) {
        writeFileSync(env.keyFile, cert.keyPem);
        writeFileSync(env.certFile, cert.certPem);
      }
      writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: 1000000 + i }));
      await untilSize(mp, 1000000 + i);
    }
  } finally {
    sending = false;
    await Promise.all(senders);
  }
  assert.deepEqual(errors, []);
  assert.ok(results.length > 20, `sent ${results.length}`);
  assert.deepEqual([...new Set(results)], [250]);
  const stored = readdirSync(join(env.dataDir, 'mail', 'bob', 'new')).length;
  assert.equal(stored, results.length, 'every 250 is in the Maildir');
  assert.equal(await mp.stop(), 0);
});
