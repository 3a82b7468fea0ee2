// Abuse of a public MX, through real sockets against the real server: the failed-AUTH lockout
// (spares trusted hosts, never stops mail on mx, survives a reload, lifted by `mailplane unlock`),
// equal AUTH cost for unknown and known logins, sending rates per user and trusted address, and
// the directory-harvest defence. Clients bind to different loopback addresses to play different IPs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hashPassword } from '../src/accounts/passwords.js';
import { mailplane, ROOT } from './helpers/cli.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, waitFor, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

let env: Env;
let mp: MailplaneProcess;
let config: string;
const PASSWORDS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' } as const;

before(async () => {
  env = await makeEnv();
  // bcrypt (cost 12) costs ~250 ms, far more than the argon2id default: an unknown login must cost as much
  const [a, b, c] = await Promise.all(Object.values(PASSWORDS).map((p) => hashPassword(p, 'bcrypt')));
  config = baseConfig(env, {
    extraAuth: '    maxFailures: 4\n    lockoutDuration: 1h\n',
    extraSmtp: '  limits:\n    sendRate: { messages: 3, recipients: 5, window: 1h }\n    rejectedRecipients: { delayAfter: 2, delay: 300ms, disconnectAfter: 6 }\n',
    users: `      - { name: alice, passwordHash: "${a}", aliases: [postmaster] }\n      - { name: bob, passwordHash: "${b}" }\n      - { name: carol, passwordHash: "${c}" }\n`,
  });
  mp = await startMailplane(env, config);
});
after(async () => {
  assert.equal(await mp.stop(), 0);
  for (const secret of Object.values(PASSWORDS)) assert.ok(!mp.logs.includes(secret), 'no password in the logs');
});

async function open(port: number, from: string): Promise<SmtpClient> {
  const { client, greeting } = await SmtpClient.connect({ port, localAddress: from });
  assert.equal(greeting.code, 220, greeting.text);
  assert.equal((await client.ehlo()).code, 250);
  return client;
}

async function tlsSession(port: number, from: string): Promise<SmtpClient> {
  const c = await open(port, from);
  assert.equal((await c.starttls()).code, 220);
  assert.equal((await c.ehlo()).code, 250);
  return c;
}

async function loggedIn(user: keyof typeof PASSWORDS, from: string): Promise<SmtpClient> {
  const c = await tlsSession(env.ports.submission, from);
  const r = await c.authPlain(user, PASSWORDS[user]);
  assert.equal(r.code, 235, r.text);
  return c;
}

function logLines(msg: string): Record<string, unknown>[] {
  return mp.logs
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

describe('failed-AUTH lockout', () => {
  const ip = '127.0.0.30';

  test('locks the address out of AUTH and submission, never out of mail to our users on mx', async () => {
    const c = await tlsSession(env.ports.submission, ip);
    for (let i = 1; i < 4; i++) assert.equal((await c.authPlain('alice', `bad${i}`)).code, 535);
    assert.equal((await c.authPlain('alice', 'bad4')).lines[0], '421 4.7.0 Too many failed authentication attempts, try again later');
    await assert.rejects(c.read(), /closed/);

    const started = await waitFor('the lockout is logged', () => (logLines('AUTH lockout started').length ? logLines('AUTH lockout started') : undefined));
    assert.deepEqual(
      started.map((l) => [l.client, l.failures, l.lockoutSeconds]),
      [[ip, 4, 3600]],
      'one line when the lockout starts: address, failures, duration',
    );

    // submission: refused at connect, even with the right password
    const { client, greeting } = await SmtpClient.connect({ port: env.ports.submission, localAddress: ip });
    assert.equal(greeting.lines[0], '421 4.7.0 Too many failed authentication attempts, try again later');
    client.destroy();
    await waitFor('the refused connection is logged', () => logLines('connection refused: client locked out after failed AUTH').some((l) => l.client === ip && l.listener === 'submission'));

    // mx: mail to a local user goes on; AUTH is refused without closing the session
    const mx = await tlsSession(env.ports.mx, ip);
    assert.equal((await mx.authPlain('alice', PASSWORDS.alice)).lines[0], '454 4.7.0 Too many failed authentication attempts, try again later');
    const sent = await mx.send('someone@example.net', ['bob@example.com'], message('from a locked-out address'));
    assert.equal(sent.data?.code, 250, 'inbound mail from a locked-out address is accepted');
    await mx.quit();
    await waitFor('the refused AUTH is logged', () => logLines('AUTH refused: client locked out after failed AUTH').some((l) => l.client === ip && l.listener === 'mx'));

    const status = await mp.status();
    assert.deepEqual(
      status.authLockouts.map((l: { address: string; failures: number }) => [l.address, l.failures]),
      [[ip, 4]],
    );
    assert.equal(await mp.metric('mailplane_smtp_auth_lockouts_active'), 1);
    // other addresses are unaffected
    await (await loggedIn('alice', '127.0.0.31')).quit();
  });

  test('a reload keeps the lockout', async () => {
    writeFileSync(env.configFile, config.replace('domains: [example.com, example.org]', 'domains: [example.com, example.org, example.info]'));
    const r = (await (await mp.http('/-/reload', { method: 'POST' })).json()) as { outcome: string };
    assert.equal(r.outcome, 'applied');
    const { client, greeting } = await SmtpClient.connect({ port: env.ports.submission, localAddress: ip });
    assert.equal(greeting.code, 421, 'still locked out after the reload');
    client.destroy();
  });

  test('mailplane unlock lifts it on the running server', async () => {
    const r = await mailplane(['unlock', ip, '--config', env.configFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `lifted the lockout of ${ip}`);
    await (await loggedIn('alice', ip)).quit();
    assert.deepEqual((await mp.status()).authLockouts, []);
    assert.equal(await mp.metric('mailplane_smtp_auth_lockouts_active'), 0);
    const again = await mailplane(['unlock', ip, '--config', env.configFile]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not locked out/);
    assert.equal((await mailplane(['unlock', 'not-an-ip', '--config', env.configFile])).code, 2);
    assert.equal((await mailplane(['unlock', '--config', env.configFile])).code, 2, 'an address or --all is needed');
  });

  test('mailplane unlock --all lifts every lockout', async () => {
    for (const addr of ['127.0.0.32', '127.0.0.33']) {
      const c = await tlsSession(env.ports.submission, addr);
      for (let i = 0; i < 4; i++) await c.authPlain(`nobody${i}`, 'x');
      c.destroy();
    }
    await waitFor('two lockouts', async () => (await mp.status()).authLockouts.length === 2);
    const r = await mailplane(['unlock', '--all', '--data-dir', env.dataDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'lifted 2 lockouts');
    assert.deepEqual((await mp.status()).authLockouts, []);
  });

  for (const [who, from] of [
    ['an exempt client', CLIENTS.exempt],
    ['a LAN client under lanBypass', CLIENTS.lan],
  ] as const) {
    test(`${who} is never locked out by address`, async () => {
      const c = await tlsSession(env.ports.submission, from);
      for (let i = 0; i < 8; i++) assert.equal((await c.authPlain(`user${i}`, 'wrong')).code, 535, 'still only 535 after the limit');
      await c.quit();
      const again = await tlsSession(env.ports.submission, from);
      assert.equal((await again.authPlain('carol', PASSWORDS.carol)).code, 235);
      await again.quit();
      assert.deepEqual((await mp.status()).authLockouts, []);
    });
  }

  test('an unknown login costs what a wrong password for a known one costs', async () => {
    // interleaved, each from its own address (no lockout), each login at most 3 times (no throttle)
    const time = async (login: string, from: string) => {
      const c = await tlsSession(env.ports.submission, from);
      const t0 = performance.now();
      assert.equal((await c.authPlain(login, 'wrong password')).code, 535);
      const ms = performance.now() - t0;
      c.destroy();
      return ms;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      known.push(await time('bob', `127.0.1.${10 + i}`));
      unknown.push(await time(`nosuchuser${i}`, `127.0.1.${20 + i}`));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[1]!;
    const ratio = median(unknown) / median(known);
    console.log(`AUTH failure cost: known login ${median(known).toFixed(0)} ms, unknown ${median(unknown).toFixed(0)} ms (ratio ${ratio.toFixed(2)})`);
    assert.ok(ratio > 0.5, `an unknown login answers in ${median(unknown).toFixed(0)} ms, a known one in ${median(known).toFixed(0)} ms`);
  });
});

describe('sending rate: 451 4.7.1 over smtp.limits.sendRate', () => {
  test('messages per authenticated user', async () => {
    const c = await loggedIn('carol', '127.0.0.40');
    for (let i = 0; i < 3; i++) assert.equal((await c.send('carol@example.com', ['someone@example.net'], message(`rate ${i}`))).data?.code, 250);
    const r = await c.cmd('MAIL FROM:<carol@example.com>');
    assert.equal(r.lines[0], '451 4.7.1 Sending rate limit reached (3 messages per 1h), try again later');
    await c.quit();
    // the count belongs to the user, not the connection or address
    const again = await loggedIn('carol', '127.0.0.41');
    assert.equal((await again.cmd('MAIL FROM:<carol@example.com>')).code, 451);
    await again.quit();
    await waitFor('the refusal is logged', () => logLines('sending rate limit reached').some((l) => l.user === 'carol' && l.limit === '3 messages per 1h'));
    assert.ok(((await mp.metric('mailplane_smtp_rejections_total', 'listener="submission",reason="send_rate"')) ?? 0) >= 2);
    // others still send
    const bob = await loggedIn('bob', '127.0.0.41');
    assert.equal((await bob.send('bob@example.com', ['someone@example.net'], message('bob is fine'))).data?.code, 250);
    await bob.quit();
  });

  test('recipients per authenticated user, local ones included', async () => {
    const c = await loggedIn('alice', '127.0.0.42');
    const first = await c.send('alice@example.com', ['a@example.net', 'b@example.net', 'c@example.net', 'bob@example.com'], message('four'));
    assert.equal(first.data?.code, 250);
    assert.equal((await c.cmd('MAIL FROM:<alice@example.com>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<d@example.net>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<e@example.net>')).lines[0], '451 4.7.1 Sending rate limit reached (5 recipients per 1h), try again later');
    const [, done] = await c.data(message('the fifth recipient'));
    assert.equal(done.code, 250, 'the recipients within the limit are sent');
    assert.equal((await c.cmd('MAIL FROM:<alice@example.com>')).code, 451, 'the limit is reached');
    await c.quit();
  });

  test('a trusted address sending without AUTH is counted by address', async () => {
    const c = await open(env.ports.submission, CLIENTS.exempt);
    for (let i = 0; i < 3; i++) assert.equal((await c.send('app@example.com', ['someone@example.net'], message(`webmail ${i}`))).data?.code, 250);
    assert.equal((await c.cmd('MAIL FROM:<app@example.com>')).code, 451);
    await c.quit();
    await waitFor('the refusal is logged', () => logLines('sending rate limit reached').some((l) => l.client === CLIENTS.exempt && l.user === undefined));
  });

  test('inbound mail from the internet is not limited by it', async () => {
    const c = await open(env.ports.mx, '127.0.0.43');
    for (let i = 0; i < 5; i++) assert.equal((await c.send(`sender${i}@example.net`, ['bob@example.com'], message(`inbound ${i}`))).data?.code, 250);
    await c.quit();
  });
});

describe('directory harvest: refused RCPTs are slowed down, then the session is closed', () => {
  test('after delayAfter each refusal waits, and the one at disconnectAfter gets 421', async () => {
    const c = await open(env.ports.mx, '127.0.0.50');
    assert.equal((await c.cmd('MAIL FROM:<probe@example.net>')).code, 250);
    const timed = async (line: string) => {
      const t0 = performance.now();
      const r = await c.cmd(line);
      return { r, ms: performance.now() - t0 };
    };
    const replies: { r: { code: number; lines: string[] }; ms: number }[] = [];
    for (let i = 0; i < 5; i++) replies.push(await timed(`RCPT TO:<guess${i}@example.com>`));
    assert.deepEqual(
      replies.map((x) => x.r.code),
      [550, 550, 550, 550, 550],
    );
    assert.ok(replies[0]!.ms < 250 && replies[1]!.ms < 250, `the first two are answered at once (${replies.map((x) => x.ms.toFixed(0)).join(', ')} ms)`);
    for (const x of replies.slice(2)) assert.ok(x.ms >= 290, `refusals beyond delayAfter wait the delay (${x.ms.toFixed(0)} ms)`);
    // a valid recipient still works between the refusals
    assert.equal((await c.cmd('RCPT TO:<bob@example.com>')).code, 250);
    const last = await c.cmd('RCPT TO:<guess5@example.com>');
    assert.equal(last.lines[0], '421 4.7.0 Too many rejected recipients, closing connection');
    await c.waitClosed();
    await waitFor('the close is logged', () => logLines('session closed: too many rejected recipients').some((l) => l.client === '127.0.0.50' && l.rejected === 6));
    assert.ok(((await mp.metric('mailplane_smtp_rejections_total', 'listener="mx",reason="rejected_recipients"')) ?? 0) >= 1);
  });

  test('relay attempts count too, and a new session starts from zero', async () => {
    const c = await open(env.ports.mx, '127.0.0.51');
    assert.equal((await c.cmd('MAIL FROM:<probe@example.net>')).code, 250);
    for (let i = 0; i < 5; i++) assert.equal((await c.cmd(`RCPT TO:<victim${i}@elsewhere.example>`)).code, 554);
    assert.equal((await c.cmd('RCPT TO:<victim5@elsewhere.example>')).code, 421);
    await c.waitClosed();
    const fresh = await open(env.ports.mx, '127.0.0.51');
    assert.equal((await fresh.send('probe@example.net', ['bob@example.com'], message('fresh session'))).data?.code, 250);
    await fresh.quit();
  });
});

describe('log lines fail2ban can match', () => {
  // the filters exactly as docs/abuse.md prints them, run by the real fail2ban-regex over our log
  const filter = (name: string) => {
    const doc = readFileSync(join(ROOT, 'docs', 'abuse.md'), 'utf8');
    const m = new RegExp(`\`/etc/fail2ban/filter.d/${name}.conf\`[^\n]*\n\n\`\`\`ini\n([\\s\\S]*?)\`\`\``).exec(doc);
    assert.ok(m, `docs/abuse.md has the ${name} filter`);
    const file = join(env.dir, `${name}.conf`);
    writeFileSync(file, m[1]!);
    return file;
  };
  const banned = (name: string) => {
    const log = join(env.dir, 'mailplane.log');
    writeFileSync(log, mp.logs);
    const out = execFileSync('fail2ban-regex', ['--out', 'ip', log, filter(name)], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean);
  };

  test('mailplane-auth finds every AUTH failure, lockout and refusal, by address', () => {
    const hits = banned('mailplane-auth');
    assert.equal(hits.filter((h) => h === '127.0.0.30').length, 4 + 1 + 3, 'four failures, the lockout, three refusals (two submission connects, one mx AUTH)');
    assert.ok(hits.includes('127.0.0.32') && hits.includes('127.0.0.33'));
    assert.ok(hits.includes(CLIENTS.exempt), "failures of trusted hosts are logged too (ignoreip is fail2ban's business)");
  });

  test('mailplane-harvest finds the sessions closed for rejected recipients', () => {
    assert.deepEqual(banned('mailplane-harvest').sort(), ['127.0.0.50', '127.0.0.51']);
  });
});
