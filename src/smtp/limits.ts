// Abuse limits that outlive sessions and reloads: failed-AUTH lockout per client address,
// a throttle per attacked user name, and concurrent connections per client address.
import { unmapV4 } from '../config/cidr.js';

export interface AuthLimits {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
}

const MAX_TRACKED = 100_000;

export class AuthLimiter {
  private readonly failures = new Map<string, number[]>(); // ip → failure times in window
  private readonly lockedUntil = new Map<string, number>();
  private readonly userFailures = new Map<string, number[]>(); // login → failure times

  constructor(private readonly now: () => number = Date.now) {}

  isLocked(ip: string): boolean {
    const key = unmapV4(ip);
    const until = this.lockedUntil.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.lockedUntil.delete(key);
    return false;
  }

  /** Records a failure; true when the address is now locked out. */
  recordFailure(ip: string, login: string, limits: AuthLimits): boolean {
    const key = unmapV4(ip);
    const now = this.now();
    const list = prune(this.failures.get(key) ?? [], now - limits.windowMs);
    list.push(now);
    this.bounded(this.failures).set(key, list);
    const user = login.toLowerCase();
    const ulist = prune(this.userFailures.get(user) ?? [], now - limits.windowMs);
    ulist.push(now);
    this.bounded(this.userFailures).set(user, ulist);
    if (list.length >= limits.maxFailures) {
      this.bounded(this.lockedUntil).set(key, now + limits.lockoutMs);
      this.failures.delete(key);
      return true;
    }
    return false;
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
