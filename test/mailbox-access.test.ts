// storage.mailboxGroup and storage.mailboxMode without an IMAP server (test/dovecot-imap.test.ts
// has one): what `validate` says, what the journal's files get — written, spooled, hard-linked,
// replayed after a crash — and a change applied by a reload, without a restart, shown in the plan.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigText } from '../src/config/load.js';
import type { JournalRecord } from '../src/store/journal-format.js';
import { DEFAULT_MAILBOX_ACCESS, type MailboxAccess } from '../src/store/mailbox-access.js';
import { layout, materialize } from '../src/store/materialize.js';
import { mailplane } from './helpers/cli.js';
import { baseConfig, makeEnv, startMailplane, type Env } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { tempDir } from './helpers/tmp.js';

const isRoot = process.getuid!() === 0;
/** A group to give files to: any gid as root; otherwise our own (all a non-root process may use). */
const GID = isRoot ? 4242 : process.getgid!();

const mode = (p: string) => statSync(p).mode & 0o7777;

function configWith(storage: string): string {
  return `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  listeners:
    - { name: mx, address: 127.0.0.1, port: 2525, role: mx, tls: none }
accounts:
  local:
    users: [{ name: alice, passwordHash: "$6$mailplanetest$VT3oLMRyW671U0PED6080FleBzY2IguVOylg2ui.Wop2F9RFP1HHOOd0wv4sD7THr/TW0dfMLPtwPYjtF9b0u1", aliases: [postmaster] }]
storage:
  dataDir: ./data
${storage}`;
}

async function problems(storage: string, forRun = false): Promise<string[]> {
  const dir = tempDir('mbox-cfg');
  const r = await loadConfigText(join(dir, 'm.yaml'), configWith(storage), { forRun });
  return [...r.errors, ...r.warnings].map((i) => `${i.severity} ${i.code} ${i.path}: ${i.message}`);
}

test('validate: a group by name (from /etc/group) or gid, modes in quotes, the owner keeps full access', async () => {
  assert.deepEqual(await problems('  mailboxGroup: root\n'), []);
  assert.deepEqual(await problems(`  mailboxGroup: ${GID}\n  mailboxMode: { files: "0640", folders: "02750" }\n`), []);
  const unknown = await problems('  mailboxGroup: no-such-group-here\n');
  assert.equal(unknown.length, 1);
  assert.match(unknown[0]!, /^error MP_MAILBOX_GROUP storage\.mailboxGroup: no group 'no-such-group-here' in \/etc\/group on this machine/);
  assert.deepEqual(await problems('  mailboxMode: { files: 0640 }\n'), [
    'error MP_TYPE storage.mailboxMode.files: a mode must be written in quotes, e.g. "0640": YAML reads it without quotes as the number 640',
  ]);
  assert.deepEqual(await problems('  mailboxMode: { files: "0440", folders: "0500" }\n'), [
    'error MP_INVALID_VALUE storage.mailboxMode.files: mailplane (the owner) needs read and write (6) in the owner digit; got "0440"',
    'error MP_INVALID_VALUE storage.mailboxMode.folders: mailplane (the owner) needs full access (7) in the owner digit; got "0500"',
  ]);
  const sticky = await problems('  mailboxMode: { folders: "1770" }\n');
  assert.match(sticky[0]!, /^error MP_INVALID_VALUE storage\.mailboxMode\.folders: must be an octal folder mode in quotes/);
  assert.match((await problems('  mailboxGroup: root\n  mailboxMode: { files: "0600" }\n'))[0]!, /^warning MP_MAILBOX_GROUP storage\.mailboxMode\.files: with mailboxGroup set, the group cannot read/);
  assert.match((await problems('  mailboxGroup: "12x"\n'))[0]!, /must be a group name/);
});

test('validate prints the position of an unknown group in the file', async () => {
  const dir = tempDir('mbox-validate');
  writeFileSync(join(dir, 'mailserver.yaml'), configWith('  mailboxGroup: no-such-group-here\n'));
  const r = await mailplane(['validate', join(dir, 'mailserver.yaml')]);
  assert.equal(r.code, 1);
  assert.match(r.stdout + r.stderr, /mailserver\.yaml:12:17: storage\.mailboxGroup: no group 'no-such-group-here'/);
});

test('the state: modes default to private, or to group access with a group', async () => {
  const dir = tempDir('mbox-state');
  const plain = (await loadConfigText(join(dir, 'a.yaml'), configWith(''))).state!;
  assert.deepEqual([plain.storage.mailboxGroup, plain.storage.mailboxMode], [null, { files: '0600', folders: '0700' }]);
  const shared = (await loadConfigText(join(dir, 'b.yaml'), configWith('  mailboxGroup: root\n'))).state!;
  assert.deepEqual(
    [shared.storage.mailboxGroup, shared.storage.mailboxMode],
    [
      { name: 'root', gid: 0 },
      { files: '0640', folders: '2770' },
    ],
  );
  const written = (await loadConfigText(join(dir, 'c.yaml'), configWith(`  mailboxGroup: ${GID}\n  mailboxMode: { files: "644", folders: "02750" }\n`))).state!;
  assert.deepEqual(
    [written.storage.mailboxGroup, written.storage.mailboxMode],
    [
      { name: null, gid: GID },
      { files: '0644', folders: '2750' },
    ],
  );
});

/** One message for alice and bob and the queue, as the journal has it. */
function record(name: string, spool: string | null, data = Buffer.from('Subject: x\r\n\r\nhello\r\n')): JournalRecord {
  return { k: 'f', name, users: ['alice', 'bob'], queue: { id: `q${name.slice(0, 4)}`, json: '{}' }, data: spool ? new Uint8Array(0) : data, spool };
}

test('journal files: written once, spooled or replayed, every link has the group and mode; the defaults change nothing', () => {
  const access: MailboxAccess = { gid: GID, fileMode: 0o640, folderMode: 0o2770 };
  const dir = tempDir('mbox-journal');
  const l = layout(dir);
  mkdirSync(l.spool, { recursive: true });
  // a record replayed after a crash (recovery), with its bytes in the journal
  const links = (files: string[]) => files.filter((f) => !f.endsWith('.json')); // the queue entry's state is no link
  const placed = links(materialize(record('1000.M1P1Q1.test,S=20', null), l, { recovery: true, fsyncEach: false, access }));
  assert.equal(placed.length, 3, placed.join(', '));
  // and one whose bytes were in a spool file (large messages)
  writeFileSync(join(l.spool, 'big'), 'x'.repeat(2 * 1024 * 1024), { mode: 0o600 });
  const spooled = links(materialize(record('2000.M1P1Q2.test,S=20', 'big'), l, { recovery: true, fsyncEach: false, access }));
  assert.equal(spooled.length, 3);
  for (const files of [placed, spooled]) {
    const stats = files.map((f) => statSync(f));
    assert.equal(new Set(stats.map((s) => s.ino)).size, 1, 'one inode for both mailboxes and the queue');
    for (const s of stats) {
      assert.equal(s.gid, GID);
      assert.equal(s.mode & 0o7777, 0o640);
    }
  }
  for (const user of ['alice', 'bob']) for (const d of ['', 'tmp', 'new', 'cur']) assert.equal(mode(join(l.mail, user, d)), 0o2770, `${user}/${d}`);
  assert.equal(mode(l.queue), 0o700, 'the queue stays private');

  // the defaults: what mailplane always did
  const plainDir = tempDir('mbox-journal-plain');
  const p = layout(plainDir);
  const files = materialize(record('3000.M1P1Q3.test,S=20', null), p, { recovery: true, fsyncEach: false, access: DEFAULT_MAILBOX_ACCESS });
  for (const f of files) assert.equal(mode(f), 0o600);
  for (const d of ['', 'tmp', 'new', 'cur']) assert.equal(mode(join(p.mail, 'alice', d)), 0o700);
});

async function deliver(env: Env, to: string[], body: string): Promise<void> {
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  assert.equal((await c.send('x@example.net', to, body)).data?.code, 250);
  await c.quit();
}

function newFiles(env: Env, user: string): string[] {
  const d = join(env.dataDir, 'mail', user, 'new');
  return readdirSync(d).map((f) => join(d, f));
}

test('a change is planned, applied by a reload without a restart, and applies to what is created next', async () => {
  const env = await makeEnv();
  const mp = await startMailplane(env, baseConfig(env, { maxMessageSize: '5MB' }));
  try {
    await deliver(env, ['alice@example.com'], message('before'));
    const [first] = newFiles(env, 'alice');
    assert.equal(mode(first!), 0o600, "today's behaviour by default");
    assert.equal(mode(join(env.dataDir, 'mail', 'alice')), 0o700);
    assert.equal(mode(join(env.dataDir, 'mail')), 0o700);

    writeFileSync(env.configFile, baseConfig(env, { maxMessageSize: '5MB' }).replace(/(storage:\n {2}dataDir: .*\n)/, `$1  mailboxGroup: ${GID}\n`));
    const res = await mp.http('/-/reload', { method: 'POST' });
    const body = (await res.json()) as { outcome: string; plan: string[] };
    assert.equal(body.outcome, 'applied', JSON.stringify(body));
    assert.deepEqual(body.plan, [
      `update storage: applies to new messages (a new dataDir receives them) (mailboxGroup: none → {"name":null,"gid":${GID}}; mailboxMode.files: 0600 → 0640; mailboxMode.folders: 0700 → 2770)`,
    ]);
    await mp.waitFor('the Maildirs root to change', () => mode(join(env.dataDir, 'mail')) === 0o2770);
    assert.equal(statSync(join(env.dataDir, 'mail')).gid, GID);

    // bob's Maildir is new: folders and file get the group; alice's folders stay as they were made
    const line = `${'y'.repeat(70)}\r\n`;
    await deliver(env, ['alice@example.com', 'bob@example.com'], message('after', line.repeat(20_000))); // spooled: over 1 MiB
    for (const d of ['', 'tmp', 'new', 'cur']) {
      assert.equal(mode(join(env.dataDir, 'mail', 'bob', d)), 0o2770, `bob/${d}`);
      assert.equal(statSync(join(env.dataDir, 'mail', 'bob', d)).gid, GID);
    }
    assert.equal(mode(join(env.dataDir, 'mail', 'alice')), 0o700);
    const [bobs] = newFiles(env, 'bob');
    const alices = newFiles(env, 'alice').filter((f) => f !== first);
    assert.equal(statSync(bobs!).ino, statSync(alices[0]!).ino, 'one file for both');
    assert.equal(statSync(bobs!).size > 1024 * 1024, true);
    assert.equal(mode(bobs!), 0o640);
    assert.equal(statSync(bobs!).gid, GID);
    assert.equal(mode(first!), 0o600, 'mail stored before keeps its mode');
  } finally {
    await mp.stop();
  }
});
