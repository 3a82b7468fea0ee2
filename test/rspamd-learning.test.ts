// docs/rspamd.md's "Junk in, Junk out", as written: Debian's Dovecot with the documented IMAPSieve
// block and Sieve scripts (compiled by sievec), the documented pipe program calling rspamc, a real
// Rspamd whose Bayes classifier lives in a real Redis (Debian's redis-server). A user copying a
// message into Junk over IMAP makes Rspamd learn it as spam; copying it out of Junk, as ham.
// Everything on loopback; Dovecot's mail processes run as `nobody`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePorts } from './helpers/ports.js';
import { rspamdOrSkip, TestRspamd } from './helpers/rspamd.js';
import { waitFor } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';
import { docBlock } from './helpers/docs.js';
import { Dovecot, DOVECOT, plainImapBlock } from './helpers/dovecot.js';
import { REDIS_SERVER, TestRedis } from './helpers/redis.js';

const SIEVE = '/usr/lib/dovecot/modules/lib95_imap_sieve_plugin.so';
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const isRoot = process.getuid?.() === 0;

function available(): boolean {
  const missing = [DOVECOT, REDIS_SERVER, SIEVE, '/usr/bin/rspamc', '/usr/bin/sievec'].filter((f) => !existsSync(f));
  if (!missing.length && isRoot && rspamdOrSkip()) return true;
  const why = missing.length ? `missing ${missing.join(', ')} (apt-get install dovecot-imapd dovecot-sieve redis-server rspamd)` : 'not root (Dovecot must start as root)';
  if (process.env.CI) throw new Error(`the Rspamd learning test cannot run: ${why}`);
  console.warn(`\n*** SKIPPED LOUDLY: ${why}; the documented Junk learning is not tested ***\n`);
  return false;
}

describe('Rspamd learns from moves into and out of Junk (docs/rspamd.md)', { skip: !available() }, () => {
  const dir = tempDir('learn');
  let redis: TestRedis;
  let rspamd: TestRspamd;
  let dovecot: Dovecot;
  let imapPort: number;

  const learns = (statfile: string) => Number(spawnSync('redis-cli', ['-p', String(redis.port), 'hget', statfile, 'learns'], { encoding: 'utf8' }).stdout.trim() || 0);

  before(async () => {
    chmodSync(dir, 0o755); // the mail user (nobody) runs the pipe program from here
    let dnsPort: number;
    [imapPort, dnsPort] = (await freePorts(2)) as [number, number];
    redis = await TestRedis.start();
    rspamd = await new TestRspamd(dnsPort, redis.port).start();

    // the documented pieces, with this test's paths and ports
    const etc = join(dir, 'etc');
    for (const d of ['sieve', 'sieve-pipe']) mkdirSync(join(etc, d), { recursive: true, mode: 0o755 });
    const paths = (s: string) => s.replaceAll('/etc/dovecot', etc);
    writeFileSync(join(etc, 'sieve/report-spam.sieve'), docBlock('rspamd.md', '`/etc/dovecot/sieve/report-spam.sieve`'));
    writeFileSync(join(etc, 'sieve/report-ham.sieve'), docBlock('rspamd.md', '`/etc/dovecot/sieve/report-ham.sieve`'));
    const pipe = paths(docBlock('rspamd.md', 'The pipe programs in')).replace('127.0.0.1:11334', rspamd.controller);
    assert.match(pipe, /learn_spam/);
    writeFileSync(join(etc, 'sieve-pipe/rspamd-learn-spam.sh'), pipe, { mode: 0o755 });
    writeFileSync(join(etc, 'sieve-pipe/rspamd-learn-ham.sh'), pipe.replace('learn_spam', 'learn_ham'), { mode: 0o755 });
    writeFileSync(join(etc, 'rspamd-controller-password'), 'test\n', { mode: 0o644 });
    writeFileSync(join(dir, 'users'), 'alice:{PLAIN}secret-alice\n');
    const home = join(dir, 'home');
    mkdirSync(home, { mode: 0o755 });
    chownSync(home, Number(spawnSync('id', ['-u', 'nobody']).stdout), Number(spawnSync('id', ['-g', 'nobody']).stdout));
    dovecot = new Dovecot(dir, [imapPort]);
    dovecot.write(
      `${plainImapBlock(imapPort)}passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = static
  args = uid=nobody gid=${spawnSync('id', ['-gn', 'nobody'], { encoding: 'utf8' }).stdout.trim()} home=${home}/%u
}
mail_location = maildir:~/Maildir
${paths(docBlock('rspamd.md', '1. `apt-get install dovecot-sieve`'))}
`,
    );
    for (const s of ['report-spam', 'report-ham']) {
      const c = spawnSync('sievec', ['-c', join(dir, 'dovecot.conf'), join(etc, `sieve/${s}.sieve`)], { encoding: 'utf8' });
      assert.equal(c.status, 0, `sievec ${s}: ${c.stderr}`);
    }
    await dovecot.start();
  });

  after(async () => {
    await dovecot?.stop();
    await redis?.stop();
    await rspamd?.stop();
  });

  test('copied into Junk: learned as spam; copied out of it: learned as ham', async () => {
    const imap = (steps: string) =>
      spawnSync(
        PYTHON,
        [
          '-c',
          `import imaplib
m = imaplib.IMAP4('127.0.0.1', ${imapPort})
m.login('alice', 'secret-alice')
${steps}
m.logout()`,
        ],
        { encoding: 'utf8' },
      );
    const setup = imap(`m.create('Junk')
m.append('INBOX', None, None, b'From: deals@spam.test\\r\\nTo: alice@example.com\\r\\nSubject: cheap watches\\r\\n\\r\\nBuy cheap watches now, best prices, limited offer, click here today.\\r\\n')
m.select('INBOX')
assert m.copy('1', 'Junk')[0] == 'OK'`);
    assert.equal(setup.status, 0, setup.stderr);
    await waitFor(
      'Rspamd learned spam',
      () => learns('BAYES_SPAM') === 1,
      15_000,
      () => dovecot.log,
    );
    assert.equal(learns('BAYES_HAM'), 0);
    const back = imap(`m.select('Junk')
assert m.copy('1', 'INBOX')[0] == 'OK'`);
    assert.equal(back.status, 0, back.stderr);
    await waitFor(
      'Rspamd learned ham',
      () => learns('BAYES_HAM') === 1,
      15_000,
      () => dovecot.log,
    );
  });
});
