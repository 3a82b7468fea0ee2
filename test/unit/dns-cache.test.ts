// The inbound checks' DNS cache: answers and "no such name/record" kept, resolver failures not,
// one query for concurrent lookups of one name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DnsCache } from '../../src/smtp/dns-cache.js';

test('answers and negative answers are cached; failures are asked again; concurrent lookups share one query', async () => {
  const asked: string[] = [];
  const fail = (code: string) => Object.assign(new Error(code), { code });
  const cache = new DnsCache((name, rr) => {
    asked.push(`${rr} ${name}`);
    if (name === 'none.test') return Promise.reject(fail('ENOTFOUND'));
    if (name === 'broken.test') return Promise.reject(fail('ETIMEOUT'));
    return new Promise((r) => setTimeout(() => r([['v=spf1 -all']]), 5));
  });
  const [a, b] = await Promise.all([cache.lookup('Example.test', 'TXT'), cache.lookup('example.test', 'TXT')]);
  assert.deepEqual(a, [['v=spf1 -all']]);
  assert.equal(a, b);
  await cache.lookup('example.test', 'TXT');
  assert.deepEqual(asked, ['TXT Example.test'], 'one query for three lookups');
  for (let i = 0; i < 2; i++) await assert.rejects(cache.lookup('none.test', 'TXT'), { code: 'ENOTFOUND' });
  for (let i = 0; i < 2; i++) await assert.rejects(cache.lookup('broken.test', 'TXT'), { code: 'ETIMEOUT' });
  assert.deepEqual(
    asked.filter((q) => q !== 'TXT Example.test'),
    ['TXT none.test', 'TXT broken.test', 'TXT broken.test'],
  );
});
