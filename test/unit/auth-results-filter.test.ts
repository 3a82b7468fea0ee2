// The filter that drops forged Authentication-Results fields (those naming our host) while the
// header section streams past: the same output whatever the chunk boundaries, the body untouched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthResultsFilter, authservId } from '../../src/store/body.js';

const HOST = 'mail.example.com';

const message =
  'Received: from a\r\n by b\r\n' +
  `Authentication-Results: ${HOST}; dkim=pass\r\n` +
  'authentication-results:\r\n  (checked (twice)) Mail.Example.Com. 1;\r\n\tspf=pass\r\n' +
  'Authentication-Results: mx.other.test; spf=fail\r\n' +
  `Authentication-Results: mail.example.com.evil.test; dmarc=pass\r\n` +
  'Subject: Authentication-Results: mail.example.com; in a subject is fine\r\n' +
  '\r\n' +
  `Authentication-Results: ${HOST}; in the body stays\r\n`;

const expected =
  'Received: from a\r\n by b\r\n' +
  'Authentication-Results: mx.other.test; spf=fail\r\n' +
  `Authentication-Results: mail.example.com.evil.test; dmarc=pass\r\n` +
  'Subject: Authentication-Results: mail.example.com; in a subject is fine\r\n' +
  '\r\n' +
  `Authentication-Results: ${HOST}; in the body stays\r\n`;

function run(input: string, sizes: number[]): { out: string; removed: number } {
  const f = new AuthResultsFilter(HOST);
  const buf = Buffer.from(input, 'latin1');
  const parts: Buffer[] = [];
  let i = 0;
  for (let k = 0; i < buf.length; k++) {
    const n = sizes[k % sizes.length]!;
    parts.push(f.feed(buf.subarray(i, i + n)));
    i += n;
  }
  const tail = f.finish();
  if (tail) parts.push(tail);
  return { out: Buffer.concat(parts).toString('latin1'), removed: f.removed };
}

test('drops every field naming our host, whatever the chunk sizes; keeps the rest and the body', () => {
  for (const sizes of [[message.length], [1], [2, 3], [7], [13, 1, 40], [64]]) {
    const { out, removed } = run(message, sizes);
    assert.equal(out, expected, `chunks ${sizes.join(',')}`);
    assert.equal(removed, 2);
  }
});

test('a header section without a body, and a last line without its end, come out whole', () => {
  assert.equal(run(`Subject: x\r\nAuthentication-Results: ${HOST}; spf=pass\r\n`, [5]).out, 'Subject: x\r\n');
  assert.equal(run('Subject: x\r\nAuthentication-Results: other.test; spf=pass', [5]).out, 'Subject: x\r\nAuthentication-Results: other.test; spf=pass');
});

test('the body after the header section passes without a copy', () => {
  const f = new AuthResultsFilter(HOST);
  f.feed(Buffer.from('Subject: x\r\n\r\n'));
  const chunk = Buffer.from(`Authentication-Results: ${HOST}; x\r\n`);
  assert.equal(f.feed(chunk), chunk);
});

test('authservId: comments, quotes, versions, trailing dot', () => {
  assert.equal(authservId(' mail.example.com; spf=pass'), 'mail.example.com');
  assert.equal(authservId(' (c (nested)) MAIL.example.com. 1 ; spf=pass'), 'mail.example.com');
  assert.equal(authservId(' "mail.example.com"; none'), 'mail.example.com');
  assert.equal(authservId('\r\n\tmail.example.com;'), 'mail.example.com');
  assert.equal(authservId(' ;'), '');
});
