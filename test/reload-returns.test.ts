// Hot reload never goes deaf: a file that disappears and comes back — renamed away, deleted and
// written anew, a symlink swapped to a dangling target and back — is watched again at once, the
// config and every file it references; the good file clears the error. And what the log says
// about reloads: "unchanged" when asked, "recovered", a certificate renewal settling, the expiry
// warning once per certificate, start-up failures without a "previous generation".
import assert from 'node:assert/strict';
import { renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { issueCertificate } from '../src/tls/devcert.js';
import { baseConfig, makeEnv, sleep, spawnMailplane, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { serverCert, testCa } from './helpers/tls.js';

const gauge = (mp: MailplaneProcess) => mp.metric('mailplane_config_last_reload_successful');
const generation = async (mp: MailplaneProcess): Promise<number> => (await mp.status()).applied.generation;

/** The JSON log lines with this msg. */
function logLines(mp: MailplaneProcess, msg: string): Record<string, unknown>[] {
  return mp.logs
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

/** Waits until the server reports the config as invalid (in /status and the gauge) with this error. */
async function untilFailing(mp: MailplaneProcess, error: RegExp): Promise<void> {
  await mp.waitFor('the error in /status and the gauge at 0', async () => {
    const s = await mp.status();
    return s.lastAttempt?.outcome === 'invalid' && s.lastAttempt.errors.some((e: string) => error.test(e)) && (await gauge(mp)) === 0;
  });
}

/** Waits until the error is gone from /status and the gauge, and says how long that took. */
async function untilCleared(mp: MailplaneProcess): Promise<number> {
  const t0 = Date.now();
  await mp.waitFor(
    'the error cleared',
    async () => {
      const s = await mp.status();
      return s.lastAttempt?.outcome !== 'invalid' && s.lastAttempt.errors.length === 0 && (await gauge(mp)) === 1;
    },
    5000,
  );
  return Date.now() - t0;
}

/**
 * The file goes (vanish), the server reports it, the file comes back (restore): the error clears
 * within a second (generous bound: 3 s), twice in a row; then an edit made with `edit` still
 * applies, which proves the file is watched again.
 */
async function goesAndComesBack(mp: MailplaneProcess, o: { vanish: () => void; restore: () => void; error: RegExp; edit: () => void }): Promise<void> {
  for (let round = 1; round <= 2; round++) {
    o.vanish();
    await untilFailing(mp, o.error);
    o.restore();
    const ms = await untilCleared(mp);
    assert.ok(ms < 3000, `round ${round}: cleared after ${ms} ms`);
  }
  // log lines leave in batches: wait for them rather than assume they are out with /status
  await mp.waitFor('each return logged as a recovery', () => logLines(mp, 'config recovered: the file is good again').length === 2);
  const gen = await generation(mp);
  o.edit();
  await mp.waitFor('the edit applied', async () => (await generation(mp)) === gen + 1, 5000);
}

const sizeEdit =
  (env: Env, file = env.configFile) =>
  () =>
    writeFileSync(file, baseConfig(env, { maxMessageSize: 777777 }));

test('the config renamed away and back (mv; sleep; mv back): watched again, error cleared', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  const away = join(env.dir, 'away.yaml');
  try {
    await goesAndComesBack(mp, {
      vanish: () => renameSync(env.configFile, away),
      restore: () => renameSync(away, env.configFile),
      error: /cannot read config file: no such file/,
      edit: sizeEdit(env),
    });
  } finally {
    await mp.stop();
  }
});

test('the config deleted and written anew', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    await goesAndComesBack(mp, {
      vanish: () => unlinkSync(env.configFile),
      restore: () => writeFileSync(env.configFile, baseConfig(env)),
      error: /cannot read config file: no such file/,
      edit: sizeEdit(env),
    });
  } finally {
    await mp.stop();
  }
});

/** Points `link` at `target` atomically (a new symlink renamed over the old one, as the kubelet does). */
function swapLink(link: string, target: string): void {
  const tmp = `${link}.tmp`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, link);
}

test('the config is a symlink swapped to a dangling target and back', async () => {
  const env = await makeEnv();
  const real = join(env.dir, 'real.yaml');
  writeFileSync(real, baseConfig(env));
  symlinkSync(real, env.configFile);
  const mp = spawnMailplane(env);
  await mp.waitReady();
  try {
    await goesAndComesBack(mp, {
      vanish: () => swapLink(env.configFile, join(env.dir, 'nothing-here.yaml')),
      restore: () => swapLink(env.configFile, real),
      error: /cannot read config file: no such file/,
      edit: sizeEdit(env, real),
    });
  } finally {
    await mp.stop();
  }
});

test('a referenced file (the certificate) renamed away and back, then renewed', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  const away = join(env.dir, 'away.crt');
  try {
    await goesAndComesBack(mp, {
      vanish: () => renameSync(env.certFile, away),
      restore: () => renameSync(away, env.certFile),
      error: /smtp\.tls\.certFile: file .* does not exist/,
      edit: () => {
        const next = serverCert();
        writeFileSync(env.keyFile, next.keyPem);
        writeFileSync(env.certFile, next.certPem);
      },
    });
  } finally {
    await mp.stop();
  }
});

test('a referenced file (the key) behind a symlink swapped to a dangling target and back, and a users file deleted and written anew', async () => {
  const env = await makeEnv();
  const keyTarget = join(env.dir, 'real.key');
  renameSync(env.keyFile, keyTarget);
  symlinkSync(keyTarget, env.keyFile);
  const usersFile = join(env.dir, 'users.txt');
  const carol = 'carol:$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK\n';
  writeFileSync(usersFile, carol);
  const config = baseConfig(env).replace('  local:\n', `  local:\n    usersFile: ${usersFile}\n`);
  const mp = await startMailplane(env, config);
  try {
    await goesAndComesBack(mp, {
      vanish: () => swapLink(env.keyFile, join(env.dir, 'gone.key')),
      restore: () => swapLink(env.keyFile, keyTarget),
      error: /smtp\.tls\.keyFile: file .* does not exist/,
      edit: () => writeFileSync(usersFile, `${carol}dave:$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK\n`),
    });
    const gen = await generation(mp);
    unlinkSync(usersFile);
    await untilFailing(mp, /accounts\.local\.usersFile: file .* does not exist/);
    writeFileSync(usersFile, carol);
    await untilCleared(mp);
    writeFileSync(usersFile, `${carol}erin:$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK\n`);
    await mp.waitFor('the users file edit applied', async () => (await generation(mp)) > gen, 5000);
  } finally {
    await mp.stop();
  }
});

test('a file that a refused config names, created afterwards, is picked up at once', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  const usersFile = join(env.dir, 'later-users.txt');
  try {
    writeFileSync(env.configFile, baseConfig(env).replace('  local:\n', `  local:\n    usersFile: ${usersFile}\n`));
    await untilFailing(mp, /accounts\.local\.usersFile: file .* does not exist/);
    writeFileSync(usersFile, 'carol:$2y$12$uxIfP4NMQ7kEZODRXFCJ9OBrwtwdgJEjg8oPwgnr9Z2/tDj2cJnIK\n');
    await mp.waitFor('the config with its users file applied', async () => (await generation(mp)) === 2, 5000);
    assert.equal(await gauge(mp), 1);
  } finally {
    await mp.stop();
  }
});

test('a certificate renewed in two writes (certificate, then the key a moment later) settles: no error, the gauge never drops', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    let sawZero = false;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        if ((await gauge(mp)) === 0) sawZero = true;
        await sleep(20);
      }
    })();
    for (let i = 0; i < 2; i++) {
      const gen = await generation(mp);
      const next = serverCert();
      writeFileSync(env.certFile, next.certPem);
      await sleep(400);
      writeFileSync(env.keyFile, next.keyPem);
      await mp.waitFor('the renewal applied', async () => (await generation(mp)) === gen + 1, 5000);
    }
    watching = false;
    await watcher;
    assert.equal(sawZero, false, 'mailplane_config_last_reload_successful never went to 0');
    assert.deepEqual(logLines(mp, 'config invalid, keeping the previous generation'), []);
    assert.equal((await mp.status()).lastAttempt.errors.length, 0);

    // a real mismatch still is an error, once the settle time is over
    const t0 = Date.now();
    writeFileSync(env.certFile, serverCert().certPem);
    await untilFailing(mp, /smtp\.tls\.keyFile: private key does not match the certificate/);
    assert.ok(Date.now() - t0 >= 800, `reported after ${Date.now() - t0} ms, before the settle time`);
    await mp.waitFor('the error logged', () => logLines(mp, 'config invalid, keeping the previous generation').length === 1);
  } finally {
    await mp.stop();
  }
});

test('a reload that finds no change says so at info when asked or caused by a file event; the periodic check stays quiet', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    assert.equal((await mp.http('/-/reload', { method: 'POST' })).status, 200);
    mp.child.kill('SIGHUP');
    await mp.waitFor('the SIGHUP reload', () => logLines(mp, 'config unchanged').length >= 2);
    writeFileSync(env.configFile, baseConfig(env)); // the same content: an event, nothing new
    await mp.waitFor('three unchanged lines', () => logLines(mp, 'config unchanged').length >= 3);
    const lines = logLines(mp, 'config unchanged');
    assert.deepEqual(
      lines.map((l) => (l.reason as string).replace(/^file change \(.*\)$/, 'file change')),
      ['http', 'SIGHUP', 'file change'],
    );
    assert.ok(lines.every((l) => l.level === 'info'));
  } finally {
    await mp.stop();
  }
  // the 60 s safety net (here every 0.2 s) finds nothing most of the time: debug, not info
  writeFileSync(env.configFile, baseConfig(env));
  const quiet = spawnMailplane(env, ['--recheck', '0.2']);
  await quiet.waitReady();
  try {
    await quiet.waitFor('periodic checks', async () => ((await quiet.metric('mailplane_config_reloads_total', 'outcome="unchanged"')) ?? 0) >= 3);
    assert.deepEqual(logLines(quiet, 'config unchanged'), []);
  } finally {
    await quiet.stop();
  }
});

test('returning to a good file after a bad one logs the recovery', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env));
  try {
    writeFileSync(env.configFile, baseConfig(env).replace('maxMessageSize: "1MB"', 'maxMessageSize: "lots"'));
    await untilFailing(mp, /maxMessageSize: must be a size/);
    writeFileSync(env.configFile, baseConfig(env));
    await untilCleared(mp);
    const line = await mp.waitFor('the recovery logged', () => logLines(mp, 'config recovered: the file is good again')[0]);
    assert.equal(line.outcome, 'unchanged');
    assert.equal(line.level, 'info');
  } finally {
    await mp.stop();
  }
});

test('the certificate-expiry warning is logged once per certificate, not on every reload', async () => {
  const env = await makeEnv();
  const expiring = () =>
    issueCertificate({
      commonName: 'mail.example.com',
      dnsNames: ['mail.example.com', 'localhost'],
      ipAddresses: ['127.0.0.1'],
      issuer: testCa(),
      notAfter: new Date(Date.now() + 10 * 86400_000),
    });
  const first = expiring();
  writeFileSync(env.certFile, first.certPem);
  writeFileSync(env.keyFile, first.keyPem);
  const mp = await startMailplane(env, baseConfig(env));
  const expiryWarnings = () => logLines(mp, 'config warning').filter((l) => /certificate expires in/.test(l.warning as string));
  try {
    await mp.waitFor('the warning at start-up', () => expiryWarnings().length === 1);
    for (const size of [111111, 222222]) {
      writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: size }));
      await mp.waitFor(`size ${size}`, async () => (await mp.status()).specs.policy.maxMessageSize === size);
    }
    assert.equal((await mp.http('/-/reload', { method: 'POST' })).status, 200);
    assert.equal(expiryWarnings().length, 1, 'not again for the same certificate');
    const gen = await generation(mp);
    const second = expiring();
    writeFileSync(env.keyFile, second.keyPem);
    writeFileSync(env.certFile, second.certPem);
    await mp.waitFor('the new certificate', async () => (await generation(mp)) === gen + 1);
    await mp.waitFor('the warning for the new certificate', () => expiryWarnings().length === 2);
    await sleep(300);
    assert.equal(expiryWarnings().length, 2, 'once for the new certificate');
  } finally {
    await mp.stop();
  }
});

test('start-up failures do not speak of a previous generation', async () => {
  const env = await makeEnv();
  writeFileSync(env.configFile, baseConfig(env).replace('maxMessageSize: "1MB"', 'maxMessageSize: "lots"'));
  const invalid = spawnMailplane(env);
  assert.equal(await invalid.exited, 1);
  assert.match(invalid.logs, /cannot start: the config is invalid/);
  assert.doesNotMatch(invalid.logs, /previous generation/);

  const squatter: Server = createServer();
  await new Promise<void>((r) => squatter.listen(env.ports.mx, '127.0.0.1', r));
  try {
    writeFileSync(env.configFile, baseConfig(env));
    const failed = spawnMailplane(env);
    assert.equal(await failed.exited, 1);
    assert.match(failed.logs, /cannot start: applying the config failed/);
    assert.match(failed.logs, /apply failed: /);
    assert.doesNotMatch(failed.logs, /previous generation/);
  } finally {
    squatter.close();
  }
});
