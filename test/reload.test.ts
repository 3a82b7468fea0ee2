// Hot reconcile against the real server: the file is rewritten, the server converges (or keeps
// the last good config and says why), and sessions never notice.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { test } from 'node:test';
import { issueCertificate } from '../src/tls/devcert.js';
import { mailplane } from './helpers/cli.js';
import { accepts, freePort } from './helpers/ports.js';
import { baseConfig, makeEnv, spawnMailplane, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { serverCert, testCa } from './helpers/tls.js';

async function generation(mp: MailplaneProcess): Promise<number> {
  return (await mp.status()).applied.generation;
}

async function untilGeneration(mp: MailplaneProcess, n: number): Promise<void> {
  await mp.waitFor(`generation ${n}`, async () => (await generation(mp)) >= n);
}

function fingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', servername: 'mail.example.com', ca: testCa().certPem }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.once('error', reject);
  });
}

async function quickMessage(env: Env, to = 'bob@example.com'): Promise<number> {
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  const r = await c.send('x@example.net', [to], message('probe'));
  await c.quit();
  return r.data?.code ?? r.rcpt[0]!.code;
}

test('valid → invalid → valid: the gauge and generation follow, and the server serves throughout', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    assert.equal(await mp.metric('mailplane_config_last_reload_successful'), 1);
    const hash1 = (await mp.status()).applied.hash;
    assert.equal(await mp.metric('mailplane_config_generation_info', `hash="${hash1}"`), 1);
    assert.equal(await mp.metric('mailplane_config_generation'), 1);
    writeFileSync(env.configFile, baseConfig(env).replace('maxMessageSize: "1MB"', 'maxMessageSize: "lots"'));
    await mp.waitFor('invalid reload', async () => (await mp.metric('mailplane_config_last_reload_successful')) === 0);
    const s = await mp.status();
    assert.equal(s.applied.generation, 1);
    assert.equal(s.lastAttempt.outcome, 'invalid');
    assert.match(s.lastAttempt.errors[0], new RegExp(`^${env.configFile}:5:19: smtp\\.maxMessageSize: must be a size`));
    assert.equal(await quickMessage(env), 250, 'still serving the last good config');
    assert.match(mp.logs, /config invalid, keeping the previous generation/);
    writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: '2MB' }));
    await untilGeneration(mp, 2);
    assert.equal(await mp.metric('mailplane_config_last_reload_successful'), 1);
    const hash2 = (await mp.status()).applied.hash;
    assert.notEqual(hash2, hash1);
    assert.equal(await mp.metric('mailplane_config_generation_info', `hash="${hash2}"`), 1, 'an _info metric: value 1');
    assert.equal(await mp.metric('mailplane_config_generation'), 2);
    assert.equal(await mp.metric('mailplane_config_generation_info', `hash="${hash1}"`), undefined, 'the old hash series is gone');
    assert.equal(await mp.metric('mailplane_config_reloads_total', 'outcome="invalid"'), 1);
    assert.equal(await mp.metric('mailplane_config_reloads_total', 'outcome="applied"'), 2);
    const since = await mp.metric('mailplane_config_last_reload_success_timestamp_seconds');
    assert.ok(since! > Date.now() / 1000 - 60 && since! <= Date.now() / 1000 + 1);
    assert.ok((await mp.metric('mailplane_reconcile_duration_seconds_count'))! >= 3);
    const expiry = await mp.metric('mailplane_tls_certificate_expiry_timestamp_seconds', 'listener="mx"');
    assert.equal(expiry, Math.floor(Date.parse((await mp.status()).tls.notAfter) / 1000));
    assert.equal(await quickMessage(env), 250);
  } finally {
    assert.equal(await mp.stop(), 0);
  }
});

test('a session keeps the policy it started with; new sessions get the new one; no socket closes', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await c.ehlo();
    assert.equal((await c.cmd('MAIL FROM:<x@example.net>')).code, 250);
    // bob leaves, example.org is dropped, the size limit shrinks
    const users = `      - { name: alice, passwordHash: "${(await import('./helpers/server.js')).USERS.alice.hash}", aliases: [postmaster] }\n`;
    writeFileSync(env.configFile, baseConfig(env, { users, maxMessageSize: 2000 }).replace('domains: [example.com, example.org]', 'domains: [example.com]'));
    await untilGeneration(mp, 2);
    assert.equal((await c.cmd('RCPT TO:<bob@example.org>')).code, 250, 'pinned policy: bob and example.org still exist for this session');
    const [, r] = await c.data(message('pinned', `${'y'.repeat(998)}\r\n`.repeat(3)));
    assert.equal(r.code, 250, 'pinned size limit');
    await c.quit();
    const d = (await SmtpClient.connect({ port: env.ports.mx })).client;
    const ehlo = await d.ehlo();
    assert.ok(ehlo.lines.some((l) => l.endsWith('SIZE 2000')));
    assert.equal((await d.cmd('MAIL FROM:<x@example.net>')).code, 250);
    assert.equal((await d.cmd('RCPT TO:<bob@example.com>')).code, 550);
    assert.equal((await d.cmd('RCPT TO:<alice@example.org>')).code, 554, 'example.org is no longer ours');
    await d.quit();
    const plan = (await mp.status()).lastAttempt;
    assert.equal(plan.outcome, 'applied');
    assert.match(mp.logs, /"msg":"config applied".*update policy/);
    assert.ok(
      !/rebind|remove listener/.test(
        mp.logs
          .split('\n')
          .filter((l) => l.includes('config applied'))
          .pop()!,
      ),
    );
  } finally {
    await mp.stop();
  }
});

test('port change: the old port stops accepting while its session completes; the new port accepts at once', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const old = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await old.ehlo();
    assert.equal((await old.cmd('MAIL FROM:<x@example.net>')).code, 250);
    writeFileSync(env.configFile, baseConfig(env).replace(`port: ${env.ports.mx}, role: mx`, `port: ${env.ports.spare}, role: mx`));
    await untilGeneration(mp, 2);
    assert.equal(await accepts(env.ports.spare), true);
    assert.equal(await accepts(env.ports.mx), false);
    const s = await mp.status();
    assert.deepEqual(
      s.listeners.filter((l: { name: string }) => l.name === 'mx').map((l: { port: number; state: string }) => [l.port, l.state]),
      [
        [env.ports.spare, 'serving'],
        [env.ports.mx, 'draining'],
      ],
    );
    assert.equal((await old.cmd('RCPT TO:<bob@example.com>')).code, 250);
    const [, r] = await old.data(message('on the old port'));
    assert.equal(r.code, 250, 'no 421 in the middle of a transaction');
    await old.quit();
    await mp.waitFor('drained', async () => (await mp.status()).listeners.every((l: { state: string }) => l.state === 'serving'));
    const n = (await SmtpClient.connect({ port: env.ports.spare })).client;
    await n.ehlo();
    assert.equal((await n.send('x@example.net', ['bob@example.com'], message('new port'))).data!.code, 250);
    await n.quit();
  } finally {
    await mp.stop();
  }
});

test('TLS mode change on the same port: no moment where the port refuses', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    let refusals = 0;
    let probing = true;
    const prober = (async () => {
      while (probing) {
        if (!(await accepts(env.ports.submission))) refusals++;
        await new Promise((r) => setTimeout(r, 2)); // steady probing, without starving the machine
      }
    })();
    try {
      writeFileSync(env.configFile, baseConfig(env).replace(`port: ${env.ports.submission}, role: submission, tls: starttls`, `port: ${env.ports.submission}, role: submission, tls: implicit`));
      await untilGeneration(mp, 2);
    } finally {
      probing = false;
      await prober;
    }
    assert.equal(refusals, 0);
    const c = await SmtpClient.connect({ port: env.ports.submission, implicitTls: true });
    assert.equal(c.greeting.code, 220, 'now implicit TLS');
    await c.client.quit();
  } finally {
    await mp.stop();
  }
});

test('certificate rotation is seen by new TLS clients without a restart; a mismatched key keeps the old one', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const before = await fingerprint(env.ports.submissions);
    const pid = mp.pid;
    const next = serverCert();
    // cert-manager style: new files written next to the old ones and renamed into place
    writeFileSync(`${env.keyFile}.new`, next.keyPem);
    writeFileSync(`${env.certFile}.new`, next.certPem);
    renameSync(`${env.keyFile}.new`, env.keyFile);
    renameSync(`${env.certFile}.new`, env.certFile);
    await untilGeneration(mp, 2);
    const after = await fingerprint(env.ports.submissions);
    assert.notEqual(after, before);
    assert.equal(mp.pid, pid);
    assert.ok(mp.running);
    const s = await mp.status();
    assert.equal(s.tls.fingerprint256, after);
    // STARTTLS listeners see it too
    const c = (await SmtpClient.connect({ port: env.ports.submission })).client;
    await c.ehlo();
    await c.starttls();
    assert.equal(c.tlsSocket!.getPeerCertificate().fingerprint256, after);
    await c.quit();

    // a certificate whose key is not the one on disk: rejected, the old pair keeps serving
    const stray = issueCertificate({ commonName: 'mail.example.com', issuer: { certPem: testCa().certPem, keyPem: testCa().keyPem } });
    writeFileSync(env.certFile, stray.certPem);
    await mp.waitFor('mismatch reported', async () => (await mp.status()).lastAttempt.outcome === 'invalid');
    const st = await mp.status();
    assert.match(st.lastAttempt.errors.join('\n'), /smtp\.tls\.keyFile: private key does not match the certificate/);
    assert.equal(st.applied.generation, 2);
    assert.equal(await fingerprint(env.ports.submissions), after);
  } finally {
    await mp.stop();
  }
});

/** The certificates a TLS client is sent: the leaf first, then what the server adds after it. */
function servedChain(port: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' }, () => {
      const names: string[] = [];
      let c = s.getPeerCertificate(true);
      const seen = new Set<string>();
      while (c && c.fingerprint256 && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        names.push(c.subject.CN as string);
        c = c.issuerCertificate;
      }
      s.destroy();
      resolve(names);
    });
    s.on('error', reject);
  });
}

test('adding the missing intermediate to certFile (same leaf) is applied: new TLS clients get the whole chain', async () => {
  const env = await makeEnv();
  const intermediate = issueCertificate({ commonName: 'mailplane test intermediate', isCA: true, issuer: { certPem: testCa().certPem, keyPem: testCa().keyPem } });
  const leaf = issueCertificate({ commonName: 'mail.example.com', dnsNames: ['mail.example.com', 'localhost'], issuer: intermediate });
  writeFileSync(env.certFile, leaf.certPem);
  writeFileSync(env.keyFile, leaf.keyPem);
  const mp = await startMailplane(env, baseConfig(env));
  try {
    assert.deepEqual(await servedChain(env.ports.submissions), ['mail.example.com'], 'the leaf alone, as configured');
    writeFileSync(env.certFile, `${leaf.certPem}${intermediate.certPem}`);
    await untilGeneration(mp, 2);
    assert.deepEqual(await servedChain(env.ports.submissions), ['mail.example.com', 'mailplane test intermediate']);
    const c = (await SmtpClient.connect({ port: env.ports.submission })).client;
    await c.ehlo();
    await c.starttls();
    assert.equal(c.tlsSocket!.getPeerCertificate(true).issuerCertificate?.subject.CN, 'mailplane test intermediate', 'STARTTLS too');
    await c.quit();
    assert.match(mp.logs, /"config applied".*replace the certificate chain of [0-9a-f]{16}: swapped in place, no restart/);
  } finally {
    await mp.stop();
  }
});

test('a bind conflict rolls the whole apply back; every old port keeps accepting', async () => {
  const env = await makeEnv();
  const squatter = createServer().listen(env.ports.spare, '127.0.0.1');
  await new Promise((r) => squatter.once('listening', r));
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const withExtra = baseConfig(env)
      .replace(`port: ${env.ports.mx}, role: mx`, `port: ${env.ports.plain}, role: mx`)
      .replace('  auth:\n', `    - { name: extra, address: 127.0.0.1, port: ${env.ports.spare}, role: mx, tls: none }\n  auth:\n`);
    writeFileSync(env.configFile, withExtra);
    const res = await mp.http('/-/reload', { method: 'POST' });
    const body = (await res.json()) as { outcome: string; errors: string[]; generation: number };
    if (body.outcome !== 'rolled_back') {
      // the file watcher may have run this reconcile first; the HTTP one then finds nothing new to try
      assert.equal((await mp.status()).lastAttempt.outcome, 'rolled_back');
    } else {
      assert.equal(res.status, 500);
      assert.match(body.errors[0]!, /listener extra: cannot bind 127\.0\.0\.1:\d+: address already in use/);
    }
    assert.equal(await mp.metric('mailplane_config_last_reload_successful'), 0);
    assert.equal(await generation(mp), 1);
    for (const p of [env.ports.mx, env.ports.submission, env.ports.submissions]) assert.equal(await accepts(p), true, `port ${p}`);
    assert.equal(await accepts(env.ports.plain), false, 'the port the failed plan would have moved mx to was released');
    assert.equal(await quickMessage(env), 250);
  } finally {
    squatter.close();
    await mp.stop();
  }
});

test('POST /-/reload and SIGHUP: outcomes and HTTP codes', async () => {
  const env = await makeEnv();
  writeFileSync(join(env.dir, 'placeholder'), '');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(env.dir, { recursive: true });
  writeFileSync(env.configFile, baseConfig(env));
  const mp = spawnMailplane(env, ['--no-watch']);
  await mp.waitReady();
  try {
    let res = await mp.http('/-/reload', { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { outcome: string }).outcome, 'unchanged');
    assert.equal((await mp.http('/-/reload')).status, 405);
    writeFileSync(env.configFile, 'version: 1\nhostname: mail.example.com\ndomains: [example.com]\nsmtp:\n  listeners: 7\n');
    res = await mp.http('/-/reload', { method: 'POST' });
    assert.equal(res.status, 422);
    const bad = (await res.json()) as { outcome: string; errors: string[]; generation: number };
    assert.equal(bad.outcome, 'invalid');
    assert.equal(bad.generation, 1);
    assert.deepEqual(bad.errors, [`${env.configFile}:5:14: smtp.listeners: must be a list, got integer 7`]);
    writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: '3MB' }));
    res = await mp.http('/-/reload', { method: 'POST' });
    assert.equal(res.status, 200);
    const ok = (await res.json()) as { outcome: string; generation: number; plan: string[] };
    assert.equal(ok.outcome, 'applied');
    assert.equal(ok.generation, 2);
    assert.deepEqual(ok.plan, ['update policy: new sessions only (maxMessageSize: 1000000 → 3000000)']);
    // without watching, a change waits for a signal
    writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: '4MB' }));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await generation(mp), 2, 'not watched: unchanged until asked');
    mp.child.kill('SIGHUP');
    await untilGeneration(mp, 3);
  } finally {
    await mp.stop();
  }
});

test('a removed listener stops accepting and its metric series disappear', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env, { plainListener: true }));
  try {
    assert.equal(await mp.metric('mailplane_listener_up', 'listener="plain"'), 1);
    writeFileSync(env.configFile, baseConfig(env));
    await untilGeneration(mp, 2);
    assert.equal(await accepts(env.ports.plain), false);
    await mp.waitFor('series gone', async () => !(await mp.metrics()).includes('listener="plain"'));
    assert.equal(await mp.metric('mailplane_listener_up', 'listener="mx"'), 1);
  } finally {
    await mp.stop();
  }
});

test('start-up with an invalid file exits non-zero with the errors', async () => {
  const env = await makeEnv();
  writeFileSync(env.configFile, baseConfig(env).replace('role: mx, tls: starttls', 'role: mx, tls: sometimes'));
  const mp = spawnMailplane(env);
  const code = await mp.exited;
  assert.equal(code, 1);
  assert.match(mp.logs, /cannot start: the config is invalid/);
  assert.match(mp.logs, new RegExp(`${env.configFile}:\\d+:\\d+: smtp\\.listeners\\[0\\]\\.tls: must be one of none, starttls, implicit; got "sometimes"`));
});

test('mailplane plan against a running server: 0 when it matches, 2 with the actions otherwise', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const server = `http://127.0.0.1:${env.ports.ops}`;
    const same = await mailplane(['plan', env.configFile, '--server', server]);
    assert.equal(same.code, 0, same.stdout + same.stderr);
    assert.match(same.stdout, /^No changes/);
    const next = join(env.dir, 'next.yaml');
    writeFileSync(next, baseConfig(env).replace(`port: ${env.ports.mx}, role: mx`, `port: ${env.ports.spare}, role: mx`).replace('[example.com, example.org]', '[example.com]'));
    const changed = await mailplane(['plan', next, '--server', server]);
    assert.equal(changed.code, 2, changed.stderr);
    assert.match(changed.stdout, /^Plan: 2 changes, 1 binding or closing sockets or draining sessions\./);
    assert.match(changed.stdout, /^! rebind listener mx: new connections get the new settings, open sessions drain\n {4}port: \d+ → \d+$/m);
    assert.match(changed.stdout, /^~ update policy: new sessions only\n {4}domains removed: example\.org$/m);
    const unreachable = await mailplane(['plan', next, '--server', `http://127.0.0.1:${await freePort()}`]);
    assert.equal(unreachable.code, 1);
    writeFileSync(next, 'version: 2\n');
    const invalid = await mailplane(['plan', env.configFile, next]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /next\.yaml:1:10: version: must be 1/);
  } finally {
    await mp.stop();
  }
});
