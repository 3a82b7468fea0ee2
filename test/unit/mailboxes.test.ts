// mailboxes: the LMTP address as written, the checks of `mailplane validate`, and the lines of
// Dovecot's passwd-file (without Dovecot: test/dovecot-lmtp.test.ts runs it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatLmtpTarget, parseLmtpAddress } from '../../src/config/check-mailboxes.js';
import { loadConfigText } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';
import { passwdContent } from '../../src/reconcile/dovecot.js';
import { specsOf } from '../../src/plan/specs.js';

test('LMTP addresses: host:port, [v6]:port, a host name, an absolute socket path; anything else says what is wrong', () => {
  assert.deepEqual(parseLmtpAddress('127.0.0.1:24'), { host: '127.0.0.1', port: 24 });
  assert.deepEqual(parseLmtpAddress('[::1]:2424'), { host: '::1', port: 2424 });
  assert.deepEqual(parseLmtpAddress('Dovecot.Mail.svc:24'), { host: 'dovecot.mail.svc', port: 24 });
  assert.deepEqual(parseLmtpAddress('/run/dovecot/lmtp'), { path: '/run/dovecot/lmtp' });
  assert.equal(formatLmtpTarget({ host: '::1', port: 24 }), '[::1]:24');
  assert.match(parseLmtpAddress('127.0.0.1') as string, /has no port: give host:port, such as 127\.0\.0\.1:24/);
  assert.match(parseLmtpAddress('::1') as string, /such as \[::1\]:24/);
  assert.match(parseLmtpAddress('run/dovecot/lmtp') as string, /relative path: a unix socket must be given by its absolute path/);
  assert.match(parseLmtpAddress('127.0.0.1:70000') as string, /port 70000 is out of range/);
  assert.match(parseLmtpAddress('bad_host:24') as string, /not an IP address or a host name/);
  assert.match(parseLmtpAddress('[nope]:24') as string, /not an IP address or a host name/);
  assert.match(parseLmtpAddress('a b:24') as string, /neither host:port/);
});

const BASE = `version: 1
hostname: mail.example.com
domains: [example.com]
smtp:
  listeners: [{ name: mx, port: 2525, role: mx, tls: none }]
accounts:
  local:
    users:
      - { name: alice, passwordHash: "$2y$05$YJSwcfwVFsT4I5XNMhTXre7JYZPRiDwgVbuULAodMOStve10VAx1C", aliases: [postmaster] }
      - { name: bob, passwordHash: "$6$iGOUrWoHAbgE0chq$nLI7oZ2xv65PjvEdyu3Tw/2j7Qsocx22wsNK9EPRgUEUv2pfVcgBF8DL9iby6Uuv/DLYZ5YHYUUBZ7s1C8iq.." }
storage: { dataDir: /srv/mail }
`;

async function problems(extra: string, base = BASE): Promise<string[]> {
  const r = await loadConfigText('/etc/mailplane/mailserver.yaml', `${base}${extra}`);
  return [...r.errors, ...r.warnings].filter((i) => i.code === 'MP_MAILBOXES' || i.path.startsWith('mailboxes')).map((i) => `${i.severity} ${i.code} ${i.path}: ${i.message}`);
}

test('validate: store lmtp needs an address; a bad address, a passwd-file with LDAP or inside the Maildirs are errors; lmtp with maildir is a warning', async () => {
  assert.deepEqual(await problems(''), []);
  assert.deepEqual(await problems('mailboxes: { store: lmtp, lmtp: { address: 127.0.0.1:24 }, dovecot: { passwdFile: /srv/mail/dovecot/passwd } }\n'), []);
  assert.match((await problems('mailboxes: { store: lmtp }\n')).join('\n'), /error MP_MAILBOXES mailboxes\.store: store: lmtp needs mailboxes\.lmtp\.address/);
  assert.match((await problems('mailboxes: { store: lmtp, lmtp: { address: dovecot } }\n')).join('\n'), /error MP_MAILBOXES mailboxes\.lmtp\.address: 'dovecot' has no port/);
  assert.match((await problems('mailboxes: { lmtp: { address: 127.0.0.1:24 } }\n')).join('\n'), /warning MP_MAILBOXES mailboxes\.lmtp: mailboxes\.store is maildir/);
  assert.match(
    (await problems('mailboxes: { dovecot: { passwdFile: /srv/mail/mail/passwd } }\n')).join('\n'),
    /error MP_MAILBOXES mailboxes\.dovecot\.passwdFile: \/srv\/mail\/mail\/passwd lies inside the Maildirs/,
  );
  assert.match((await problems('mailboxes: { store: imap }\n')).join('\n'), /mailboxes\.store/);
  assert.match((await problems('mailboxes: { lmtp: { adress: x } }\n')).join('\n'), /unknown key 'adress'/);
  const ldap = BASE.replace(/accounts:\n[\s\S]*?storage:/, 'accounts:\n  type: ldap\n  ldap: { url: ldap://ldap.example.com, userBase: "ou=people,dc=example,dc=com" }\nstorage:');
  assert.match((await problems('mailboxes: { dovecot: { passwdFile: /srv/dovecot/passwd } }\n', ldap)).join('\n'), /error MP_MAILBOXES mailboxes\.dovecot\.passwdFile: with accounts\.type: ldap/);
});

test("the passwd-file: Dovecot's scheme per hash format, the Maildir as home with the maildir store, a locked postmaster with lmtp when nobody claims it", async () => {
  const r = await loadConfigText('/etc/mailplane/mailserver.yaml', `${BASE}mailboxes: { dovecot: { passwdFile: /srv/mail/dovecot/passwd } }\n`);
  const spec = specsOf(r.state!).dovecot!;
  assert.equal(spec.passwdFile, '/srv/mail/dovecot/passwd');
  const text = passwdContent(spec);
  assert.match(text, /^alice:\{BLF-CRYPT\}\$2y\$05\$YJSw[^:]*::::\/srv\/mail\/mail\/alice::$/m);
  assert.match(text, /^bob:\{SHA512-CRYPT\}\$6\$iGOU[^:]*::::\/srv\/mail\/mail\/bob::$/m);
  assert.doesNotMatch(text, /^postmaster:/m);
  const lmtp = passwdContent({
    ...spec,
    mailRoot: null,
    postmaster: true,
    users: [
      { name: 'carol', passwordHash: new Secret('$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g', 'hash'), scheme: 'argon2id' },
      { name: 'dave', passwordHash: new Secret('$5$salt$hash', 'hash'), scheme: 'sha256-crypt' },
    ],
  });
  assert.match(lmtp, /^carol:\{ARGON2ID\}\$argon2id\$[^:]*::::::$/m);
  assert.match(lmtp, /^dave:\{SHA256-CRYPT\}\$5\$salt\$hash::::::$/m);
  assert.match(lmtp, /^postmaster:\{CRYPT\}!::::::$/m);
  // with store lmtp and alice holding no postmaster alias, the spec asks for the locked line
  const noPostmaster = await loadConfigText(
    '/etc/mailplane/mailserver.yaml',
    `${BASE.replace(', aliases: [postmaster]', '')}mailboxes: { store: lmtp, lmtp: { address: /run/dovecot/lmtp }, dovecot: { passwdFile: /srv/mail/dovecot/passwd } }\n`,
  );
  assert.equal(specsOf(noPostmaster.state!).dovecot!.postmaster, true);
  assert.equal(specsOf(noPostmaster.state!).dovecot!.mailRoot, null);
});
