// Line ends and line lengths of message bodies, checked against a plain reference over random
// bodies cut into random chunks: the fast path (native searches) and the byte-by-byte rewrite
// must agree with it wherever the chunk boundaries fall.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rng } from '../helpers/rng.js';
import { LineCheck } from '../../src/store/body.js';

/** The reference: every bare CR or LF becomes CRLF; the longest line, CRLF excluded. */
function reference(body: string): { text: string; longest: number } {
  const text = body.replace(/\r\n|\r|\n/g, '\r\n');
  return { text, longest: Math.max(0, ...text.split('\r\n').map((l) => l.length)) };
}

test('normalized bodies and measured lines match the reference, however the body is cut', () => {
  const r = rng(2024);
  for (let round = 0; round < 3000; round++) {
    const wellFormed = r() < 0.5; // half the bodies only have CRLF: the fast path
    let body = '';
    const len = Math.floor(r() * 400);
    for (let i = 0; i < len; i++) {
      const x = r();
      if (wellFormed) body += x < 0.08 ? '\r\n' : 'a';
      else body += x < 0.05 ? '\r' : x < 0.1 ? '\n' : x < 0.15 ? '\r\n' : 'b';
    }
    const check = new LineCheck();
    const out: Buffer[] = [];
    const bytes = Buffer.from(body, 'latin1');
    for (let at = 0; at < bytes.length;) {
      const step = 1 + Math.floor(r() * 40);
      out.push(check.normalize(bytes.subarray(at, at + step)));
      at += step;
    }
    const tail = check.finish();
    if (tail) out.push(tail);
    const want = reference(body);
    assert.equal(Buffer.concat(out).toString('latin1'), want.text, JSON.stringify(body));
    assert.equal(check.longest, want.longest, JSON.stringify(body));
  }
});

test('a chunk with CRLF line ends only is passed through as is (no copy)', () => {
  const check = new LineCheck();
  const chunk = Buffer.from('Subject: x\r\n\r\nhello\r\n');
  assert.equal(check.normalize(chunk), chunk);
  assert.equal(check.longest, 10);
});
