// The Lua scripts of the shared limits (shared-limits.ts): each decision is one script, so one
// round trip, atomic in Redis, on keys that expire by themselves. Time is Redis's own (TIME), so
// replicas whose clocks differ still count in one timeline. Sets of events are sorted sets
// scored by their time (ms); a member carries a random suffix so that two events of the same
// millisecond stay two.
import { createHash } from 'node:crypto';

export interface Script {
  readonly sha: string;
  readonly lua: string;
  readonly keys: number;
}

function script(keys: number, body: string): Script {
  const lua = `local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n${body}`;
  return { sha: createHash('sha1').update(lua).digest('hex'), lua, keys };
}

/**
 * connect — KEYS: lock:<ip>, conn:<ip>; ARGV: checkLock (0/1), max, leaseMs, member.
 * 'locked' when the address is locked out (and checkLock), 'full' when it has max connections
 * (leases not expired), else the connection is counted under `member` until leaseMs from now.
 */
export const CONNECT = script(
  2,
  `if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 'locked' end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 'full' end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return 'ok'`,
);

/**
 * auth check — KEYS: lock:<ip>, ufail:<login>; ARGV: windowMs.
 * { the lockout (JSON) or false, failures of the login within the window }
 */
export const AUTH_CHECK = script(
  2,
  `redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
return { redis.call('GET', KEYS[1]), redis.call('ZCARD', KEYS[2]) }`,
);

/**
 * failure — KEYS: fail:<ip>, ufail:<login>, lock:<ip>; ARGV: windowMs, maxFailures, lockoutMs,
 * trusted (0/1), member. Counts the failure against the login and (untrusted) the address; the
 * one that reaches maxFailures starts a lockout: returned as JSON, else false.
 */
export const FAILURE = script(
  3,
  `local window = tonumber(ARGV[1])
local member = now .. '-' .. ARGV[5]
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZADD', KEYS[2], now, member)
redis.call('PEXPIRE', KEYS[2], window)
if ARGV[4] == '1' then return false end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], window)
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[2]) then return false end
local lockout = tonumber(ARGV[3])
local v = cjson.encode({ failures = n, since = now, ['until'] = now + lockout })
redis.call('SET', KEYS[3], v, 'PX', math.max(1, lockout))
redis.call('DEL', KEYS[1])
return v`,
);

/**
 * rate check — KEYS: rate:<key>; ARGV: windowMs, messages, recipients, recipients of this one.
 * 'messages' or 'recipients' when one more message would go over that limit (0: none), else ''.
 */
export const RATE_CHECK = script(
  1,
  `redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local maxm = tonumber(ARGV[2])
if maxm > 0 and redis.call('ZCARD', KEYS[1]) + 1 > maxm then return 'messages' end
local maxr = tonumber(ARGV[3])
if maxr > 0 then
  -- only accepted messages are recorded, each with at least one recipient: at most maxr of them
  local total = tonumber(ARGV[4])
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do total = total + tonumber(string.match(m, '^%d+:(%d+):')) end
  if total > maxr then return 'recipients' end
end
return ''`,
);

/** rate record — KEYS: rate:<key>; ARGV: windowMs, recipients, random. */
export const RATE_RECORD = script(
  1,
  `redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1`,
);

/** harvest — KEYS: harvest:<ip>; ARGV: windowMs. The address's refused RCPTs in its window, this one included. */
export const HARVEST = script(
  1,
  `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n`,
);
