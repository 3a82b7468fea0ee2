// Every row of the policy table, against the real server, from untrusted and trusted client
// addresses (the client binds to different loopback addresses to play different IPs).
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { baseConfig, CLIENTS, makeEnv, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

let env: Env;
let mp: MailplaneProcess;

before(async () => {
  env = await makeEnv();
  mp = await startMailplane(env, baseConfig(env, { plainListener: true, extraAuth: '    maxFailures: 3\n    lockoutDuration: 1h\n' }));
});
after(async () => {
  assert.equal(await mp.stop(), 0);
  for (const secret of [USERS.alice.password, USERS.bob.password, 'bad1', 'wrong', USERS.alice.hash]) {
    assert.ok(!mp.logs.includes(secret), `a password or hash appears in the logs: ${secret}`);
  }
  assert.match(mp.logs, /"msg":"session closed".*"user":"alice"/, 'one line per session outcome');
});

async function open(port: number, from: string = CLIENTS.untrusted, implicitTls = false): Promise<SmtpClient> {
  const { client, greeting } = await SmtpClient.connect({ port, localAddress: from, implicitTls });
  assert.equal(greeting.lines[0], '220 mail.example.com ESMTP mailplane', 'the greeting names the configured hostname');
  const ehlo = await client.ehlo();
  assert.equal(ehlo.code, 250);
  assert.match(ehlo.lines[0]!, /^250[- ]mail\.example\.com Nice to meet you/, 'so does the EHLO reply');
  return client;
}

async function tlsSession(port: number, from: string = CLIENTS.untrusted): Promise<SmtpClient> {
  const c = await open(port, from);
  assert.equal((await c.starttls()).code, 220);
  assert.equal((await c.ehlo()).code, 250);
  return c;
}

async function loggedIn(port: number, user: keyof typeof USERS, from: string = CLIENTS.untrusted): Promise<SmtpClient> {
  const c = await tlsSession(port, from);
  const r = await c.authPlain(user, USERS[user].password);
  assert.equal(r.code, 235, r.text);
  return c;
}

function queueCount(): number {
  const dir = join(env.dataDir, 'queue');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).length : 0;
}

describe('550 5.1.1 unknown local recipient', () => {
  for (const [who, ip] of [
    ['untrusted', CLIENTS.untrusted],
    ['exempt', CLIENTS.exempt],
  ] as const) {
    test(`from an ${who} client on mx`, async () => {
      const c = await open(env.ports.mx, ip);
      assert.equal((await c.cmd('MAIL FROM:<someone@example.net>')).code, 250);
      const r = await c.cmd('RCPT TO:<nobody@example.com>');
      assert.equal(r.code, 550);
      assert.match(r.lines[0]!, /^550 5\.1\.1 <nobody@example\.com>: Recipient address rejected: User unknown$/);
      await c.quit();
    });
  }
});

describe('554 5.7.1 relay access denied', () => {
  for (const [listener, port] of [
    ['mx', () => env.ports.mx],
    ['plain', () => env.ports.plain],
  ] as const) {
    test(`untrusted client, external recipient, on ${listener}`, async () => {
      const before = queueCount();
      const c = await open(port());
      assert.equal((await c.cmd('MAIL FROM:<someone@example.net>')).code, 250);
      const r = await c.cmd('RCPT TO:<victim@elsewhere.example>');
      assert.equal(r.lines[0], '554 5.7.1 <victim@elsewhere.example>: Relay access denied');
      await c.quit();
      assert.equal(queueCount(), before);
    });
  }
  test('untrusted client on a submission listener where auth is required: stopped at MAIL with 530', async () => {
    const c = await tlsSession(env.ports.submission);
    const r = await c.cmd('MAIL FROM:<alice@example.com>');
    assert.equal(r.lines[0], '530 5.7.0 Authentication required');
    await c.quit();
  });
  for (const [who, ip] of [
    ['exempt', CLIENTS.exempt],
    ['LAN (lanBypass)', CLIENTS.lan],
  ] as const) {
    test(`${who} client may relay without AUTH, on mx and submission`, async () => {
      for (const port of [env.ports.mx, env.ports.submission]) {
        const before = queueCount();
        const c = await open(port, ip);
        const r = await c.send('webmail@example.com', ['friend@elsewhere.example'], message(`relay-${who}-${port}`));
        assert.equal(r.rcpt[0]!.code, 250);
        assert.equal(r.data!.code, 250, r.data!.text);
        assert.equal(queueCount(), before + 1);
        await c.quit();
      }
    });
  }
  test('an authenticated user may relay', async () => {
    const before = queueCount();
    const c = await loggedIn(env.ports.submission, 'alice');
    const r = await c.send('alice@example.com', ['friend@elsewhere.example'], message('auth-relay'));
    assert.equal(r.data!.code, 250);
    assert.equal(queueCount(), before + 1);
    await c.quit();
  });
});

describe('530 5.7.0 authentication required on submission', () => {
  test('untrusted client, MAIL FROM before AUTH, STARTTLS and implicit TLS listeners', async () => {
    for (const c of [await tlsSession(env.ports.submission), await open(env.ports.submissions, CLIENTS.untrusted, true)]) {
      const r = await c.cmd('MAIL FROM:<alice@example.com>');
      assert.equal(r.lines[0], '530 5.7.0 Authentication required');
      await c.quit();
    }
  });
  test('exempt and LAN clients are not asked to authenticate', async () => {
    for (const ip of [CLIENTS.exempt, CLIENTS.lan]) {
      const c = await tlsSession(env.ports.submission, ip);
      assert.equal((await c.cmd('MAIL FROM:<alice@example.com>')).code, 250);
      await c.quit();
    }
  });
  test('mx does not require AUTH for mail to local users, and accepts the null sender', async () => {
    const c = await open(env.ports.mx);
    const r = await c.send('', ['bob@example.com'], message('bounce-to-bob'));
    assert.equal(r.mail.code, 250);
    assert.equal(r.data!.code, 250);
    await c.quit();
  });
});

describe('538 5.7.11 AUTH before TLS', () => {
  for (const [who, ip] of [
    ['untrusted', CLIENTS.untrusted],
    ['exempt', CLIENTS.exempt],
  ] as const) {
    test(`${who} client on submission and mx: not advertised, refused; offered after STARTTLS`, async () => {
      for (const port of [env.ports.submission, env.ports.mx]) {
        const { client: c } = await SmtpClient.connect({ port, localAddress: ip });
        const ehlo = await c.ehlo();
        assert.ok(!ehlo.lines.some((l) => /AUTH/.test(l)), ehlo.text);
        assert.ok(ehlo.lines.some((l) => /STARTTLS/.test(l)));
        const r = await c.authPlain('alice', USERS.alice.password);
        assert.equal(r.lines[0], '538 5.7.11 Encryption required for requested authentication mechanism');
        await c.starttls();
        const after = await c.ehlo();
        assert.ok(
          after.lines.some((l) => /^250.AUTH PLAIN LOGIN$/.test(l)),
          after.text,
        );
        assert.ok(!after.lines.some((l) => /STARTTLS/.test(l)));
        await c.quit();
      }
    });
  }
  test('a tls: none listener never offers AUTH and refuses it', async () => {
    const { client: c } = await SmtpClient.connect({ port: env.ports.plain });
    const ehlo = await c.ehlo();
    assert.ok(!ehlo.lines.some((l) => /AUTH|STARTTLS/.test(l)), ehlo.text);
    assert.equal((await c.cmd('AUTH LOGIN')).code, 538);
    assert.equal((await c.cmd('STARTTLS')).code >= 500, true);
    await c.quit();
  });
  test('implicit TLS offers AUTH at once', async () => {
    const c = await open(env.ports.submissions, CLIENTS.untrusted, true);
    assert.equal((await c.authPlain('bob', USERS.bob.password)).code, 235);
    await c.quit();
  });
});

describe('535 5.7.8 wrong credentials', () => {
  test('wrong password, unknown user, user at a foreign domain', async () => {
    const cases = [
      ['alice', 'wrong'],
      ['nobody', 'x'],
      ['alice@elsewhere.example', USERS.alice.password],
    ] as const;
    for (const [i, [u, p]] of cases.entries()) {
      const c = await tlsSession(env.ports.submission, `127.0.0.${40 + i}`);
      const r = await c.authPlain(u, p);
      assert.equal(r.lines[0], '535 5.7.8 Authentication credentials invalid', u);
      assert.equal((await c.authPlain('alice@example.org', USERS.alice.password)).code, 235, 'login as name@any-domain');
      await c.quit();
    }
  });
});

describe('553 5.7.1 sender not owned by the authenticated user', () => {
  for (const ip of ['127.0.0.21', CLIENTS.exempt])
    test(`own name and aliases at every domain pass, others are refused (client ${ip})`, async () => {
      const c = await loggedIn(env.ports.submission, 'alice', ip);
      for (const ok of ['alice@example.com', 'alice@example.org', 'postmaster@example.com', 'info@example.org', 'ALICE@EXAMPLE.COM']) {
        assert.equal((await c.cmd(`MAIL FROM:<${ok}>`)).code, 250, ok);
        await c.cmd('RSET');
      }
      for (const bad of ['bob@example.com', 'alice@elsewhere.example', 'ceo@example.com']) {
        const r = await c.cmd(`MAIL FROM:<${bad}>`);
        assert.equal(r.lines[0], `553 5.7.1 <${bad}>: Sender address rejected: not owned by the authenticated user`);
      }
      await c.quit();
    });
});

describe('552 5.3.4 message too big, nothing stored', () => {
  for (const ip of ['127.0.0.22', CLIENTS.lan])
    test(`declared with SIZE= (client ${ip})`, async () => {
      const c = await open(env.ports.mx, ip);
      const ehlo = await c.ehlo();
      assert.ok(
        ehlo.lines.some((l) => l.endsWith('SIZE 1000000')),
        ehlo.text,
      );
      const r = await c.cmd('MAIL FROM:<x@example.net> SIZE=1000001');
      assert.equal(r.lines[0], '552 5.3.4 Message size exceeds fixed maximum message size of 1000000 bytes');
      assert.equal((await c.cmd('MAIL FROM:<x@example.net> SIZE=999999')).code, 250);
      await c.quit();
    });
  test('discovered while streaming', async () => {
    const newDir = join(env.dataDir, 'mail', 'bob', 'new');
    const before = existsSync(newDir) ? readdirSync(newDir).length : 0;
    const c = await open(env.ports.mx, '127.0.0.22');
    assert.equal((await c.cmd('MAIL FROM:<x@example.net>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<bob@example.com>')).code, 250);
    const big = message('too-big', `${'x'.repeat(998)}\r\n`.repeat(1100));
    const [, r] = await c.data(big);
    assert.equal(r.lines[0], '552 5.3.4 Message size exceeds fixed maximum message size of 1000000 bytes');
    // the session goes on
    const ok = await c.send('x@example.net', ['bob@example.com'], message('small-after-big'));
    assert.equal(ok.data!.code, 250);
    await c.quit();
    assert.equal(readdirSync(newDir).length, before + 1);
  });
});

describe('421 4.7.0 too many failed AUTH attempts', () => {
  test('locks the client address out, refuses new connections, other addresses unaffected', async () => {
    const ip = '127.0.0.30';
    const c = await tlsSession(env.ports.submission, ip);
    assert.equal((await c.authPlain('alice', 'bad1')).code, 535);
    assert.equal((await c.authPlain('alice', 'bad2')).code, 535);
    const third = await c.authPlain('alice', 'bad3');
    assert.equal(third.lines[0], '421 4.7.0 Too many failed authentication attempts, try again later');
    await assert.rejects(c.read(), /closed/);
    // refused at connect for the cool-down, even with the right password
    const { client, greeting } = await SmtpClient.connect({ port: env.ports.submission, localAddress: ip });
    assert.equal(greeting.lines[0], '421 4.7.0 Too many failed authentication attempts, try again later');
    client.destroy();
    const other = await loggedIn(env.ports.submission, 'alice', '127.0.0.31');
    await other.quit();
    assert.ok(((await mp.metric('mailplane_smtp_rejections_total', 'listener="submission",reason="rate_limited"')) ?? 0) >= 2);
  });
});

describe('recipients per message are bounded', () => {
  test('452 4.5.3 beyond maxRecipients (default 100); repeats of one address count once', async () => {
    const c = await open(env.ports.mx, CLIENTS.exempt);
    assert.equal((await c.cmd('MAIL FROM:<x@example.com>')).code, 250);
    for (let i = 0; i < 100; i++) c.write(`RCPT TO:<friend${i}@elsewhere.example>\r\n`);
    for (let i = 0; i < 100; i++) assert.equal((await c.read()).code, 250);
    assert.equal((await c.cmd('RCPT TO:<friend7@elsewhere.example>')).code, 250);
    const r = await c.cmd('RCPT TO:<friend100@elsewhere.example>');
    assert.equal(r.lines[0], '452 4.5.3 Too many recipients');
    await c.quit();
  });
});

describe('TLS', () => {
  test('TLS 1.2 and 1.3 are accepted, TLS 1.1 is refused', async () => {
    const { connect } = await import('node:tls');
    const hello = (max: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3') =>
      new Promise<string>((resolve) => {
        const s = connect({ port: env.ports.submissions, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: max, ciphers: 'DEFAULT@SECLEVEL=0' }, () => {
          const v = s.getProtocol() ?? '';
          s.destroy();
          resolve(v);
        });
        s.once('error', () => resolve('refused'));
      });
    assert.equal(await hello('TLSv1.3'), 'TLSv1.3');
    assert.equal(await hello('TLSv1.2'), 'TLSv1.2');
    assert.equal(await hello('TLSv1.1'), 'refused');
  });
});

describe('221 2.0.0 QUIT', () => {
  test('the reply comes first, then the server closes the connection: plain, STARTTLS and implicit TLS', async () => {
    for (const c of [await open(env.ports.mx), await tlsSession(env.ports.submission), await open(env.ports.submissions, CLIENTS.untrusted, true)]) {
      const r = await c.cmd('QUIT');
      assert.equal(r.lines[0], '221 2.0.0 Bye');
      await c.waitClosed();
    }
  });
});
