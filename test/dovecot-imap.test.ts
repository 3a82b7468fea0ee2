// storage.mailboxGroup / mailboxMode with a real IMAP server: Debian's Dovecot, configured with
// the snippet docs/install.md prints (read from there), running as another user than mailplane,
// reads, flags and moves the mail mailplane delivered over SMTP — and mailplane keeps delivering
// into the Maildirs Dovecot touched or created. mailplane itself runs as a non-root member of
// the group (as the systemd unit runs it) whenever that user can read this checkout.
// Needs root (users, Dovecot's privilege drop) and Debian's dovecot-imapd.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN } from './helpers/cli.js';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { baseConfig, makeEnv, MailplaneProcess, waitFor, type Env } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { tempDir } from './helpers/tmp.js';
import { docBlock } from './helpers/docs.js';
import { Dovecot, DOVECOT, plainImapBlock } from './helpers/dovecot.js';
import { Imap } from './helpers/imap.js';
import { ensureUser, idOf, sh } from './helpers/system-users.js';

// test-only names for the docs' `vmail` (the mail group and Dovecot's user) and `mailplane`
const VMAIL = 'mptest-vmail';
const SERVICE_USER = 'mptest-mailplane';
// sha512-crypt: read by mailplane (accounts.local.usersFile) and Dovecot (passwd-file, CRYPT) alike
const USERS = {
  alice: { password: 'alice-pw', hash: '$6$mailplanetest$VT3oLMRyW671U0PED6080FleBzY2IguVOylg2ui.Wop2F9RFP1HHOOd0wv4sD7THr/TW0dfMLPtwPYjtF9b0u1' },
  bob: { password: 'bob-pw', hash: '$6$mailplanetest$W5PURKgs8g21P.nAzX8SvaPD6LpRxDFqwq2NFtDH78Mwg6brlQYBXmExvKEILbRa4/a9GH4tMUDpKwqdxktNs0' },
  carol: { password: 'carol-pw', hash: '$6$mailplanetest$SjB/VqEsEOsaZe1kLGEGvl12Phob2VqNSZz2aGhiEUCavqM/U/nHrCmONOG6e7ShoNOLCixfHdxmLDBl2CVxh1' },
} as const;

const isRoot = process.getuid?.() === 0;
const tools = ['useradd', 'userdel', 'groupdel', 'usermod', 'setpriv'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);
const available = isRoot && existsSync(DOVECOT) && tools;
if (!available) {
  const why = !isRoot ? 'the tests do not run as root (users, Dovecot)' : !existsSync(DOVECOT) ? 'Dovecot is not installed (apt-get install dovecot-imapd)' : 'useradd/usermod/setpriv are missing';
  if (process.env.CI) throw new Error(`the Dovecot IMAP test cannot run in CI: ${why}`);
  console.warn(`\n*** SKIPPED LOUDLY: ${why}; Maildir access by Dovecot over IMAP is not tested here ***\n`);
}

/** The fenced block after the marker comment naming this test in docs/install.md. */
/** Whether `user` can run this checkout's mailplane (it may live under a folder only root enters). */
function canRunAs(user: string): boolean {
  return spawnSync('setpriv', ['--reuid', user, '--regid', user, '--init-groups', process.execPath, BIN, '--help'], { stdio: 'ignore' }).status === 0;
}

async function login(port: number, user: keyof typeof USERS, as = `${user}@example.com`): Promise<Imap> {
  const c = await Imap.connect(port, { tls: false });
  await c.cmd(`LOGIN ${as} ${USERS[user].password}`);
  return c;
}

async function send(env: Env, to: string[], body: string): Promise<void> {
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  const r = await c.send('sender@example.net', to, body);
  assert.equal(r.data?.code, 250, JSON.stringify(r));
  await c.quit();
}

function files(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

describe('Dovecot reads the Maildirs mailplane writes (storage.mailboxGroup)', { skip: !available }, () => {
  let env: Env;
  let mp: MailplaneProcess;
  let dovecot: Dovecot | null = null;
  let dovecotDir: string;
  let imapPort: number;
  let nonRoot = false;
  let gid: number;
  let serviceUid: number;
  let dns: TestDns | undefined;

  const dovecotLog = () => dovecot?.log ?? '';

  before(async () => {
    // docs/install.md, step 3 and 5: the service user in the mail group, the data dir made by hand
    ensureUser(VMAIL);
    ensureUser(SERVICE_USER);
    sh('usermod', ['-aG', VMAIL, SERVICE_USER]);
    gid = idOf('-g', VMAIL);
    serviceUid = idOf('-u', SERVICE_USER);
    const serviceGid = idOf('-g', SERVICE_USER);
    nonRoot = canRunAs(SERVICE_USER);
    if (!nonRoot) console.warn(`\n*** NOTE: ${SERVICE_USER} cannot read ${BIN}: mailplane runs as root in this test ***\n`);

    env = await makeEnv();
    chmodSync(env.dir, 0o711); // like /var/lib: others pass through
    mkdirSync(env.dataDir, { mode: 0o711 });
    chmodSync(env.dataDir, 0o711);
    chownSync(env.dataDir, serviceUid, serviceGid);
    chownSync(env.keyFile, serviceUid, serviceGid);
    const lines = Object.entries(USERS)
      .map(([name, u]) => `${name}:${u.hash}\n`)
      .join('');
    const mailplaneUsers = join(env.dir, 'users');
    writeFileSync(mailplaneUsers, lines, { mode: 0o640 });
    chownSync(mailplaneUsers, 0, serviceGid);

    const storage = docBlock('install.md', '<!-- test/dovecot-imap.test.ts runs mailplane')
      .replaceAll('/var/lib/mailplane', env.dataDir)
      .replace(/\bvmail\b/g, VMAIL);
    // spoofed mail from our own domains goes to the junk folder (DNS: a loopback server that knows nothing)
    dns = await new TestDns({}).startOn(env.ports.dns);
    const config = baseConfig(env, { maxMessageSize: '5MB' })
      .replace(/accounts:\n {2}local:\n {4}users:\n(?: {6}- .*\n)+/, `accounts:\n  local:\n    usersFile: ${mailplaneUsers}\n`)
      .replace(/storage:\n {2}dataDir: .*\n/, `inbound:\n  checks: { ownDomains: junk }\n${storage}`);
    assert.match(config, new RegExp(`mailboxGroup: ${VMAIL}`));
    writeFileSync(env.configFile, config);
    const cmd = [process.execPath, BIN, 'run', '--config', env.configFile, '--log-format', 'json', '--recheck', '0'];
    const child = nonRoot
      ? spawn('setpriv', ['--reuid', SERVICE_USER, '--regid', SERVICE_USER, '--init-groups', ...cmd], { cwd: env.dir, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(cmd[0]!, cmd.slice(1), { cwd: env.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    mp = new MailplaneProcess(child, env);
    await mp.waitReady();

    // Dovecot: test-only settings (its own folders, a loopback port, no TLS), then the docs' block
    dovecotDir = tempDir('dovecot');
    chmodSync(dovecotDir, 0o711);
    imapPort = await freePort();
    const dovecotUsers = join(dovecotDir, 'users');
    writeFileSync(dovecotUsers, lines, { mode: 0o640 });
    chownSync(dovecotUsers, 0, idOf('-g', 'dovecot'));
    const snippet = docBlock('install.md', '<!-- test/dovecot-imap.test.ts runs Debian')
      .replaceAll('/var/lib/mailplane', env.dataDir)
      .replaceAll('/etc/dovecot/users', dovecotUsers)
      .replace(/\bvmail\b/g, VMAIL);
    dovecot = new Dovecot(dovecotDir, [imapPort]);
    dovecot.write(`${plainImapBlock(imapPort)}${snippet}`);
    await dovecot.start();
  });

  after(async () => {
    await dovecot?.stop();
    await mp?.stop();
    dns?.stop();
  });

  test('mail delivered over SMTP is read, flagged and moved over IMAP by Dovecot running as another user', async () => {
    if (nonRoot) {
      const status = readFileSync(`/proc/${mp.pid}/status`, 'utf8');
      assert.match(status, new RegExp(`^Uid:\\s+${serviceUid}\\s`, 'm'), 'mailplane runs as the service user');
    }
    await send(env, ['alice@example.com'], message('first for alice', 'Hello from mailplane.\r\n'));
    const c = await login(imapPort, 'alice');
    try {
      const sel = await c.cmd('SELECT INBOX');
      assert.match(sel, /^\* 1 EXISTS/m);
      assert.match(sel, /\[READ-WRITE\]/, 'the group may write: Dovecot opens the mailbox read-write');
      const f = await c.cmd('FETCH 1 BODY[]');
      assert.match(f, /Subject: first for alice/);
      assert.match(f, /Hello from mailplane\./);
      assert.match(f, /^Delivered-To: alice@example\.com/m);
      await c.cmd('STORE 1 +FLAGS (\\Seen)');
    } finally {
      c.close();
    }
    const cur = files(join(env.dataDir, 'mail', 'alice', 'cur'));
    assert.ok(
      cur.some((f) => f.endsWith(':2,S')),
      `Dovecot moved the message to cur/ with the Seen flag: ${cur.join(', ')}\n${dovecotLog()}`,
    );
  });

  test('one file for several mailboxes, and a large (spooled) message: Dovecot reads both', async () => {
    await send(env, ['alice@example.com', 'bob@example.com'], message('for both'));
    const line = `${'x'.repeat(76)}\r\n`;
    const big = message('large for bob', line.repeat(Math.ceil((1536 * 1024) / line.length)));
    await send(env, ['bob@example.com'], big);
    const a = files(join(env.dataDir, 'mail', 'alice', 'new')).map((f) => statSync(join(env.dataDir, 'mail', 'alice', 'new', f)));
    const b = files(join(env.dataDir, 'mail', 'bob', 'new')).map((f) => statSync(join(env.dataDir, 'mail', 'bob', 'new', f)));
    assert.ok(
      a.some((x) => b.some((y) => y.ino === x.ino)),
      'the message for both is one file, hard-linked into both Maildirs',
    );
    const c = await login(imapPort, 'bob', 'bob');
    try {
      assert.match(await c.cmd('SELECT INBOX'), /^\* 2 EXISTS/m);
      const f = await c.cmd('FETCH 1:2 (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
      assert.match(f, /Subject: for both/);
      assert.match(f, /Subject: large for bob/);
      const sizes = [...f.matchAll(/RFC822\.SIZE (\d+)/g)].map((m) => Number(m[1]));
      assert.ok(Math.max(...sizes) > 1536 * 1024, `sizes ${sizes.join(', ')}`);
      const body = await c.cmd('FETCH 2 BODY[TEXT]');
      assert.ok(body.length > 1536 * 1024, 'the whole large message is readable');
    } finally {
      c.close();
    }
    const c2 = await login(imapPort, 'alice');
    try {
      const f = await c2.cmd('SELECT INBOX');
      assert.match(f, /^\* 2 EXISTS/m);
    } finally {
      c2.close();
    }
  });

  test('mailplane delivers into a Maildir Dovecot created, and into folders Dovecot has written to', async () => {
    // carol logs in before she has any mail: Dovecot creates her Maildir, as vmail
    let c = await login(imapPort, 'carol');
    try {
      assert.match(await c.cmd('SELECT INBOX'), /^\* 0 EXISTS/m);
    } finally {
      c.close();
    }
    const carol = join(env.dataDir, 'mail', 'carol');
    assert.equal(statSync(carol).uid, idOf('-u', VMAIL), `Dovecot made ${carol}\n${dovecotLog()}`);
    // a home under the setgid mail/: Dovecot copied its group and mode (docs/install.md says why)
    assert.equal(statSync(carol).mode & 0o7777, 0o2770);
    assert.equal(statSync(carol).gid, gid);
    await send(env, ['carol@example.com'], message('for carol'));
    await send(env, ['alice@example.com'], message('second for alice'));
    c = await login(imapPort, 'carol');
    try {
      const sel = await c.cmd('SELECT INBOX');
      assert.match(sel, /^\* 1 EXISTS/m);
      assert.match(await c.cmd('FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]'), /Subject: for carol/);
    } finally {
      c.close();
    }
    c = await login(imapPort, 'alice');
    try {
      assert.match(await c.cmd('SELECT INBOX'), /^\* 3 EXISTS/m);
      await c.cmd('STORE 1:3 +FLAGS (\\Deleted)');
      await c.cmd('EXPUNGE');
      assert.match(await c.cmd('SELECT INBOX'), /^\* 0 EXISTS/m, 'the group may delete mail');
    } finally {
      c.close();
    }
  });

  test('spoofed mail filed in the junk folder (.Junk) is a folder Dovecot lists and reads', async () => {
    const spoof = 'From: ceo@example.com\r\nTo: alice@example.com\r\nSubject: wire the money\r\nMessage-ID: <spoof@x.test>\r\n\r\nUrgent.\r\n';
    await send(env, ['alice@example.com'], spoof);
    await waitFor('the junk folder', () => files(join(env.dataDir, 'mail', 'alice', '.Junk', 'new')).length === 1);
    const c = await login(imapPort, 'alice');
    try {
      assert.match(await c.cmd('LIST "" "*"'), /^\* LIST \([^)]*\) "\." "?Junk"?\r$/m);
      const sel = await c.cmd('SELECT Junk');
      assert.match(sel, /^\* 1 EXISTS/m, `${sel}\n${dovecotLog()}`);
      assert.match(await c.cmd('FETCH 1 BODY.PEEK[HEADER]'), /Subject: wire the money/);
      assert.match(await c.cmd('SELECT INBOX'), /^\* 0 EXISTS/m, 'not in the inbox');
    } finally {
      c.close();
    }
  });

  test('every Maildir folder and message file mailplane made carries the group and the modes', () => {
    const mail = join(env.dataDir, 'mail');
    const root = statSync(mail);
    assert.equal(root.gid, gid);
    assert.equal(root.mode & 0o7777, 0o2770);
    let checked = 0;
    const mailplaneUid = nonRoot ? serviceUid : 0;
    const maildirs = readdirSync(mail).flatMap((user) => [
      user,
      ...readdirSync(join(mail, user))
        .filter((f) => f.startsWith('.'))
        .map((f) => `${user}/${f}`),
    ]);
    assert.ok(maildirs.includes('alice/.Junk'), maildirs.join(', '));
    for (const user of maildirs) {
      for (const dir of [join(mail, user), ...['tmp', 'new', 'cur'].map((s) => join(mail, user, s))]) {
        const st = statSync(dir);
        assert.equal(st.gid, gid, `${dir} group`);
        if (st.uid === mailplaneUid) {
          assert.equal(st.mode & 0o7777, 0o2770, `${dir} mode`);
          checked++;
        }
      }
      for (const sub of ['new', 'cur']) {
        for (const f of files(join(mail, user, sub))) {
          const st = lstatSync(join(mail, user, sub, f));
          assert.equal(st.uid, mailplaneUid, `${f}: written by mailplane`);
          assert.equal(st.gid, gid, `${user}/${sub}/${f} group`);
          assert.equal(st.mode & 0o7777, 0o640, `${user}/${sub}/${f} mode`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 8, `${checked} checked`);
    // the data dir the operator made: untouched (0711, the service user's)
    assert.equal(statSync(env.dataDir).mode & 0o7777, 0o711);
  });

  test('mailplane refuses to start as a user outside the mailbox group', (t) => {
    if (!nonRoot) return t.skip('mailplane runs as root here');
    const r = spawnSync('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', process.execPath, BIN, 'run', '--config', env.configFile], {
      encoding: 'utf8',
      cwd: env.dir,
      timeout: 15_000,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`storage\\.mailboxGroup: mailplane runs as uid \\d+, which is not in group ${VMAIL} \\(gid ${gid}\\)`));
  });
});
