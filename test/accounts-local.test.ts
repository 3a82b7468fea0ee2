// Local accounts at run time: users from the config and from usersFile, every supported hash
// scheme, login as name or name@domain, and changes to usersFile applied without a restart.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { hashPassword } from '../src/accounts/passwords.js';
import { baseConfig, makeEnv, startMailplane } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

test('users from usersFile (bcrypt, sha512-crypt, argon2id) log in and receive; edits apply live', async () => {
  const env = await makeEnv();
  const usersFile = join(env.dir, 'users');
  const lines = [`carol:${await hashPassword('carol-pw', 'bcrypt')}`, `dave:${await hashPassword('dave-pw', 'sha512-crypt')}`, `erin:${await hashPassword('erin-pw', 'argon2id')}`];
  writeFileSync(usersFile, `# extra users\n${lines.join('\n')}\n`);
  const config = baseConfig(env)
    .replace('storage:', `storage:`)
    .replace(/(\n {6}- \{ name: bob[^\n]*\n)/, `$1    usersFile: ${usersFile}\n`);
  const mp = await startMailplane(env, config);
  try {
    for (const [user, pass] of [
      ['carol', 'carol-pw'],
      ['dave@example.org', 'dave-pw'],
      ['ERIN', 'erin-pw'],
    ] as const) {
      const c = (await SmtpClient.connect({ port: env.ports.submissions, implicitTls: true })).client;
      await c.ehlo();
      assert.equal((await c.authPlain(user, pass)).code, 235, user);
      await c.quit();
    }
    const c = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await c.ehlo();
    assert.equal((await c.send('x@example.net', ['dave@example.com'], message('to dave'))).data!.code, 250);
    // dave leaves: the file changes, the running server follows
    writeFileSync(usersFile, `${lines[0]}\n${lines[2]}\n`);
    await mp.waitFor('dave removed', async () => (await mp.status()).applied.generation === 2);
    const d = (await SmtpClient.connect({ port: env.ports.mx })).client;
    await d.ehlo();
    assert.equal((await d.cmd('MAIL FROM:<x@example.net>')).code, 250);
    assert.equal((await d.cmd('RCPT TO:<dave@example.com>')).code, 550);
    await d.quit();
    await c.quit();
  } finally {
    await mp.stop();
  }
});
