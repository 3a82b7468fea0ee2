// Abuse limits that outlive sessions and reloads: failed-AUTH lockout per client address,
// a throttle per attacked user name, and concurrent connections per client address
// (sending rates are in send-rate.ts).
import { unmapV4 } from '../config/cidr.js';

export interface AuthLimits {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
}

/** An address refused AUTH (and submission connections) until `until`. */
export interface Lockout {
  readonly address: string;
  readonly failures: number;
  readonly since: number;
  readonly until: number;
}

const MAX_TRACKED = 100_000;

/**
 * Failed AUTH attempts. Per client address they lead to a lockout; per login name they slow
 * down further attempts (a password guessed from many addresses). Trusted addresses (exempt,
 * LAN) are never locked out: their failures count against the login only. One instance lives
 * as long as the process, so reloads keep every count and lockout.
 */
export class AuthLimiter {
  private readonly failures = new Map<string, number[]>(); // ip → failure times in window
  private readonly locked = new Map<string, Lockout>();
  private readonly userFailures = new Map<string, number[]>(); // login → failure times

  constructor(private readonly now: () => number = Date.now) {}

  isLocked(ip: string): boolean {
    return this.lockout(ip) !== null;
  }

  lockout(ip: string): Lockout | null {
    const key = unmapV4(ip);
    const l = this.locked.get(key);
    if (l === undefined) return null;
    if (l.until > this.now()) return l;
    this.locked.delete(key);
    return null;
  }

  /** Records a failure; returns the lockout when this failure starts one. */
  recordFailure(ip: string, login: string, limits: AuthLimits, trusted: boolean): Lockout | null {
    const now = this.now();
    const user = login.toLowerCase();
    const ulist = prune(this.userFailures.get(user) ?? [], now - limits.windowMs);
    ulist.push(now);
    this.bounded(this.userFailures).set(user, ulist);
    if (trusted) return null;
    const key = unmapV4(ip);
    const list = prune(this.failures.get(key) ?? [], now - limits.windowMs);
    list.push(now);
    this.bounded(this.failures).set(key, list);
    if (list.length < limits.maxFailures) return null;
    const lockout: Lockout = { address: key, failures: list.length, since: now, until: now + limits.lockoutMs };
    this.bounded(this.locked).set(key, lockout);
    this.failures.delete(key);
    return lockout;
  }

  /**
   * Extra delay before answering an AUTH for a login that is failing from many addresses:
   * grows with the failures in the window beyond maxFailures, capped at 5 s.
   */
  userDelayMs(login: string, limits: AuthLimits): number {
    const list = prune(this.userFailures.get(login.toLowerCase()) ?? [], this.now() - limits.windowMs);
    const excess = list.length - limits.maxFailures;
    return excess > 0 ? Math.min(5000, 250 * excess) : 0;
  }

  /** The lockouts in force, oldest first. */
  active(): Lockout[] {
    const now = this.now();
    for (const [k, l] of this.locked) if (l.until <= now) this.locked.delete(k);
    return [...this.locked.values()];
  }

  /** Lifts the lockout of one address (and forgets its failures), or every lockout; returns how many were lifted. */
  unlock(address: string | null): number {
    const live = this.active();
    if (address === null) {
      this.locked.clear();
      this.failures.clear();
      return live.length;
    }
    const key = unmapV4(address);
    this.failures.delete(key);
    return this.locked.delete(key) ? 1 : 0;
  }

  private bounded<V>(m: Map<string, V>): Map<string, V> {
    if (m.size >= MAX_TRACKED) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
    return m;
  }
}

function prune(times: number[], since: number): number[] {
  let i = 0;
  while (i < times.length && times[i]! <= since) i++;
  return i ? times.slice(i) : times;
}

export class ClientConnections {
  private readonly open = new Map<string, number>();

  /** Counts a new connection; false (and nothing counted) when the address is at its limit. */
  acquire(ip: string, max: number): boolean {
    const key = unmapV4(ip);
    const n = this.open.get(key) ?? 0;
    if (n >= max) return false;
    this.open.set(key, n + 1);
    return true;
  }

  release(ip: string): void {
    const key = unmapV4(ip);
    const n = (this.open.get(key) ?? 1) - 1;
    if (n <= 0) this.open.delete(key);
    else this.open.set(key, n);
  }
}
