// The abuse limits with a clock of their own: lockout after maxFailures within the window, for
// lockoutDuration, per address (IPv4-mapped addresses are the same client); the delay for a
// login failing from many addresses grows 250 ms per failure beyond maxFailures, up to 5 s,
// and fades with the window; trusted addresses are never locked out; an operator lifts lockouts;
// concurrent connections per address; sending rates per user over a sliding window.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthLimiter, ClientConnections } from '../../src/smtp/limits.js';
import { SendRateLimiter } from '../../src/smtp/send-rate.js';

const limits = { maxFailures: 5, windowMs: 600_000, lockoutMs: 900_000 };

test('an address is locked out at maxFailures within the window, for lockoutDuration, then free', () => {
  let now = 0;
  const l = new AuthLimiter(() => now);
  for (let i = 0; i < 4; i++) assert.equal(l.recordFailure('192.0.2.1', `u${i}`, limits, false), null);
  assert.equal(l.isLocked('192.0.2.1'), false);
  assert.deepEqual(l.recordFailure('::ffff:192.0.2.1', 'u5', limits, false), { address: '192.0.2.1', failures: 5, since: 0, until: limits.lockoutMs }, 'the same client in IPv4-mapped form');
  assert.deepEqual(
    l.active().map((x) => x.address),
    ['192.0.2.1'],
  );
  assert.equal(l.isLocked('192.0.2.1'), true);
  assert.equal(l.isLocked('192.0.2.2'), false, 'others are not affected');
  now += limits.lockoutMs - 1;
  assert.equal(l.isLocked('192.0.2.1'), true);
  now += 1;
  assert.equal(l.isLocked('192.0.2.1'), false);
  assert.deepEqual(l.active(), [], 'an expired lockout is no longer listed');
});

test('failures older than the window do not count', () => {
  let now = 0;
  const l = new AuthLimiter(() => now);
  for (let i = 0; i < 4; i++) l.recordFailure('192.0.2.9', 'x', limits, false);
  now += limits.windowMs + 1;
  assert.equal(l.recordFailure('192.0.2.9', 'x', limits, false), null, 'the earlier four have aged out');
});

test('a login failing from many addresses is delayed 250 ms per failure beyond maxFailures, up to 5 s, and recovers', () => {
  let now = 0;
  const l = new AuthLimiter(() => now);
  const delays: number[] = [];
  for (let i = 0; i < 30; i++) {
    delays.push(l.userDelayMs('Bob', limits));
    l.recordFailure(`198.51.100.${i}`, 'bob', limits, false);
  }
  assert.deepEqual(delays.slice(0, 6), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(delays.slice(6, 10), [250, 500, 750, 1000]);
  assert.equal(Math.max(...delays), 5000);
  assert.equal(l.userDelayMs('alice', limits), 0, 'other logins are not slowed');
  now += limits.windowMs + 1;
  assert.equal(l.userDelayMs('bob', limits), 0);
});

test('a trusted address is never locked out; its failures count against the login only', () => {
  const l = new AuthLimiter(() => 0);
  for (let i = 0; i < 20; i++) assert.equal(l.recordFailure('10.0.0.5', 'carol', limits, true), null);
  assert.equal(l.isLocked('10.0.0.5'), false);
  assert.equal(l.userDelayMs('carol', limits), 250 * 15, 'the login is slowed down');
});

test('an operator lifts one lockout or all, and the failure count starts over', () => {
  const l = new AuthLimiter(() => 0);
  for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) for (let i = 0; i < 5; i++) l.recordFailure(ip, 'x', limits, false);
  assert.equal(l.active().length, 3);
  assert.equal(l.unlock('::ffff:192.0.2.1'), 1);
  assert.equal(l.unlock('192.0.2.1'), 0, 'nothing left to lift');
  assert.equal(l.isLocked('192.0.2.1'), false);
  assert.equal(l.recordFailure('192.0.2.1', 'x', limits, false), null, 'one failure after an unlock does not lock again');
  assert.equal(l.unlock(null), 2);
  assert.deepEqual(l.active(), []);
});

test('sending rate: messages and recipients per key over a sliding window; 0 disables a limit', () => {
  let now = 0;
  const r = new SendRateLimiter(() => now);
  const rate = { messages: 3, recipients: 10, windowMs: 3_600_000 };
  assert.equal(r.exceeds('user bob', rate, 1), null);
  r.record('user bob', rate, 4);
  now += 1000;
  r.record('user bob', rate, 4);
  assert.equal(r.exceeds('user bob', rate, 2), null, '8 + 2 = 10 is still allowed');
  assert.equal(r.exceeds('user bob', rate, 3), 'recipients');
  assert.equal(r.exceeds('user alice', rate, 3), null, 'others have their own count');
  r.record('user bob', rate, 1);
  assert.equal(r.exceeds('user bob', rate, 1), 'messages');
  now = rate.windowMs + 1; // the first message leaves the window
  assert.equal(r.exceeds('user bob', rate, 1), null);
  assert.equal(r.exceeds('user bob', rate, 6), 'recipients', '4 + 1 left in the window');
  const off = { messages: 0, recipients: 0, windowMs: 1000 };
  for (let i = 0; i < 1000; i++) r.record('user carol', off, 100);
  assert.equal(r.exceeds('user carol', off, 1_000_000), null);
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
