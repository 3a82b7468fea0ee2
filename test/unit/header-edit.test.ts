// Header-section edits a filter asks for: removals by occurrence, the Subject replaced (encoded
// when not ASCII), everything else byte for byte.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { editHeaderSection, encodeHeaderText, headerSectionEnd } from '../../src/mail/header-edit.js';

const section = Buffer.from('Received: a\r\n b\r\nX-A: 1\r\nSubject: old\r\n  folded\r\nx-a: 2\r\nX-A: 3\r\n');

test('removal: 0 is every occurrence, n the n-th, -n the n-th from the end; names without case', () => {
  const out = (index: number) => editHeaderSection(section, { remove: [{ name: 'X-A', index }] }).toString();
  assert.equal(out(0), 'Received: a\r\n b\r\nSubject: old\r\n  folded\r\n');
  assert.equal(out(2), 'Received: a\r\n b\r\nX-A: 1\r\nSubject: old\r\n  folded\r\nX-A: 3\r\n');
  assert.equal(out(-1), 'Received: a\r\n b\r\nX-A: 1\r\nSubject: old\r\n  folded\r\nx-a: 2\r\n');
  assert.equal(out(4), section.toString(), 'no fourth: nothing removed');
});

test('the Subject is replaced with its continuation lines, or added; non-ASCII becomes encoded-words', () => {
  assert.equal(editHeaderSection(section, { subject: '*** SPAM *** old folded' }).toString(), 'Received: a\r\n b\r\nX-A: 1\r\nSubject: *** SPAM *** old folded\r\nx-a: 2\r\nX-A: 3\r\n');
  assert.equal(editHeaderSection(Buffer.from('From: x\r\n'), { subject: 'new' }).toString(), 'From: x\r\nSubject: new\r\n');
  const enc = encodeHeaderText('*** SPAM *** Grüße aus Köln, wieder und wieder und wieder');
  for (const w of enc.split('\r\n ')) {
    assert.match(w, /^=\?UTF-8\?B\?[A-Za-z0-9+/=]+\?=$/);
    assert.ok(w.length <= 75, w);
  }
  const decoded = enc
    .split('\r\n ')
    .map((w) => Buffer.from(w.slice(10, -2), 'base64').toString('utf8'))
    .join('');
  assert.equal(decoded, '*** SPAM *** Grüße aus Köln, wieder und wieder und wieder');
  assert.equal(encodeHeaderText('a\r\nBcc: victim@example.com'), 'a Bcc: victim@example.com', 'no header injection');
});

test('headerSectionEnd: after the last field, 0 for a message starting with the empty line, null without one', () => {
  assert.equal(headerSectionEnd(Buffer.from('A: 1\r\n\r\nbody')), 6);
  assert.equal(headerSectionEnd(Buffer.from('\r\nbody')), 0);
  assert.equal(headerSectionEnd(Buffer.from('A: 1\r\n')), null);
});
