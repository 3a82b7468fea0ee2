// Durable local delivery and queueing as a mail client sees it: real TLS clients, Maildir
// files checked byte for byte, a local+remote message split, storage failures answered 4xx,
// and a kill -9 right after 250.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { baseConfig, CLIENTS, makeEnv, spawnMailplane, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { mountTmpfs } from './helpers/tmpfs.js';

let env: Env;
let mp: MailplaneProcess;

before(async () => {
  env = await makeEnv();
  mp = await startMailplane(env, baseConfig(env));
});
after(async () => {
  await mp.stop();
});

function mailbox(user: string): string[] {
  try {
    return readdirSync(join(env.dataDir, 'mail', user, 'new')).sort();
  } catch {
    return [];
  }
}

function read(user: string, name: string): string {
  return readFileSync(join(env.dataDir, 'mail', user, 'new', name), 'utf8');
}

function newFiles(user: string, before: string[]): string[] {
  return mailbox(user).filter((f) => !before.includes(f));
}

describe('mail clients', () => {
  test('nodemailer over STARTTLS (587-style) and implicit TLS (465-style) delivers to the Maildir', async () => {
    for (const [port, secure] of [
      [env.ports.submission, false],
      [env.ports.submissions, true],
    ] as const) {
      const before = mailbox('bob');
      const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure, requireTLS: !secure, auth: { user: 'alice', pass: USERS.alice.password }, tls: { rejectUnauthorized: false } });
      const info = await t.sendMail({ from: 'alice@example.com', to: 'bob@example.org', subject: `tls ${port}`, text: 'hi' });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as \w+$/);
      const added = newFiles('bob', before);
      assert.equal(added.length, 1);
      assert.match(read('bob', added[0]!), new RegExp(`Subject: tls ${port}`));
      t.close();
    }
  });
});

describe('local delivery', () => {
  test('the Maildir file is byte-exact: our headers, then the message exactly as received', async () => {
    const before = mailbox('bob');
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await c.ehlo('client.example.net');
    await c.starttls();
    await c.ehlo('client.example.net');
    const body = 'From: a@example.net\r\nTo: bob@example.com\r\nSubject: exact\r\n\r\nline 1\r\n.starts with a dot\r\n\r\nlast line\r\n';
    const r = await c.send('a@example.net', ['bob@example.com'], body);
    const id = r.data!.lines[0]!.match(/queued as (\w+)$/)![1]!;
    const cipher = c.tlsSocket!.getCipher().name;
    const version = c.tlsSocket!.getProtocol();
    await c.quit();
    const [file] = newFiles('bob', before);
    assert.ok(file);
    const got = read('bob', file);
    const date = got.match(/\tfor <bob@example\.com>; (.+)\r\n/)![1]!;
    assert.match(date, /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$/);
    const expected =
      'Return-Path: <a@example.net>\r\n' +
      'Delivered-To: bob@example.com\r\n' +
      'Received: from client.example.net ([127.0.0.1])\r\n' +
      `\tby mail.example.com (mailplane) with ESMTPS id ${id}\r\n` +
      `\t(using ${version} with cipher ${cipher})\r\n` +
      `\tfor <bob@example.com>; ${date}\r\n` +
      body;
    assert.equal(got, expected);
    assert.match(file, new RegExp(`,S=${Buffer.byteLength(expected)}$`));
  });

  test('every domain reaches one mailbox; one copy when several of its addresses are used', async () => {
    const before = mailbox('alice');
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await c.ehlo();
    for (const to of ['alice@example.com', 'alice@example.org', 'ALICE@Example.Org']) {
      assert.equal((await c.send('x@example.net', [to], message(`to ${to}`))).data!.code, 250);
    }
    assert.equal(newFiles('alice', before).length, 3);
    const mid = mailbox('alice');
    const r = await c.send('x@example.net', ['alice@example.com', 'alice@example.org', 'postmaster@example.com'], message('three addresses'));
    assert.equal(r.data!.code, 250);
    assert.equal(newFiles('alice', mid).length, 1);
    await c.quit();
  });

  test('an alias delivers to its user, with Delivered-To naming the alias', async () => {
    const before = mailbox('alice');
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await c.ehlo();
    assert.equal((await c.send('x@example.net', ['info@example.org'], message('alias'))).data!.code, 250);
    await c.quit();
    const [f] = newFiles('alice', before);
    assert.match(read('alice', f!), /^Return-Path: <x@example\.net>\r\nDelivered-To: info@example\.org\r\n/);
  });

  test('a message to local and remote recipients is split: Maildir for the local, queue for the rest', async () => {
    const queueDir = join(env.dataDir, 'queue');
    const queued = () => readdirSync(queueDir).filter((f) => f.endsWith('.json'));
    const beforeQ = queued();
    const beforeBob = mailbox('bob');
    const c = (await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt })).client;
    await c.ehlo();
    const body = message('split');
    const r = await c.send('webmail@example.com', ['bob@example.com', 'one@remote.example', 'two@remote.example'], body);
    assert.equal(r.data!.code, 250);
    await c.quit();
    assert.equal(newFiles('bob', beforeBob).length, 1);
    const added = queued().filter((f) => !beforeQ.includes(f));
    assert.equal(added.length, 1);
    const entry = JSON.parse(readFileSync(join(queueDir, added[0]!), 'utf8'));
    assert.equal(entry.sender, 'webmail@example.com');
    assert.deepEqual(
      entry.recipients.map((x: { address: string; state: string }) => [x.address, x.state]),
      [
        ['one@remote.example', 'pending'],
        ['two@remote.example', 'pending'],
      ],
    );
    // one file: bob's Maildir copy and the queue's .eml are the same inode; the queue sends it
    // from bodyOffset on, past the lines only the Maildir copy carries
    const emlPath = join(queueDir, added[0]!.replace('.json', '.eml'));
    const [bobFile] = newFiles('bob', beforeBob);
    assert.equal(statSync(emlPath).ino, statSync(join(env.dataDir, 'mail', 'bob', 'new', bobFile!)).ino);
    const file = readFileSync(emlPath, 'latin1');
    assert.equal(file.slice(0, entry.bodyOffset), 'Return-Path: <webmail@example.com>\r\nDelivered-To: bob@example.com\r\n');
    const sent = file.slice(entry.bodyOffset);
    assert.match(sent, /^Received: from client\.test \(\[127\.0\.0\.5\]\)\r\n\tby mail\.example\.com \(mailplane\) with ESMTP id /);
    assert.ok(sent.endsWith(body), 'queued bytes are the message as sent, CRLF kept');
    assert.ok(!/Return-Path|Delivered-To/.test(sent));
  });
});

describe('storage failures answer 4xx and store nothing', () => {
  test('451 4.3.0 when a Maildir cannot be created, and no partial delivery to the other recipient', async () => {
    // a regular file where carol's Maildir folder belongs (root ignores permission bits, this does not)
    const users = `      - { name: alice, passwordHash: "${USERS.alice.hash}", aliases: [postmaster, info] }\n      - { name: bob, passwordHash: "${USERS.bob.hash}" }\n      - { name: carol, passwordHash: "${USERS.bob.hash}" }\n`;
    const e2 = await makeEnv();
    mkdirSync(join(e2.dataDir, 'mail'), { recursive: true });
    writeFileSync(join(e2.dataDir, 'mail', 'carol'), 'not a folder');
    const second = await startMailplane(e2, baseConfig(e2, { users }));
    try {
      const c = (await SmtpClient.connect({ port: e2.ports.mx })).client;
      await c.ehlo();
      const r = await c.send('x@example.net', ['bob@example.com', 'carol@example.com'], message('fails'));
      assert.equal(r.data!.lines[0], '451 4.3.0 Local error in processing, try again later');
      await c.quit();
      const bobNew = join(e2.dataDir, 'mail', 'bob', 'new');
      assert.deepEqual(safeList(bobNew), []);
      assert.deepEqual(safeList(join(e2.dataDir, 'mail', 'bob', 'tmp')), [], 'no tmp leftovers');
      assert.equal(await second.metric('mailplane_smtp_rejections_total', 'listener="mx",reason="storage"'), 1);
    } finally {
      await second.stop();
    }
  });

  test('452 4.3.1 when the file system is full (a small tmpfs)', async (t) => {
    const fs = mountTmpfs(t, env.dir, '256k');
    if (!fs) return;
    const mnt = fs.path;
    const e3: Env = { ...(await makeEnv()), dataDir: mnt };
    const third = await startMailplane(e3, baseConfig(e3, { maxMessageSize: '10MB' }));
    try {
      const c = (await SmtpClient.connect({ port: e3.ports.mx })).client;
      await c.ehlo();
      let sawFull = false;
      let accepted = 0;
      for (let i = 0; i < 20 && !sawFull; i++) {
        const r = await c.send('x@example.net', ['bob@example.com'], message(`fill ${i}`, `${'y'.repeat(998)}\r\n`.repeat(60)));
        if (r.data!.code === 452) {
          assert.equal(r.data!.lines[0], '452 4.3.1 Insufficient system storage, try again later');
          sawFull = true;
        } else {
          assert.equal(r.data!.code, 250);
          accepted++;
        }
      }
      assert.ok(sawFull, 'the tmpfs filled up');
      assert.ok(accepted >= 1, 'the room there was went to mail (nothing reserved ahead on a nearly full disk)');
      // other sessions are still served: a small message to a local user on a fresh connection gets a reply
      const other = (await SmtpClient.connect({ port: e3.ports.mx })).client;
      assert.equal((await other.ehlo()).code, 250);
      await other.quit();
      await c.quit();
    } finally {
      await third.stop();
      fs.unmount();
    }
  });
});

describe('durability', () => {
  test('kill -9 right after 250: the message is in new/, complete, and the server restarts', async () => {
    const e4 = await makeEnv();
    const p = await startMailplane(e4, baseConfig(e4));
    const c = (await SmtpClient.connect({ port: e4.ports.mx })).client;
    await c.ehlo();
    const body = message('survives', 'x\r\n'.repeat(1000));
    const r = await c.send('x@example.net', ['bob@example.com'], body);
    assert.equal(r.data!.code, 250);
    await p.kill9();
    const dir = join(e4.dataDir, 'mail', 'bob', 'new');
    const files = readdirSync(dir);
    assert.equal(files.length, 1);
    assert.ok(readFileSync(join(dir, files[0]!), 'utf8').endsWith(body));
    assert.deepEqual(readdirSync(join(e4.dataDir, 'mail', 'bob', 'tmp')), []);
    const again = spawnMailplane(e4);
    await again.waitReady();
    assert.equal(await again.stop(), 0, again.logs);
  });
});

describe('large messages', () => {
  test('over 64 KiB (written once to a spool file, not into the journal): every copy complete at the 250, kill -9 right after, the spool emptied at restart', async () => {
    const e5 = await makeEnv();
    const p = await startMailplane(e5, baseConfig(e5, { maxMessageSize: '10MB' }));
    const c = (await SmtpClient.connect({ port: e5.ports.mx, localAddress: CLIENTS.exempt })).client;
    await c.ehlo();
    const body = message('large', `${'z'.repeat(998)}\r\n`.repeat(200)); // ~200 KB
    const r = await c.send('webmail@example.com', ['alice@example.com', 'bob@example.com', 'far@remote.example'], body);
    assert.equal(r.data!.code, 250);
    await p.kill9();
    for (const user of ['alice', 'bob']) {
      const dir = join(e5.dataDir, 'mail', user, 'new');
      const files = readdirSync(dir);
      assert.equal(files.length, 1, user);
      assert.ok(readFileSync(join(dir, files[0]!), 'latin1').endsWith(body), `${user}'s copy is complete`);
      assert.deepEqual(readdirSync(join(e5.dataDir, 'mail', user, 'tmp')), []);
    }
    const queueDir = join(e5.dataDir, 'queue');
    const json = readdirSync(queueDir).filter((f) => f.endsWith('.json'));
    assert.equal(json.length, 1);
    assert.ok(readFileSync(join(queueDir, json[0]!.replace('.json', '.eml')), 'latin1').endsWith(body));
    assert.deepEqual(
      JSON.parse(readFileSync(join(queueDir, json[0]!), 'utf8')).recipients.map((x: { address: string }) => x.address),
      ['far@remote.example'],
    );
    assert.deepEqual(safeList(join(queueDir, 'tmp')), []);
    // written once: both mailboxes and the queue hold the same file
    const inodes = new Set([
      ...['alice', 'bob'].map((u) => statSync(join(e5.dataDir, 'mail', u, 'new', readdirSync(join(e5.dataDir, 'mail', u, 'new'))[0]!)).ino),
      statSync(join(queueDir, json[0]!.replace('.json', '.eml'))).ino,
    ]);
    assert.equal(inodes.size, 1);
    const again = spawnMailplane(e5);
    await again.waitReady();
    assert.deepEqual(safeList(join(e5.dataDir, 'spool')), [], 'what the crash left in the spool is gone');
    for (const user of ['alice', 'bob']) assert.equal(readdirSync(join(e5.dataDir, 'mail', user, 'new')).length, 1);
    assert.equal(await again.stop(), 0, again.logs);
  });
});

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
