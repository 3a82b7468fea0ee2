// The abuse limits of every replica as one: with cluster.redis, the failed-AUTH lockout, sending
// rates, per-client connection counts and harvest counters are decided in Redis (one script, one
// round trip per decision: redis-scripts.ts), so N replicas allow what one allows. Without Redis,
// or while it is down or slower than cluster.redis.timeout, the replica's own counters decide at
// once (the local limiters of smtp/limits.ts and smtp/send-rate.ts, which every event updates
// too, so they hold this replica's recent history when they have to take over). Whether Redis
// answers is logged on each change, exported (mailplane_cluster_redis_up) and shown in /status;
// a probe finds it again. Nothing but expiring counters is ever written to Redis: no mail, no
// queue state. One instance lives as long as the process, like the local limiters.
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import { unmapV4 } from '../config/cidr.js';
import type { RedisState, SendRate } from '../config/desired-state.js';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import type { AuthLimiter, AuthLimits, ClientConnections, Lockout } from '../smtp/limits.js';
import type { RateExceeded, SendRateLimiter } from '../smtp/send-rate.js';
import { AUTH_CHECK, CONNECT, FAILURE, HARVEST, RATE_CHECK, RATE_RECORD, type Script } from './redis-scripts.js';

/** How long a connection counted in Redis stays counted unless its replica renews it (a replica that died stops renewing). */
const LEASE_MS = 60_000;
/** How often a replica that cannot use Redis looks whether it answers again. */
const PROBE_MS = 1000;
/** How often the lockouts in force are read for /status and the gauge. */
const LOCKOUTS_REFRESH_MS = 5000;

export interface LocalLimiters {
  readonly auth: AuthLimiter;
  readonly rate: SendRateLimiter;
  readonly clients: ClientConnections;
}

/** A counted connection: released when its session ends. */
export interface ConnectionToken {
  readonly ip: string;
  /** its member in Redis (null: counted locally only) */
  readonly member: string | null;
}

export type ConnectDecision = { readonly refused: 'locked' | 'connections'; readonly token: null } | { readonly refused: null; readonly token: ConnectionToken };

type State = 'connecting' | 'up' | 'down';

interface Client {
  readonly redis: Redis;
  /** the settings it decides with (a new timeout applies in place) */
  spec: RedisState;
  /** where it is shown: the URL (never carries a password: validate refuses one) */
  readonly url: string;
}

class RedisTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/** A key part that is someone's input (a login, a rate key): hashed, so Redis holds no names and keys stay short. */
const hashed = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);

export class SharedLimits {
  private client: Client | null = null;
  private state: State = 'connecting';
  private lastError: { message: string; at: number } | null = null;
  private since: number | null = null;
  private probe: NodeJS.Timeout | null = null;
  private renew: NodeJS.Timeout | null = null;
  private refresh: NodeJS.Timeout | null = null;
  private cached: Lockout[] = [];
  private seq = 0;
  /** connections counted in Redis by this replica: member → its key, renewed while open */
  private readonly leases = new Map<string, string>();
  private readonly replica = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;

  constructor(
    readonly local: LocalLimiters,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    metrics.clusterRedisSource = () => (this.client ? { up: this.state === 'up' } : null);
  }

  /** The serving generation's cluster.redis (null: none): a new client only when where or how it connects changed. */
  configure(spec: RedisState | null): void {
    const old = this.client;
    if (old && spec && old.spec.url === spec.url && old.spec.keyPrefix === spec.keyPrefix && old.spec.password?.reveal() === spec.password?.reveal()) {
      old.spec = spec; // the same connection: handlers and timers keep knowing it
      return;
    }
    if (!old && !spec) return;
    this.stopTimers();
    this.leases.clear(); // what the old Redis counted expires there; new connections count in the new one
    this.client = null;
    this.cached = [];
    if (old) void old.redis.quit().catch(() => old.redis.disconnect());
    if (!spec) {
      this.log.info('cluster: shared limits off, this replica counts alone');
      return;
    }
    this.client = this.open(spec);
    this.state = 'connecting';
    this.since = Date.now();
  }

  private open(spec: RedisState): Client {
    const options: RedisOptions = {
      enableOfflineQueue: false, // never queue a decision while disconnected: fall back at once
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.max(1000, spec.timeoutMs * 4),
      retryStrategy: (attempt) => Math.min(200 * attempt, 2000),
      lazyConnect: false,
      ...(spec.password ? { password: spec.password.reveal() } : {}),
    };
    const redis = new Redis(spec.url, options);
    const url = safeUrl(spec.url);
    const client: Client = { redis, spec, url };
    redis.on('ready', () => void this.check(client));
    redis.on('error', (e: Error) => {
      if (this.client === client) this.down(e.message);
    });
    redis.on('close', () => {
      if (this.client === client) this.down('the connection to Redis closed');
    });
    this.probe = setInterval(() => void this.check(client), PROBE_MS);
    this.probe.unref();
    this.renew = setInterval(() => void this.renewLeases(client), LEASE_MS / 3);
    this.renew.unref();
    this.refresh = setInterval(() => void this.refreshLockouts(client), LOCKOUTS_REFRESH_MS);
    this.refresh.unref();
    return client;
  }

  /** Whether Redis answers (a PING within the timeout); a change of state is logged. */
  private async check(client: Client): Promise<void> {
    if (this.client !== client || this.state === 'up' || client.redis.status !== 'ready') return;
    try {
      await this.timed(client, client.redis.ping());
      if (this.client !== client || (this.state as State) === 'up') return;
      const was = this.state;
      this.state = 'up';
      this.since = Date.now();
      this.metrics.clusterRedisChanges.inc({ state: 'up' });
      this.log.info(was === 'down' ? 'cluster: Redis answers again, limits are shared across replicas again' : 'cluster: Redis connected, limits are shared across replicas', { redis: client.url });
      void this.refreshLockouts(client);
    } catch (e) {
      if (this.client === client) this.down((e as Error).message);
    }
  }

  private down(message: string): void {
    this.lastError = { message, at: Date.now() };
    if (this.state === 'down') return;
    const was = this.state;
    this.state = 'down';
    this.since = Date.now();
    this.metrics.clusterRedisChanges.inc({ state: 'down' });
    this.log.warn(
      was === 'up' ? "cluster: Redis unavailable, limits fall back to this replica's own counters" : "cluster: cannot reach Redis, limits use this replica's own counters until it answers",
      { redis: this.client?.url, error: message },
    );
  }

  private timed<T>(client: Client, p: Promise<T>): Promise<T> {
    const ms = client.spec.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new RedisTimeout(ms)), ms);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** Runs a script (EVALSHA, loading it once when Redis does not know it). */
  private async run(client: Client, s: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    const r = client.redis;
    try {
      return await r.evalsha(s.sha, s.keys, ...keys, ...args);
    } catch (e) {
      if (!/NOSCRIPT/.test((e as Error).message)) throw e;
      return r.eval(s.lua, s.keys, ...keys, ...args);
    }
  }

  /**
   * One decision: in Redis when it answers within the timeout, else (or while it is down) by
   * `local`. `remote` gets the client and the key prefix.
   */
  private async decide<T>(remote: (c: Client, p: string) => Promise<T>, local: () => T): Promise<T> {
    const c = this.client;
    if (!c) return local();
    if (this.state !== 'up') {
      this.metrics.clusterDecisions.inc({ store: 'local' });
      return local();
    }
    try {
      const v = await this.timed(c, remote(c, c.spec.keyPrefix));
      this.metrics.clusterDecisions.inc({ store: 'redis' });
      return v;
    } catch (e) {
      if (this.client === c) this.down((e as Error).message);
      this.metrics.clusterDecisions.inc({ store: 'local' });
      return local();
    }
  }

  /** A new connection: refused while its address is locked out (checkLock) or at its limit of connections, else counted. */
  connect(ip: string, o: { checkLock: boolean; maxPerClient: number }): Promise<ConnectDecision> {
    const key = unmapV4(ip);
    const member = `${this.replica}:${(this.seq++).toString(36)}`;
    let asked: Client | null = null;
    let fellBack = false;
    const local = (): ConnectDecision => {
      fellBack = true;
      // Redis was asked and did not answer in time: should it still count the connection, take it back (after, on the same connection)
      if (asked) void asked.redis.zrem(`${asked.spec.keyPrefix}conn:${key}`, member).catch(() => {});
      if (o.checkLock && this.local.auth.isLocked(key)) return { refused: 'locked', token: null };
      if (!this.local.clients.acquire(key, o.maxPerClient)) return { refused: 'connections', token: null };
      return { refused: null, token: { ip: key, member: null } };
    };
    return this.decide(async (c, p) => {
      asked = c;
      const r = await this.run(c, CONNECT, [`${p}lock:${key}`, `${p}conn:${key}`], [o.checkLock ? 1 : 0, o.maxPerClient, LEASE_MS, member]);
      if (fellBack) return { refused: 'connections', token: null }; // too late: decided locally meanwhile (this answer goes nowhere)
      if (r === 'locked') return { refused: 'locked', token: null };
      if (o.checkLock && this.local.auth.isLocked(key)) this.local.auth.unlock(key); // lifted elsewhere: the local mirror follows
      if (r === 'full') return { refused: 'connections', token: null };
      asked = null;
      this.leases.set(member, `${p}conn:${key}`);
      this.local.clients.acquire(key, Infinity); // the local mirror, should Redis go away
      return { refused: null, token: { ip: key, member } };
    }, local);
  }

  /** The end of a counted connection. */
  release(token: ConnectionToken): void {
    this.local.clients.release(token.ip);
    if (token.member === null) return;
    const key = this.leases.get(token.member);
    this.leases.delete(token.member);
    const c = this.client;
    // a lost release only keeps the lease until it expires
    if (c && key && this.state === 'up') void c.redis.zrem(key, token.member).catch(() => {});
  }

  private async renewLeases(client: Client): Promise<void> {
    if (this.client !== client || this.state !== 'up' || !this.leases.size) return;
    const pipeline = client.redis.pipeline();
    const until = Date.now() + LEASE_MS; // scores are Redis's time; a clock skew shorter than the lease is harmless
    for (const [member, key] of this.leases) {
      pipeline.zadd(key, 'XX', until, member);
      pipeline.pexpire(key, LEASE_MS);
    }
    await pipeline.exec().catch(() => {});
  }

  /** The lockout of an address and the failures of a login (for the delay before answering it), for AUTH. */
  authCheck(ip: string, login: string, limits: AuthLimits): Promise<{ lockout: Lockout | null; userDelayMs: number }> {
    const key = unmapV4(ip);
    const user = login.toLowerCase();
    return this.decide(
      async (c, p) => {
        const [lock, failures] = (await this.run(c, AUTH_CHECK, [`${p}lock:${key}`, `${p}ufail:${hashed(user)}`], [limits.windowMs])) as [string | null, number];
        const excess = Number(failures) - limits.maxFailures;
        if (!lock && this.local.auth.isLocked(key)) this.local.auth.unlock(key); // lifted elsewhere: the local mirror follows
        return { lockout: lock ? parseLockout(key, lock) : null, userDelayMs: excess > 0 ? Math.min(5000, 250 * excess) : 0 };
      },
      () => ({ lockout: this.local.auth.lockout(key), userDelayMs: this.local.auth.userDelayMs(user, limits) }),
    );
  }

  /** A failed AUTH; returns the lockout this failure starts, if it does. */
  async recordFailure(ip: string, login: string, limits: AuthLimits, trusted: boolean): Promise<Lockout | null> {
    const key = unmapV4(ip);
    const user = login.toLowerCase();
    const mirrored = this.local.auth.recordFailure(key, user, limits, trusted);
    const lockout = await this.decide(
      async (c, p) => {
        const r = (await this.run(
          c,
          FAILURE,
          [`${p}fail:${key}`, `${p}ufail:${hashed(user)}`, `${p}lock:${key}`],
          [limits.windowMs, limits.maxFailures, limits.lockoutMs, trusted ? 1 : 0, randomBytes(4).toString('hex')],
        )) as string | null;
        return r ? parseLockout(key, r) : null;
      },
      () => mirrored,
    );
    if (lockout && this.client && this.state === 'up') this.cached = [...this.cached.filter((l) => l.address !== key), lockout];
    return lockout;
  }

  /** Whether one more message with `recipients` recipients would go over the sending rate of `key`. */
  rateExceeds(key: string, rate: SendRate, recipients: number): Promise<RateExceeded | null> {
    if (rate.messages === 0 && rate.recipients === 0) return Promise.resolve(null);
    return this.decide(
      async (c, p) => {
        const r = (await this.run(c, RATE_CHECK, [`${p}rate:${hashed(key)}`], [rate.windowMs, rate.messages, rate.recipients, recipients])) as string;
        return r === 'messages' || r === 'recipients' ? r : null;
      },
      () => this.local.rate.exceeds(key, rate, recipients),
    );
  }

  /** Counts an accepted message against the sending rate of `key` (never waited for). */
  rateRecord(key: string, rate: SendRate, recipients: number): void {
    if (rate.messages === 0 && rate.recipients === 0) return;
    this.local.rate.record(key, rate, recipients);
    void this.decide(
      (c, p) => this.run(c, RATE_RECORD, [`${p}rate:${hashed(key)}`], [rate.windowMs, recipients, randomBytes(4).toString('hex')]),
      () => null,
    );
  }

  /** Counts a refused RCPT of an address across replicas; its count in the window, or null without Redis (the session's own count decides). */
  harvest(ip: string, windowMs: number): Promise<number | null> {
    const key = unmapV4(ip);
    return this.decide(
      async (c, p) => Number(await this.run(c, HARVEST, [`${p}harvest:${key}`], [Math.max(1, windowMs)])),
      () => null,
    );
  }

  /** The lockouts in force (across replicas while Redis answers: as last read, at most a few seconds old). */
  lockouts(): Lockout[] {
    if (this.client && this.state === 'up') {
      const now = Date.now();
      return this.cached.filter((l) => l.until > now);
    }
    return this.local.auth.active();
  }

  private async refreshLockouts(client: Client): Promise<void> {
    if (this.client !== client || this.state !== 'up') return;
    try {
      const p = client.spec.keyPrefix;
      const keys = await this.scan(client, `${escapeGlob(p)}lock:*`);
      const values = keys.length ? await client.redis.mget(...keys) : [];
      if (this.client !== client) return;
      this.cached = keys.flatMap((k, i) => (values[i] ? [parseLockout(k.slice(`${p}lock:`.length), values[i])] : [])).sort((a, b) => a.since - b.since);
    } catch {}
  }

  private async scan(client: Client, match: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
    return out;
  }

  /** Lifts the lockout of one address (and forgets its failures), or every lockout, here and in Redis; how many were lifted. */
  async unlock(address: string | null): Promise<number> {
    const local = this.local.auth.unlock(address);
    const c = this.client;
    if (!c || this.state !== 'up') return local;
    const p = c.spec.keyPrefix;
    try {
      let n: number;
      if (address === null) {
        const locks = await this.scan(c, `${escapeGlob(p)}lock:*`);
        const fails = await this.scan(c, `${escapeGlob(p)}fail:*`);
        if (locks.length || fails.length) await c.redis.del(...locks, ...fails);
        n = locks.length;
      } else {
        const key = unmapV4(address);
        n = Number(await c.redis.del(`${p}lock:${key}`));
        await c.redis.del(`${p}fail:${key}`);
      }
      this.cached = address === null ? [] : this.cached.filter((l) => l.address !== unmapV4(address));
      return Math.max(n, local);
    } catch (e) {
      this.down((e as Error).message);
      throw new Error(`the lockout was lifted on this replica, but Redis could not be told (${(e as Error).message}): other replicas keep it until it expires`, { cause: e });
    }
  }

  /** What /status shows: where Redis is, whether it answers, since when, the last error (never the password). */
  status(): unknown {
    const c = this.client;
    if (!c) return { redis: null };
    return {
      redis: {
        url: c.url,
        keyPrefix: c.spec.keyPrefix,
        timeoutMs: c.spec.timeoutMs,
        password: c.spec.password ? 'set' : null,
        state: this.state,
        up: this.state === 'up',
        since: this.since ? new Date(this.since).toISOString() : null,
        lastError: this.lastError ? { message: this.lastError.message, at: new Date(this.lastError.at).toISOString() } : null,
        connectionsCounted: this.leases.size,
      },
    };
  }

  private stopTimers(): void {
    for (const t of [this.probe, this.renew, this.refresh]) if (t) clearInterval(t);
    this.probe = this.renew = this.refresh = null;
  }

  async close(): Promise<void> {
    this.stopTimers();
    const c = this.client;
    this.client = null;
    if (c) await c.redis.quit().catch(() => c.redis.disconnect());
  }
}

function parseLockout(address: string, json: string): Lockout {
  const v = JSON.parse(json) as { failures: number; since: number; until: number };
  return { address, failures: Number(v.failures), since: Number(v.since), until: Number(v.until) };
}

/** A URL as shown: user name kept, never a password (validate refuses one anyway). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}
