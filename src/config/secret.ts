// A value that must never be printed: logs, /status, errors and JSON all see "[redacted]".
// Its digest (for content hashes and plans) is slow for raw passwords, so a published
// digest cannot be brute-forced quickly; hashes and keys are high-entropy and use sha256.
import { createHash, scryptSync } from 'node:crypto';
import { inspect } from 'node:util';

export type SecretKind = 'password' | 'hash' | 'key';

const slowDigests = new Map<string, string>();

export class Secret {
  readonly #value: string;

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
    if (this.kind !== 'password') return createHash('sha256').update(this.#value).digest('hex');
    let d = slowDigests.get(this.#value);
    if (!d) {
      d = scryptSync(this.#value, 'mailplane secret digest v1', 32, { N: 1 << 14, r: 8, p: 1 }).toString('hex');
      if (slowDigests.size > 64) slowDigests.clear();
      slowDigests.set(this.#value, d);
    }
    return d;
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
