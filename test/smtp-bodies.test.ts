// Message bodies on their way in: beyond 1 MiB (or the memory budget) they stream into a spool
// file as they arrive; a body is written once, whatever the number of mailboxes; a client that
// goes away leaves nothing behind; a spool that cannot be written answers 452, never 250.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { baseConfig, CLIENTS, makeEnv, startMailplane, USERS, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { mountTmpfs } from './helpers/tmpfs.js';

let env: Env;
let mp: MailplaneProcess;
const spool = () => list(join(env.dataDir, 'spool'));
const mailbox = (user: string) => list(join(env.dataDir, 'mail', user, 'new'));

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** 20 users, u0…u19, each with the same password. */
function manyUsers(n: number): string {
  return Array.from({ length: n }, (_, i) => `      - { name: u${i}, passwordHash: "${USERS.bob.hash}" }\n`).join('');
}

before(async () => {
  env = await makeEnv();
  const users = `      - { name: alice, passwordHash: "${USERS.alice.hash}", aliases: [postmaster, info] }\n      - { name: bob, passwordHash: "${USERS.bob.hash}" }\n${manyUsers(20)}`;
  mp = await startMailplane(env, baseConfig(env, { maxMessageSize: '30MB', users }));
});

after(async () => {
  await mp.stop();
});

test('a body over 1 MiB streams into a spool file while it arrives; after the 250 nothing is left there', async () => {
  const before = mailbox('bob');
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  assert.equal((await c.cmd('MAIL FROM:<x@example.net>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<bob@example.com>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  const line = `${'s'.repeat(998)}\r\n`;
  c.write(`Subject: spooled\r\n\r\n${line.repeat(1500)}`); // ~1.5 MB, no end yet
  const file = await mp.waitFor('the spool file', () => spool()[0]);
  await mp.waitFor('the body on disk as it arrives', () => statSync(join(env.dataDir, 'spool', file)).size > 1_200_000);
  assert.deepEqual(mailbox('bob'), before, 'nothing delivered before the end of the message');
  c.write(`${line.repeat(10)}.\r\n`);
  const r = await c.read();
  assert.equal(r.code, 250);
  await c.quit();
  const [got] = mailbox('bob').filter((f) => !before.includes(f));
  assert.ok(readFileSync(join(env.dataDir, 'mail', 'bob', 'new', got!), 'latin1').endsWith(`Subject: spooled\r\n\r\n${line.repeat(1510)}`));
  await mp.waitFor('the spool emptied at the checkpoint', () => spool().length === 0);
  assert.ok((await mp.metric('mailplane_message_bodies_spooled_total'))! >= 1);
  assert.equal(await mp.metric('mailplane_message_memory_bytes'), 0);
});

test('one 5 MB message to 20 mailboxes is written once: every copy is the same file', async () => {
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  const body = message('to twenty', `${'t'.repeat(998)}\r\n`.repeat(5000));
  const to = Array.from({ length: 20 }, (_, i) => `u${i}@example.com`);
  const r = await c.send('x@example.net', to, body);
  assert.equal(r.data!.code, 250);
  await c.quit();
  const files = to.map((_, i) => join(env.dataDir, 'mail', `u${i}`, 'new', mailbox(`u${i}`)[0]!));
  const stats = files.map((f) => statSync(f));
  assert.equal(new Set(stats.map((s) => s.ino)).size, 1, 'one inode');
  await mp.waitFor('the spool file dropped at the checkpoint', () => spool().length === 0);
  assert.equal(statSync(files[0]!).nlink, 20, 'twenty links: the mailboxes, nothing else');
  const text = readFileSync(files[0]!, 'latin1');
  assert.match(text, /^Return-Path: <x@example\.net>\r\nReceived: /, 'no Delivered-To in a copy shared by several mailboxes');
  assert.ok(text.endsWith(body));
});

test('a client that disconnects in the middle of a large message leaves no spool file and delivers nothing', async () => {
  const before = mailbox('bob');
  const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
  await c.ehlo();
  await c.cmd('MAIL FROM:<x@example.net>');
  await c.cmd('RCPT TO:<bob@example.com>');
  await c.cmd('DATA');
  c.write(`Subject: cut\r\n\r\n${`${'c'.repeat(998)}\r\n`.repeat(1500)}`);
  await mp.waitFor('the spool file', () => spool().length > 0);
  c.destroy();
  await mp.waitFor('the spool file removed', () => spool().length === 0);
  assert.deepEqual(mailbox('bob'), before);
});

test('over the size limit while spooling: 552, the spool file is gone, the session goes on', async () => {
  const small = await makeEnv();
  const p = await startMailplane(small, baseConfig(small, { maxMessageSize: '2MB' }));
  try {
    const c = (await SmtpClient.connect({ port: small.ports.mx })).client;
    await c.ehlo();
    const r = await c.send('x@example.net', ['bob@example.com'], message('too big', `${'b'.repeat(998)}\r\n`.repeat(3000)));
    assert.equal(r.data!.lines[0], '552 5.3.4 Message size exceeds fixed maximum message size of 2000000 bytes');
    await p.waitFor('the spool file removed', () => list(join(small.dataDir, 'spool')).length === 0);
    assert.equal((await c.send('x@example.net', ['bob@example.com'], message('fits'))).data!.code, 250);
    await c.quit();
  } finally {
    await p.stop();
  }
});

test('with memoryBudget 0 every body is spooled, and arrives byte-exact', async () => {
  const e = await makeEnv();
  const p = await startMailplane(e, baseConfig(e).replace(`  dataDir: ${e.dataDir}\n`, `  dataDir: ${e.dataDir}\n  memoryBudget: 0\n`));
  try {
    const c = (await SmtpClient.connect({ port: e.ports.mx, localAddress: CLIENTS.exempt })).client;
    await c.ehlo();
    const body = message('tiny', 'one line\r\n');
    assert.equal((await c.send('webmail@example.com', ['bob@example.com', 'far@remote.example'], body)).data!.code, 250);
    await c.quit();
    const dir = join(e.dataDir, 'mail', 'bob', 'new');
    assert.ok(readFileSync(join(dir, readdirSync(dir)[0]!), 'latin1').endsWith(body));
    assert.equal(await p.metric('mailplane_message_bodies_spooled_total'), 1);
    assert.equal(await p.metric('mailplane_message_memory_budget_bytes'), 0);
    assert.equal((await p.status()).storage.messageMemory.budgetBytes, 0);
  } finally {
    await p.stop();
  }
});

test('a spool that cannot be written (full file system) answers 452 4.3.1 and stores nothing', async (t) => {
  const e = await makeEnv();
  const fs = mountTmpfs(t, e.dir, '2m');
  if (!fs) return;
  const mnt = fs.path;
  const full: Env = { ...e, dataDir: mnt };
  const p = await startMailplane(full, baseConfig(full, { maxMessageSize: '10MB' }));
  try {
    const c = (await SmtpClient.connect({ port: full.ports.mx })).client;
    await c.ehlo();
    const r = await c.send('x@example.net', ['bob@example.com'], message('does not fit', `${'f'.repeat(998)}\r\n`.repeat(3000))); // 3 MB
    assert.equal(r.data!.lines[0], '452 4.3.1 Insufficient system storage, try again later');
    assert.deepEqual(list(join(mnt, 'mail', 'bob', 'new')), []);
    await p.waitFor('the spool file removed', () => list(join(mnt, 'spool')).length === 0);
    // the session and the server go on: a small message still fits
    assert.equal((await c.send('x@example.net', ['bob@example.com'], message('fits'))).data!.code, 250);
    await c.quit();
  } finally {
    await p.stop();
    fs.unmount();
  }
});
