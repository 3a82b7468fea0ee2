// The journal behind group commit: records survive only whole (a torn tail is ignored), and a
// segment left by a crash is replayed into Maildirs and the queue at start-up, without
// duplicating what is already in place; a message for several places is one file, hard-linked.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decode, encode, frame, type JournalRecord } from '../src/store/journal-format.js';
import { baseConfig, makeEnv, startMailplane } from './helpers/server.js';

const entry = (id: string, bodyOffset?: number) =>
  JSON.stringify({
    version: 1,
    id,
    sender: 'alice@example.com',
    arrivedAt: Date.now(),
    size: 17,
    ...(bodyOffset ? { bodyOffset } : {}),
    recipients: [{ address: 'friend@remote.example', state: 'pending', attempts: 0, lastResponse: null, updatedAt: Date.now() }],
    attempts: 0,
    nextAttemptAt: Date.now() + 3_600_000,
    lastError: null,
    bounced: false,
  });

const shared = Buffer.from('Return-Path: <alice@example.com>\r\nSubject: d\r\n\r\nD\r\n');
const records: JournalRecord[] = [
  { k: 'f', name: '1700000000.M1P1Q1.host,S=14', users: ['bob'], queue: null, data: Buffer.from('Subject: a\n\nA\n'), spool: null },
  { k: 'f', name: '1700000000.M2P1Q2.host,S=14', users: ['alice'], queue: null, data: Buffer.from('Subject: b\n\nB\n'), spool: null },
  { k: 'f', name: '0000000000abcdef0001.eml', users: [], queue: { id: '0000000000abcdef0001', json: entry('0000000000abcdef0001') }, data: Buffer.from('Subject: c\r\n\r\nC\r\n'), spool: null },
  // one file for two mailboxes and the queue (which skips the Return-Path line)
  { k: 'f', name: `1700000000.M3P1Q3.host,S=${shared.length}`, users: ['alice', 'bob'], queue: { id: '0000000000abcdef0002', json: entry('0000000000abcdef0002', 34) }, data: shared, spool: null },
];
const nameOf = (r: JournalRecord) => r.name;

test('records decode whole or not at all: every truncation yields a prefix of the records', () => {
  const bytes = Buffer.concat(encode(records));
  assert.deepEqual(decode(bytes).map(nameOf), records.map(nameOf));
  assert.deepEqual(decode(bytes)[3]!.users, ['alice', 'bob']);
  for (let cut = 0; cut < bytes.length; cut++) {
    const got = decode(bytes.subarray(0, cut));
    assert.ok(got.length < records.length, `cut at ${cut}`);
    got.forEach((r, i) => assert.deepEqual(Buffer.from(r.data), Buffer.from(records[i]!.data)));
  }
  // segments are zero-filled ahead of the writes: the zeros after the last record end it
  assert.equal(decode(Buffer.concat([bytes, Buffer.alloc(1024 * 1024)])).length, records.length);
  const flipped = Buffer.from(bytes);
  flipped[bytes.length - 8]! ^= 0xff; // corrupt the last record's payload
  assert.equal(decode(flipped).length, records.length - 1);
});

test('records that name spool files decode, however many share one empty data array', () => {
  // the journal worker gives every body it spools the same EMPTY: once an empty array's buffer
  // has been wrapped, zlib sees a null pointer, whose CRC must not come out as 0
  const EMPTY = new Uint8Array(0);
  const spooled = [1, 2, 3].map((n): JournalRecord => ({ k: 'f', name: `1700000000.M${n}P1Q${n}.host,S=99`, users: ['bob'], queue: null, data: EMPTY, spool: `spool-${n}` }));
  assert.deepEqual(
    decode(Buffer.concat(encode(spooled))).map((r) => r.spool),
    ['spool-1', 'spool-2', 'spool-3'],
  );
  assert.deepEqual(
    decode(Buffer.concat(encode(spooled))).map((r) => r.spool),
    ['spool-1', 'spool-2', 'spool-3'],
  );
});

test('a leftover journal segment is replayed at start-up, without duplicating what is in place; one file, linked', async () => {
  const env = await makeEnv();
  const journal = join(env.dataDir, 'journal');
  mkdirSync(journal, { recursive: true });
  // alice's copy was already read by a mail client (moved to cur/ with flags): not again
  const aliceCur = join(env.dataDir, 'mail', 'alice', 'cur');
  mkdirSync(aliceCur, { recursive: true });
  writeFileSync(join(aliceCur, `${records[1]!.name}:2,S`), 'Subject: b\n\nB\n');
  // a spool file left by a message that was never acknowledged: removed
  mkdirSync(join(env.dataDir, 'spool'), { recursive: true });
  writeFileSync(join(env.dataDir, 'spool', 'orphan'), 'half a message');
  writeFileSync(join(journal, '000000000001.wal'), Buffer.concat([...encode(records), Buffer.from('torn tail garbage')]));
  const mp = await startMailplane(env, baseConfig(env));
  try {
    const bobNew = join(env.dataDir, 'mail', 'bob', 'new');
    assert.deepEqual(readdirSync(bobNew).sort(), [records[0]!.name, records[3]!.name].sort());
    assert.equal(readFileSync(join(bobNew, records[0]!.name), 'utf8'), 'Subject: a\n\nA\n');
    const aliceNew = join(env.dataDir, 'mail', 'alice', 'new');
    assert.deepEqual(readdirSync(aliceNew), [records[3]!.name]);
    const queueDir = join(env.dataDir, 'queue');
    const queue = readdirSync(queueDir).filter((f) => f.startsWith('0000000000abcdef000'));
    assert.deepEqual(queue.sort(), ['0000000000abcdef0001.eml', '0000000000abcdef0001.json', '0000000000abcdef0002.eml', '0000000000abcdef0002.json']);
    // the shared message is one inode in both mailboxes and the queue
    const inodes = [join(aliceNew, records[3]!.name), join(bobNew, records[3]!.name), join(queueDir, '0000000000abcdef0002.eml')].map((p) => statSync(p));
    assert.equal(new Set(inodes.map((s) => s.ino)).size, 1);
    assert.equal(inodes[0]!.nlink, 3);
    assert.deepEqual(
      readdirSync(journal).filter((f) => f === '000000000001.wal'),
      [],
      'the replayed segment is gone',
    );
    assert.deepEqual(readdirSync(join(env.dataDir, 'spool')), [], 'the spool is empty');
    assert.match(mp.logs, /recovered messages from the journal after an unclean stop/);
  } finally {
    await mp.stop();
  }
});

test('a segment written by the previous version (one record per Maildir copy and per queue entry) is replayed', async () => {
  const env = await makeEnv();
  const journal = join(env.dataDir, 'journal');
  mkdirSync(journal, { recursive: true });
  const old = [
    ...frame({ k: 'm', u: 'bob', n: '1600000000.M1P1Q1.host,S=9' }, Buffer.from('Subject: old\r\n')),
    ...frame({ k: 'q', id: '0000000000abcdef0009', j: entry('0000000000abcdef0009') }, Buffer.from('Subject: queued\r\n\r\nQ\r\n')),
  ];
  writeFileSync(join(journal, '000000000007.wal'), Buffer.concat(old));
  const mp = await startMailplane(env, baseConfig(env));
  try {
    assert.equal(readFileSync(join(env.dataDir, 'mail', 'bob', 'new', '1600000000.M1P1Q1.host,S=9'), 'utf8'), 'Subject: old\r\n');
    assert.equal(readFileSync(join(env.dataDir, 'queue', '0000000000abcdef0009.eml'), 'utf8'), 'Subject: queued\r\n\r\nQ\r\n');
    assert.equal(JSON.parse(readFileSync(join(env.dataDir, 'queue', '0000000000abcdef0009.json'), 'utf8')).id, '0000000000abcdef0009');
  } finally {
    await mp.stop();
  }
});
