// The journal behind group commit: records survive only whole (a torn tail is ignored), and a
// segment left by a crash is replayed into Maildirs and the queue at start-up, without
// duplicating what is already in place.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decode, encode, type JournalRecord } from '../src/store/journal-format.js';
import { baseConfig, makeEnv, startMailplane } from './helpers/server.js';

const records: JournalRecord[] = [
  { k: 'm', user: 'bob', name: '1700000000.M1P1Q1.host,S=12', data: Buffer.from('Subject: a\n\nA\n') },
  { k: 'm', user: 'alice', name: '1700000000.M2P1Q2.host,S=12', data: Buffer.from('Subject: b\n\nB\n') },
  {
    k: 'q',
    id: '0000000000abcdef0001',
    json: JSON.stringify({
      version: 1,
      id: '0000000000abcdef0001',
      sender: 'alice@example.com',
      arrivedAt: Date.now(),
      size: 17,
      recipients: [{ address: 'friend@remote.example', state: 'pending', attempts: 0, lastResponse: null, updatedAt: Date.now() }],
      attempts: 0,
      nextAttemptAt: Date.now(),
      lastError: null,
      bounced: false,
    }),
    data: Buffer.from('Subject: c\r\n\r\nC\r\n'),
  },
];

test('records decode whole or not at all: every truncation yields a prefix of the records', () => {
  const bytes = Buffer.concat(encode(records));
  assert.deepEqual(decode(bytes).map((r) => (r.k === 'm' ? r.name : r.id)), records.map((r) => (r.k === 'm' ? r.name : r.id)));
  for (let cut = 0; cut < bytes.length; cut++) {
    const got = decode(bytes.subarray(0, cut));
    assert.ok(got.length < records.length, `cut at ${cut}`);
    got.forEach((r, i) => assert.deepEqual(Buffer.from(r.data), Buffer.from(records[i]!.data)));
  }
  // segments are zero-filled ahead of the writes: the zeros after the last record end it
  assert.equal(decode(Buffer.concat([bytes, Buffer.alloc(1024 * 1024)])).length, records.length);
  const flipped = Buffer.from(bytes);
  flipped[bytes.length - 8]! ^= 0xff; // corrupt the last record's payload
  assert.equal(decode(flipped).length, 2);
});

test('a leftover journal segment is replayed at start-up, without duplicating what is in place', async () => {
  const env = await makeEnv();
  const journal = join(env.dataDir, 'journal');
  mkdirSync(journal, { recursive: true });
  // alice's copy was already read by a mail client (moved to cur/ with flags): not again
  const aliceCur = join(env.dataDir, 'mail', 'alice', 'cur');
  mkdirSync(aliceCur, { recursive: true });
  writeFileSync(join(aliceCur, `${(records[1] as { name: string }).name}:2,S`), 'Subject: b\n\nB\n');
  writeFileSync(join(journal, '000000000001.wal'), Buffer.concat([...encode(records), Buffer.from('torn tail garbage')]));
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const bobNew = join(env.dataDir, 'mail', 'bob', 'new');
    assert.deepEqual(readdirSync(bobNew), [(records[0] as { name: string }).name]);
    assert.equal(readFileSync(join(bobNew, readdirSync(bobNew)[0]!), 'utf8'), 'Subject: a\n\nA\n');
    assert.deepEqual(readdirSync(join(env.dataDir, 'mail', 'alice', 'new')), []);
    const queue = readdirSync(join(env.dataDir, 'queue')).filter((f) => f.startsWith('0000000000abcdef0001'));
    assert.deepEqual(queue.sort(), ['0000000000abcdef0001.eml', '0000000000abcdef0001.json']);
    assert.deepEqual(readdirSync(journal).filter((f) => f.endsWith('.wal') && f === '000000000001.wal'), [], 'the replayed segment is gone');
    assert.match(mp.logs, /recovered messages from the journal after an unclean stop/);
  } finally {
    await mp.stop();
  }
});
