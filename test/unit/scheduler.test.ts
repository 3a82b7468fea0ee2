// The queue's scheduling, in process: the heaps keep order under any mix of operations, queue ids
// survive their compact form, jobs run in due order, and the limits hold — overall and per
// destination, so that a destination with a backlog (slow or dead) never takes the slots of
// another.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rng } from '../helpers/rng.js';
import { Heap } from '../../src/outbound/heap.js';
import { IntHeap } from '../../src/outbound/int-heap.js';
import { decodeId, encodeId, QueueIndex } from '../../src/outbound/queue-index.js';
import { newQueueId } from '../../src/store/queue-entry.js';
import { Scheduler } from '../../src/outbound/scheduler.js';

interface Item {
  key: number;
  pos: number;
}

test('the heap pops in key order under random pushes, removals and key changes', () => {
  const r = rng(42);
  const heap = new Heap<Item>((a, b) => a.key < b.key, { get: (i) => i.pos, set: (i, p) => (i.pos = p) });
  const live = new Set<Item>();
  for (let step = 0; step < 20_000; step++) {
    const op = r();
    if (op < 0.5 || !live.size) {
      const it = { key: Math.floor(r() * 1000), pos: -1 };
      heap.push(it);
      live.add(it);
    } else if (op < 0.7) {
      const it = [...live][Math.floor(r() * live.size)]!;
      assert.ok(heap.remove(it));
      assert.ok(!heap.remove(it), 'removed twice');
      live.delete(it);
    } else if (op < 0.85) {
      const it = [...live][Math.floor(r() * live.size)]!;
      it.key = Math.floor(r() * 1000);
      heap.update(it);
    } else {
      const top = heap.pop()!;
      assert.equal(top.key, Math.min(...[...live].map((i) => i.key)));
      live.delete(top);
    }
    assert.equal(heap.size, live.size);
  }
  let last = -Infinity;
  for (let it = heap.pop(); it; it = heap.pop()) {
    assert.ok(it.key >= last);
    last = it.key;
  }
});

test('the typed-array heap of rows agrees with a plain reference under random operations', () => {
  const r = rng(4242);
  const positions = { pos: new Int32Array(5000).fill(-1) };
  const heap = new IntHeap(positions);
  const keys = new Map<number, number>(); // row → key: the reference
  for (let step = 0; step < 30_000; step++) {
    const op = r();
    const row = Math.floor(r() * 5000);
    if (op < 0.45) {
      if (keys.has(row)) continue;
      const key = Math.floor(r() * 1e6);
      heap.push(row, key);
      keys.set(row, key);
    } else if (op < 0.65) {
      assert.equal(heap.remove(row), keys.delete(row));
    } else if (op < 0.8) {
      if (!keys.has(row)) continue;
      const key = Math.floor(r() * 1e6);
      heap.update(row, key);
      keys.set(row, key);
    } else if (keys.size) {
      const least = Math.min(...keys.values());
      assert.equal(heap.peekKey(), least);
      const top = heap.pop();
      assert.equal(keys.get(top), least);
      keys.delete(top);
    }
    assert.equal(heap.size, keys.size);
  }
});

function harness(limits: { total: number; perDestination: number; bytes?: number }) {
  let now = 1_000_000;
  const started: number[] = [];
  const s = new Scheduler(
    (j) => started.push(j),
    () => now,
  );
  s.setLimits(limits);
  const job = (domain: string, due = now, bytes = 0, ramped = false): number => s.create(0, domain, due, bytes, ramped);
  const running = (domain?: string) => [...new Set(started)].filter((j) => s.isRunning(j) && (domain === undefined || s.destinationOf(j) === domain)).length;
  return {
    s,
    started,
    job,
    running,
    advance: (ms: number) => (now += ms),
    get now() {
      return now;
    },
  };
}

test('jobs start in due order, one slot at a time', () => {
  const h = harness({ total: 1, perDestination: Infinity });
  const r = rng(7);
  const jobs = Array.from({ length: 500 }, () => h.job(`d${Math.floor(r() * 20)}.example`, h.now - Math.floor(r() * 100_000)));
  const dueOf = new Map(jobs.map((j) => [j, h.s.dueOf(j)]));
  h.s.addMany(jobs);
  while (h.started.length < jobs.length) {
    const current = h.started[h.started.length - 1]!;
    assert.equal(h.running(), 1);
    h.s.done(current, null);
  }
  const dues = h.started.map((j) => dueOf.get(j)!);
  assert.deepEqual(
    dues,
    [...dues].sort((a, b) => a - b),
  );
  h.s.done(h.started[h.started.length - 1]!, null);
  assert.equal(h.s.size, 0);
  assert.equal(h.s.destinations, 0, 'an idle destination is forgotten');
  h.s.stop();
});

test('a destination with a backlog gets at most its share; another destination is served at once', () => {
  const h = harness({ total: 5, perDestination: 2 });
  for (let i = 0; i < 100; i++) h.s.add(h.job('slow.example'));
  assert.equal(h.running('slow.example'), 2);
  assert.equal(h.running(), 2, 'the other three slots stay free for other destinations');
  for (let i = 0; i < 10; i++) h.s.add(h.job('fast.example'));
  assert.equal(h.running('fast.example'), 2);
  // the slow destination's jobs never finish; the fast one's do, and its queue drains
  let fastDone = 0;
  for (
    let j = h.started.find((x) => h.s.isRunning(x) && h.s.destinationOf(x) === 'fast.example');
    j !== undefined;
    j = h.started.find((x) => h.s.isRunning(x) && h.s.destinationOf(x) === 'fast.example')
  ) {
    h.s.done(j, null);
    fastDone++;
    assert.ok(h.running('slow.example') <= 2);
  }
  assert.equal(fastDone, 10);
  assert.equal(h.running('slow.example'), 2);
  // the total holds across many destinations
  for (let d = 0; d < 10; d++) h.s.add(h.job(`d${d}.example`));
  assert.equal(h.running(), 5);
  h.s.stop();
});

test('a job back in line waits for its due time; removal, expedite and a larger limit', () => {
  const h = harness({ total: 10, perDestination: 1 });
  const a = h.job('a.example');
  h.s.add(a);
  assert.equal(h.s.isRunning(a), true);
  h.s.done(a, h.now + 60_000); // deferred for a minute
  assert.equal(h.s.isRunning(a), false);
  h.s.pump();
  assert.equal(h.started.length, 1, 'not before its time');
  h.advance(60_000);
  h.s.pump();
  assert.equal(h.started.length, 2);
  assert.equal(h.s.isRunning(a), true);
  h.s.done(a, null);

  const later = h.job('b.example', h.now + 3_600_000);
  const gone = h.job('c.example', h.now + 3_600_000);
  h.s.add(later);
  h.s.add(gone);
  h.s.remove(gone);
  h.s.expedite([later, gone]);
  assert.equal(h.s.isRunning(later), true, 'an operator retry makes it due now');
  assert.ok(!h.started.includes(gone), 'a removed job never runs');

  const queued = [h.job('d.example'), h.job('d.example'), h.job('d.example')];
  for (const j of queued) h.s.add(j);
  assert.equal(h.running('d.example'), 1);
  h.s.setLimits({ total: 10, perDestination: 3 });
  assert.equal(h.running('d.example'), 3, 'a raised limit applies at once');
  h.s.stop();
});

test('the byte budget: the jobs running hold at most that much; one larger message goes alone; the first in line is not passed', () => {
  const MB = 1_000_000;
  const h = harness({ total: 20, perDestination: Infinity, bytes: 64 * MB });
  // 25 big messages after a relay outage, all due: three fit at once, not twenty
  const big = Array.from({ length: 25 }, (_, i) => h.job('relay', h.now - 1000 + i, 20 * MB));
  h.s.addMany(big);
  assert.equal(h.running(), 3);
  assert.equal(h.s.bytesRunning, 60 * MB);
  // a small one due later waits behind the big one first in line (no starvation of big mail)
  const small = h.job('relay', h.now, 1000);
  h.s.add(small);
  assert.equal(h.s.isRunning(small), false);
  let maxBytes = 0;
  while (h.s.running > 0) {
    maxBytes = Math.max(maxBytes, h.s.bytesRunning);
    assert.ok(h.s.running <= 20);
    h.s.done(
      h.started.find((j) => h.s.isRunning(j))!,
      null,
    );
  }
  assert.ok(maxBytes <= 64 * MB, `${maxBytes} bytes in flight`);
  assert.equal(h.started.length, 26, 'every job ran');
  assert.equal(h.started.at(-1), small, 'in due order');
  assert.equal(h.s.bytesRunning, 0);
  // larger than the whole budget: it goes, alone, and nothing joins it until it is done
  const huge = h.job('relay', h.now - 1, 100 * MB);
  const after = h.job('relay', h.now, 10);
  h.s.addMany([huge, after]);
  assert.equal(h.s.isRunning(huge), true);
  assert.equal(h.s.isRunning(after), false);
  h.s.done(huge, null);
  assert.equal(h.s.isRunning(after), true);
  h.s.done(after, null);
  // small mail is held back by the count alone
  for (let i = 0; i < 30; i++) h.s.add(h.job(`d${i}.example`, h.now, 50_000));
  assert.equal(h.running(), 20);
  h.s.stop();
});

test('after a start, what was queued before it ramps up: one job, then one more each step; new mail is not counted', () => {
  const h = harness({ total: 20, perDestination: 5, bytes: 64 * 1_000_000 });
  h.s.rampUp(20_000); // a step a second
  const jobs = Array.from({ length: 200 }, (_, i) => h.job(`d${i % 40}.example`, h.now - 60_000, 0, true));
  h.s.addMany(jobs);
  assert.equal(h.running(), 1, 'one job at first');
  h.advance(999);
  h.s.pump();
  assert.equal(h.running(), 1);
  h.advance(1);
  h.s.pump();
  assert.equal(h.running(), 2, 'one more after a step');
  h.advance(5000);
  h.s.pump();
  assert.equal(h.running(), 7);
  // a finished job is replaced, within the ramp's allowance
  h.s.done(
    h.started.find((j) => h.s.isRunning(j))!,
    null,
  );
  assert.equal(h.running(), 7);
  // mail accepted after the start waits behind the backlog due before it (due order, as always)
  const fresh = h.job('new.example', h.now);
  h.s.add(fresh);
  assert.equal(h.s.isRunning(fresh), false);
  h.advance(14_000);
  h.s.pump();
  assert.equal(h.running(), 20, 'the full limit once the ramp is over');
  // but the ramp counts only what was queued before the start: with that backlog started,
  // new mail takes every slot at once, beyond the ramp's allowance
  const n = harness({ total: 20, perDestination: Infinity });
  n.s.rampUp(20_000);
  n.s.addMany(Array.from({ length: 3 }, () => n.job('old.example', n.now - 1000, 0, true)));
  n.advance(2000);
  n.s.pump();
  assert.equal(n.running(), 3);
  n.s.addMany(Array.from({ length: 10 }, () => n.job('new.example', n.now)));
  assert.equal(n.running(), 13);
  // the ramp's timer wakes the scheduler by itself (no job finishing needed)
  const t = harness({ total: 4, perDestination: Infinity });
  t.s.rampUp(4000);
  t.s.addMany(Array.from({ length: 10 }, () => t.job('relay', t.now, 0, true)));
  assert.equal(t.running(), 1);
  // rampUp(0): everything at once
  const c = harness({ total: 5, perDestination: Infinity });
  c.s.rampUp(0);
  c.s.addMany(Array.from({ length: 10 }, () => c.job('relay', c.now, 0, true)));
  assert.equal(c.running(), 5);
  for (const x of [h, n, t, c]) x.s.stop();
});

test('200,000 jobs: every one runs exactly once, in due order per destination; rows are reused', () => {
  const h = harness({ total: 20, perDestination: 5 });
  const r = rng(99);
  const total = 200_000;
  const jobs = Array.from({ length: total }, (_, i) => h.job(`d${i % 1000}.example`, h.now - Math.floor(r() * 1_000_000)));
  const meta = new Map(jobs.map((j) => [j, { due: h.s.dueOf(j), domain: h.s.destinationOf(j) }]));
  h.s.addMany(jobs);
  const seen = new Set<number>();
  const lastDue = new Map<string, number>();
  let i = 0;
  while (i < h.started.length) {
    const j = h.started[i++]!;
    assert.ok(!seen.has(j));
    seen.add(j);
    const m = meta.get(j)!;
    assert.ok(m.due >= (lastDue.get(m.domain) ?? -Infinity), 'per destination, in due order');
    lastDue.set(m.domain, m.due);
    h.s.done(j, null);
  }
  assert.equal(seen.size, total);
  assert.equal(h.s.size, 0);
  // a freed row serves the next job
  const again = h.job('x.example');
  assert.ok(again < total);
  h.s.stop();
});

test('queue ids round-trip through their two numbers; other ids are kept as they are', () => {
  const r = rng(77);
  for (let i = 0; i < 2000; i++) {
    const id = newQueueId(Math.floor(r() * 4e12));
    const key = encodeId(id)!;
    assert.ok(key, id);
    assert.equal(decodeId(key[0], key[1]), id);
  }
  assert.equal(encodeId('0000000000abcdef0001'), null, 'twenty characters: not of the standard form');
  assert.equal(encodeId('../../etc/passwd'), null);
  const index = new QueueIndex();
  const odd = index.add('0000000000abcdef0001', 5, true);
  const std = index.add(newQueueId(1_800_000_000_000), 3, false);
  assert.equal(index.idOf(odd), '0000000000abcdef0001');
  assert.equal(index.find('0000000000abcdef0001'), odd);
  assert.equal(index.find(index.idOf(std)), std);
  assert.equal(index.find(newQueueId()), -1);
  assert.equal(index.oldest(), 3);
  // active: never attempted, or a job running; deferred otherwise
  assert.equal(index.active, 1);
  index.jobStarted(odd);
  assert.equal(index.active, 2);
  index.jobEnded(odd);
  index.jobStarted(std);
  index.jobEnded(std);
  assert.equal(index.active, 0, 'both attempted, nothing running');
  index.remove(std);
  assert.equal(index.size, 1);
  assert.equal(index.oldest(), 5);
  assert.equal(index.find(index.idOf(odd)), odd);
  index.reserve(100_000); // room made ahead: rows keep their data
  assert.equal(index.idOf(odd), '0000000000abcdef0001');
});
