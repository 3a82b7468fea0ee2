// Message boundaries and line ends, end to end. Only <CR><LF>.<CR><LF> ends a message; every
// other "end of data" look-alike (the SMTP smuggling variants of CVE-2023-51764 and kin) is
// content, and a bare CR or LF in it is stored — and relayed — as CRLF, so that no downstream
// server can read a boundary where we saw none. Lines longer than the limit are refused.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { SmtpClient } from './helpers/smtp.js';

let env: Env;
let mp: MailplaneProcess;
let relay: TestRelay;

const BARE = /\r(?!\n)|(?<!\r)\n/;
const list = (dir: string) => {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
};
const bobFiles = () => list(join(env.dataDir, 'mail', 'bob', 'new'));
const readBob = (f: string) => readFileSync(join(env.dataDir, 'mail', 'bob', 'new', f), 'latin1');

before(async () => {
  env = await makeEnv();
  relay = await new TestRelay({ port: await freePort(), mode: 'plain' }).start();
  mp = await startMailplane(env, baseConfig(env, { relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.o.port}\n  secure: false\n` }));
});

after(async () => {
  await mp.stop();
  await relay.stop();
});

/** Sends raw bytes after DATA (no dot-stuffing, no terminator added) and returns the replies. */
async function transaction(c: SmtpClient, to: string[], raw: string): Promise<number> {
  assert.equal((await c.cmd('MAIL FROM:<x@example.net>')).code, 250);
  for (const t of to) assert.equal((await c.cmd(`RCPT TO:<${t}>`)).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(Buffer.from(raw, 'latin1'));
  return (await c.read()).code;
}

const VARIANTS: Record<string, string> = {
  'LF.LF': '\n.\n',
  'LF.CRLF': '\n.\r\n',
  'CRLF.LF': '\r\n.\n',
  'CR.CR': '\r.\r',
  'CR.CRLF': '\r.\r\n',
  'CRLF.CR': '\r\n.\r',
  'CRLF NUL.CRLF': '\r\n\x00.\r\n',
};

for (const [name, fake] of Object.entries(VARIANTS)) {
  test(`smuggling with ${name}: one message, stored and relayed with CRLF line ends only, nothing smuggled`, async () => {
    const before = bobFiles();
    const sentBefore = relay.messages.length;
    const { client: c } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
    await c.ehlo();
    const smuggled = `MAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: smuggled ${name}\r\n\r\nevil\r\n`;
    const code = await transaction(c, ['bob@example.com', 'far@remote.example'], `Subject: variant ${name}\r\n\r\nbefore${fake}${smuggled}.\r\n`);
    assert.equal(code, 250);
    // had the server seen a boundary, the smuggled commands would have been answered next
    assert.equal((await c.cmd('QUIT')).code, 221);
    const added = bobFiles().filter((f) => !before.includes(f));
    assert.equal(added.length, 1, 'exactly one message');
    const stored = readBob(added[0]!);
    assert.ok(!BARE.test(stored), 'no bare CR or LF in what is stored');
    assert.ok(stored.includes(`Subject: smuggled ${name}`), 'the look-alike and what follows are content');
    assert.deepEqual(
      list(join(env.dataDir, 'mail', 'alice', 'new')).filter((f) => readFileSync(join(env.dataDir, 'mail', 'alice', 'new', f), 'latin1').includes('evil')),
      [],
    );
    await mp.waitFor('the relayed copy', () => relay.messages.length === sentBefore + 1);
    const out = relay.messages[sentBefore]!;
    assert.equal(out.from, 'x@example.net');
    assert.deepEqual(out.to, ['far@remote.example']);
    const relayed = out.raw.toString('latin1');
    assert.ok(!BARE.test(relayed), 'no bare CR or LF in what is relayed');
    assert.equal(relayed, stored.slice(stored.indexOf('Received: ')), 'relayed exactly as stored');
    await mp.waitFor('the queue empty', async () => {
      const q = (await mp.status()).queue;
      return q.active + q.deferred === 0;
    });
    assert.equal(relay.messages.length, sentBefore + 1, 'no second message went out');
  });
}

test('bare LF line ends are stored as CRLF', async () => {
  const before = bobFiles();
  const { client: c } = await SmtpClient.connect({ port: env.ports.mx });
  await c.ehlo();
  assert.equal(await transaction(c, ['bob@example.com'], 'Subject: unix\n\nline 1\nline 2\r\n.\r\n'), 250);
  await c.quit();
  const [f] = bobFiles().filter((x) => !before.includes(x));
  assert.ok(readBob(f!).endsWith('Subject: unix\r\n\r\nline 1\r\nline 2\r\n'));
});

test('a line of 998 octets is accepted; 999 gets 554 5.6.0, nothing is stored, and the session goes on', async () => {
  const before = bobFiles();
  const { client: c } = await SmtpClient.connect({ port: env.ports.mx });
  await c.ehlo();
  assert.equal((await c.send('x@example.net', ['bob@example.com'], `Subject: ok\r\n\r\n${'a'.repeat(998)}\r\n`)).data!.code, 250);
  const long = await c.send('x@example.net', ['bob@example.com'], `Subject: long\r\n\r\n${'b'.repeat(999)}\r\n`);
  assert.equal(long.data!.lines[0], '554 5.6.0 Message contains a line longer than 998 octets');
  // a long line split across network writes is measured whole
  assert.equal((await c.cmd('MAIL FROM:<x@example.net>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<bob@example.com>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(`Subject: split\r\n\r\n${'c'.repeat(600)}`);
  await new Promise((r) => setTimeout(r, 20)); // pacing, so that the line arrives in two segments
  c.write(`${'c'.repeat(600)}\r\n.\r\n`);
  assert.equal((await c.read()).code, 554);
  assert.equal((await c.send('x@example.net', ['bob@example.com'], 'Subject: after\r\n\r\nfine\r\n')).data!.code, 250);
  await c.quit();
  const added = bobFiles()
    .filter((x) => !before.includes(x))
    .map(readBob);
  assert.equal(added.length, 2);
  assert.ok(added.every((t) => !t.includes('Subject: long') && !t.includes('Subject: split')));
  assert.ok((await mp.metric('mailplane_smtp_rejections_total', 'listener="mx",reason="line_length"'))! >= 2);
});
