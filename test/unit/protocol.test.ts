// The pure parts of protocol exactness: MAIL/RCPT lines against RFC 5321's grammar and what we
// advertise (smtp/commands.ts), the HELO name and protocol name in our Received header
// (mail/received.ts), and the Received count of a header section as it streams in (store/body.ts).
// test/smtp-protocol.test.ts checks the same through real sockets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heloClause, receivedHeader } from '../../src/mail/received.js';
import { wellFormed } from '../../src/outbound/queue-entries.js';
import { checkAddressCommand, unquoteLocalPart, type CommandContext } from '../../src/smtp/commands.js';
import { HeaderScan } from '../../src/store/body.js';
import type { QueueEntry } from '../../src/store/queue-entry.js';

const EHLO: CommandContext = { esmtp: true, secure: false, smtputf8: false, primaryDomain: 'example.com' };

function reply(verb: 'MAIL' | 'RCPT', line: string, ctx: CommandContext = EHLO): string {
  const r = checkAddressCommand(verb, line, ctx);
  return r.ok ? `ok ${r.line}` : `${r.reply.responseCode} ${r.reply.message}`;
}

test('parameters we advertise pass; others are 555 5.5.4; after HELO none exists', () => {
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8'), 'ok MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> FOO=bar'), '555 5.5.4 Parameter not supported: FOO');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> RET=HDRS'), '555 5.5.4 Parameter not supported: RET', 'no DSN');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> REQUIRETLS', { ...EHLO, secure: true }), '555 5.5.4 Parameter not supported: REQUIRETLS');
  assert.equal(reply('RCPT', 'RCPT TO:<x@y.example> NOTIFY=NEVER'), '555 5.5.4 Parameter not supported: NOTIFY');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> AUTH=<>'), '555 5.5.4 Parameter not supported: AUTH', 'AUTH is offered inside TLS only');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> AUTH=<>', { ...EHLO, secure: true }), 'ok MAIL FROM:<a@b.example> AUTH=<>');
  const helo = { ...EHLO, esmtp: false };
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> SIZE=100', helo), '555 5.5.4 Parameter not supported: SIZE');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> SMTPUTF8', helo), '555 5.5.4 Parameter not supported: SMTPUTF8');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example>', helo), 'ok MAIL FROM:<a@b.example>');
});

test('text after the path is 501 5.5.2; what the library refuses itself passes through', () => {
  const junk = '501 5.5.2 Syntax error: unexpected text after the address';
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> junk'), junk);
  assert.equal(reply('RCPT', 'RCPT TO:<x@y.example>junk'), junk);
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> SIZE=1 (comment)'), junk);
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example> =x'), junk);
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example>   '), 'ok MAIL FROM:<a@b.example>   ');
  assert.equal(reply('MAIL', 'MAIL FROM:a@b.example'), 'ok MAIL FROM:a@b.example', 'no brackets: the library answers 501');
  assert.equal(reply('MAIL', 'MAIL FROM:<a@b.example'), 'ok MAIL FROM:<a@b.example');
  assert.equal(reply('RCPT', 'RCPT TO:<"a>b"@y.example> SIZE=1'), '555 5.5.4 Parameter not supported: SIZE', 'a > inside quotes does not end the path');
});

test('a non-ASCII address needs SMTPUTF8 on MAIL: 553 5.6.7', () => {
  const refused = '553 5.6.7 Non-ASCII address not permitted without SMTPUTF8';
  assert.equal(reply('MAIL', 'MAIL FROM:<jörg@b.example>'), refused);
  assert.equal(reply('MAIL', 'MAIL FROM:<a@bücher.example>'), refused);
  assert.equal(reply('MAIL', 'MAIL FROM:<jörg@b.example> SMTPUTF8'), 'ok MAIL FROM:<jörg@b.example> SMTPUTF8');
  assert.equal(reply('RCPT', 'RCPT TO:<jörg@b.example>'), refused);
  assert.equal(reply('RCPT', 'RCPT TO:<jörg@b.example>', { ...EHLO, smtputf8: true }), 'ok RCPT TO:<jörg@b.example>');
});

test('canonical paths: a quoted dot-atom local part loses its quotes; <postmaster> gets the primary domain', () => {
  assert.equal(reply('RCPT', 'RCPT TO:<"alice"@example.com>'), 'ok RCPT TO:<alice@example.com>');
  assert.equal(reply('MAIL', 'MAIL FROM:<"al.ice"@example.com> SIZE=5'), 'ok MAIL FROM:<al.ice@example.com> SIZE=5');
  assert.equal(reply('RCPT', 'RCPT TO:<@relay.example:"alice"@example.com>'), 'ok RCPT TO:<@relay.example:alice@example.com>');
  assert.equal(reply('RCPT', 'RCPT TO:<Postmaster>'), 'ok RCPT TO:<postmaster@example.com>');
  assert.equal(reply('RCPT', 'RCPT TO:<POSTMASTER>', { ...EHLO, primaryDomain: null }), 'ok RCPT TO:<POSTMASTER>');
  assert.equal(unquoteLocalPart('"a b"@c.example'), '"a b"@c.example', 'a space needs the quotes');
  assert.equal(unquoteLocalPart('"a\\"b"@c.example'), '"a\\"b"@c.example');
  assert.equal(unquoteLocalPart('"a..b"@c.example'), '"a..b"@c.example');
  assert.equal(unquoteLocalPart('"a\\b"@c.example'), 'ab@c.example', 'a quoted-pair of a plain character');
  assert.equal(unquoteLocalPart('"alice"'), '"alice"', 'no domain');
});

test('Received: the HELO name stands only as a domain or address literal; anything else is an escaped comment', () => {
  const lit = '[192.0.2.1]';
  assert.equal(heloClause('client.example', lit), 'client.example ([192.0.2.1])');
  assert.equal(heloClause('[192.0.2.7]', lit), '[192.0.2.7] ([192.0.2.1])');
  assert.equal(heloClause('[ipv6:2001:db8::1]', lit), '[IPv6:2001:db8::1] ([192.0.2.1])');
  assert.equal(heloClause('bücher.example', lit), 'xn--bcher-kva.example ([192.0.2.1])');
  assert.equal(heloClause('evil)by(mail.example.com', lit), 'unknown ([192.0.2.1] helo=evil\\)by\\(mail.example.com)');
  assert.equal(heloClause('a\\b(c', lit), 'unknown ([192.0.2.1] helo=a\\\\b\\(c)');
  assert.equal(heloClause('[300.1.1.1]', lit), 'unknown ([192.0.2.1] helo=[300.1.1.1])');
  assert.equal(heloClause('-bad-.example', lit), 'unknown ([192.0.2.1] helo=-bad-.example)');
  assert.equal(heloClause('', lit), 'unknown ([192.0.2.1])');
  const facts = { helo: 'c.example', clientAddress: '192.0.2.1', hostname: 'mail.example.com', esmtp: true, authenticated: false, id: 'ID', recipients: [], date: new Date(0) };
  const proto = (o: { utf8?: boolean; tls?: boolean; authenticated?: boolean }) =>
    /with (\S+) id/.exec(receivedHeader({ ...facts, utf8: o.utf8, tls: o.tls ? { version: 'TLSv1.3', cipher: 'X' } : null, authenticated: !!o.authenticated }))![1];
  assert.deepEqual(
    [proto({}), proto({ utf8: true }), proto({ utf8: true, tls: true }), proto({ utf8: true, authenticated: true }), proto({ utf8: true, tls: true, authenticated: true })],
    ['ESMTP', 'UTF8SMTP', 'UTF8SMTPS', 'UTF8SMTPA', 'UTF8SMTPSA'],
  );
});

test('the header scan counts Received fields of the header section only, across chunk boundaries', () => {
  const text = 'Received: a\r\nreceived: b\r\nX-Received: c\r\n Received: folded\r\nRECEIVED:d\r\nSubject: s\r\n\r\nReceived: in the body\r\n';
  for (let size = 1; size <= text.length; size++) {
    const scan = new HeaderScan();
    for (let i = 0; i < text.length; i += size) scan.feed(Buffer.from(text.slice(i, i + size)));
    assert.equal(scan.count, 3, `chunks of ${size}`);
    assert.equal(scan.done, true);
  }
  const empty = new HeaderScan();
  empty.feed(Buffer.from('\r\nReceived: body\r\n'));
  assert.equal(empty.count, 0);
});

test('queue entries: one written before body/smtputf8 existed is well formed (7BIT, no SMTPUTF8); the new fields are checked', () => {
  const old = JSON.parse(
    '{"version":1,"id":"q1","sender":"a@example.com","arrivedAt":1,"size":10,"recipients":[{"address":"x@y.example","state":"pending","attempts":0,"lastResponse":null,"updatedAt":1}],"attempts":0,"nextAttemptAt":1,"lastError":null,"bounced":false}',
  ) as QueueEntry;
  assert.equal(wellFormed(old, 'q1'), true);
  assert.equal(old.body, undefined);
  assert.equal(wellFormed({ ...old, body: '8BITMIME', smtputf8: true }, 'q1'), true);
  assert.equal(wellFormed({ ...old, body: 'BINARYMIME' } as unknown as QueueEntry, 'q1'), false);
  assert.equal(wellFormed({ ...old, smtputf8: 'yes' } as unknown as QueueEntry, 'q1'), false);
});
