// The hand-off client's dot-stuffing (RFC 5321 §4.5.2): a line that starts with '.' gets one
// more, across chunk boundaries too, and the end of the bytes is known (CRLF or not).
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { DotStuffer } from '../../src/outbound/peer.js';

async function stuff(chunks: string[]): Promise<{ out: string; crlf: boolean }> {
  const s = new DotStuffer();
  const parts: Buffer[] = [];
  for await (const c of Readable.from(chunks.map((x) => Buffer.from(x, 'latin1'))).pipe(s) as AsyncIterable<Buffer>) parts.push(c);
  return { out: Buffer.concat(parts).toString('latin1'), crlf: s.endsWithCrlf };
}

test('a leading dot is doubled, wherever the chunks are cut', async () => {
  const text = '.first\r\nmiddle.\r\n..two\r\n.\r\nend\r\n';
  const want = '..first\r\nmiddle.\r\n...two\r\n..\r\nend\r\n';
  assert.deepEqual(await stuff([text]), { out: want, crlf: true });
  for (let cut = 1; cut < text.length; cut++) assert.equal((await stuff([text.slice(0, cut), text.slice(cut)])).out, want, `cut at ${cut}`);
  assert.deepEqual(await stuff(text.split('')), { out: want, crlf: true });
});

test('bytes that do not end in CRLF are said so; 8-bit bytes pass untouched', async () => {
  assert.deepEqual(await stuff(['Caf\u00e9\r\n.no end']), { out: 'Caf\u00e9\r\n..no end', crlf: false });
  assert.deepEqual(await stuff(['a\r', '\n']), { out: 'a\r\n', crlf: true });
});
