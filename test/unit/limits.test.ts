// The abuse limits with a clock of their own: lockout after maxFailures within the window, for
// lockoutDuration, per address (IPv4-mapped addresses are the same client); the delay for a
// login failing from many addresses grows 250 ms per failure beyond maxFailures, up to 5 s,
// and fades with the window; concurrent connections per address.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthLimiter, ClientConnections } from '../../src/smtp/limits.js';

const limits = { maxFailures: 5, windowMs: 600_000, lockoutMs: 900_000 };

test('an address is locked out at maxFailures within the window, for lockoutDuration, then free', () => {
  let now = 0;
  const l = new AuthLimiter(() => now);
  for (let i = 0; i < 4; i++) assert.equal(l.recordFailure('192.0.2.1', `u${i}`, limits), false);
  assert.equal(l.isLocked('192.0.2.1'), false);
  assert.equal(l.recordFailure('::ffff:192.0.2.1', 'u5', limits), true, 'the same client in IPv4-mapped form');
  assert.equal(l.isLocked('192.0.2.1'), true);
  assert.equal(l.isLocked('192.0.2.2'), false, 'others are not affected');
  now += limits.lockoutMs - 1;
  assert.equal(l.isLocked('192.0.2.1'), true);
  now += 1;
  assert.equal(l.isLocked('192.0.2.1'), false);
});

test('failures older than the window do not count', () => {
  let now = 0;
  const l = new AuthLimiter(() => now);
  for (let i = 0; i < 4; i++) l.recordFailure('192.0.2.9', 'x', limits);
  now += limits.windowMs + 1;
  assert.equal(l.recordFailure('192.0.2.9', 'x', limits), false, 'the earlier four have aged out');
});

test('a login failing from many addresses is delayed 250 ms per failure beyond maxFailures, up to 5 s, and recovers', () => {
  let now = 0;
  const l = new AuthLimiter(() => now);
  const delays: number[] = [];
  for (let i = 0; i < 30; i++) {
    delays.push(l.userDelayMs('Bob', limits));
    l.recordFailure(`198.51.100.${i}`, 'bob', limits);
  }
  assert.deepEqual(delays.slice(0, 6), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(delays.slice(6, 10), [250, 500, 750, 1000]);
  assert.equal(Math.max(...delays), 5000);
  assert.equal(l.userDelayMs('alice', limits), 0, 'other logins are not slowed');
  now += limits.windowMs + 1;
  assert.equal(l.userDelayMs('bob', limits), 0);
});

test('connections per address are counted and released', () => {
  const c = new ClientConnections();
  assert.ok(c.acquire('203.0.113.5', 2));
  assert.ok(c.acquire('::ffff:203.0.113.5', 2));
  assert.equal(c.acquire('203.0.113.5', 2), false);
  assert.ok(c.acquire('203.0.113.6', 2));
  c.release('203.0.113.5');
  assert.ok(c.acquire('203.0.113.5', 2));
});
