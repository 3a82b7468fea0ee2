// A value that must never be printed: logs, /status, errors and JSON all see "[redacted]".
// Its digest (for content hashes and plans: "did it change?") is an HMAC under a random key
// made when the process starts and never shown: equal values give equal digests within this
// process, and a digest that leaves it is worthless to whoever tries to guess the value.
import { createHmac, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

export type SecretKind = 'password' | 'hash' | 'key';

const PROCESS_KEY = randomBytes(32);

export class Secret {
  readonly #value: string;
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

  /** Equal for equal values in this process; keyed, so useless for recovering the value. */
  digest(): string {
    this.#digest ??= createHmac('sha256', PROCESS_KEY).update(this.#value).digest('hex');
    return this.#digest;
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
