// A value that must never be printed: logs, /status, errors and JSON all see "[redacted]".
// Its digest (for content hashes and plans) is slow for raw passwords, so a published
// digest cannot be brute-forced quickly; hashes and keys are high-entropy and use sha256.
//
// The slow digest (scrypt, N=2^14: tens of milliseconds) must not block a running server's
// event loop, so the loader computes it off the loop with prepareDigests() before anything
// asks for it; digest() then only looks it up. Only a Secret that was never prepared (one
// built directly, e.g. in a test) falls back to the blocking scryptSync.
import { createHash, scrypt, scryptSync, type ScryptOptions } from 'node:crypto';
import { inspect } from 'node:util';

export type SecretKind = 'password' | 'hash' | 'key';

const SALT = 'mailplane secret digest v1';
const KEYLEN = 32;
const PARAMS: ScryptOptions = { N: 1 << 14, r: 8, p: 1 };

/** value → slow digest, shared by all Secrets, so an unchanged password is not hashed again on reload */
const slowDigests = new Map<string, string>();

/** value → slow digest being computed, so equal passwords prepared together are hashed once */
const pending = new Map<string, Promise<string>>();

function remember(value: string, d: string): void {
  if (slowDigests.size > 64) slowDigests.clear();
  slowDigests.set(value, d);
}

export class Secret {
  readonly #value: string;
  /** the digest, once computed (a private field: writable even after the state is frozen) */
  #digest: string | undefined = undefined;

  constructor(
    value: string,
    readonly kind: SecretKind,
  ) {
    this.#value = value;
  }

  /** The only way to read the value; grep for it to find every use. */
  reveal(): string {
    return this.#value;
  }

  /** A stable digest: equal for equal values, useless for recovering the value. */
  digest(): string {
    if (this.#digest !== undefined) return this.#digest;
    if (this.kind !== 'password') return (this.#digest = createHash('sha256').update(this.#value).digest('hex'));
    let d = slowDigests.get(this.#value);
    if (d === undefined) {
      // Blocking fallback for a Secret that was not prepared; the loader always prepares.
      d = scryptSync(this.#value, SALT, KEYLEN, PARAMS).toString('hex');
      remember(this.#value, d);
    }
    return (this.#digest = d);
  }

  /** Computes the digest without blocking the event loop, so that digest() only looks it up. */
  async prepareDigest(): Promise<void> {
    if (this.#digest !== undefined || this.kind !== 'password') return;
    const value = this.#value;
    const known = slowDigests.get(value);
    if (known !== undefined) {
      this.#digest = known;
      return;
    }
    let running = pending.get(value);
    if (!running) {
      running = new Promise<string>((resolve, reject) => {
        scrypt(value, SALT, KEYLEN, PARAMS, (err, key) => (err ? reject(err) : resolve(key.toString('hex'))));
      }).finally(() => pending.delete(value));
      pending.set(value, running);
    }
    const d = await running;
    remember(value, d);
    this.#digest = d;
  }

  toString(): string {
    return '[redacted]';
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return 'Secret([redacted])';
  }
}

/**
 * Prepares the digest of every Secret found in value (plain objects and arrays are walked),
 * concurrently and off the event loop.
 */
export async function prepareDigests(value: unknown): Promise<void> {
  const found: Secret[] = [];
  const seen = new Set<object>();
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof Secret) {
      found.push(v);
      return;
    }
    if (Array.isArray(v)) {
      v.forEach(walk);
      return;
    }
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto === Object.prototype || proto === null) Object.values(v).forEach(walk);
  };
  walk(value);
  await Promise.all(found.map((s) => s.prepareDigest()));
}
