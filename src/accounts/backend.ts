// What the SMTP policy asks of an account store, local or directory.

export type AuthOutcome =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly reason: 'invalid' }
  /** the store could not answer (directory down or slow): a temporary failure */
  | { readonly ok: false; readonly reason: 'unavailable'; readonly detail: string };

export type RecipientOutcome =
  { readonly found: true; readonly user: string } | { readonly found: false; readonly unavailable: false } | { readonly found: false; readonly unavailable: true; readonly detail: string };

/** The local parts a user may send as, or: the store could not answer (a temporary failure). */
export type SenderOutcome = { readonly available: true; readonly localParts: readonly string[] } | { readonly available: false; readonly detail: string };

export interface AccountBackend {
  readonly kind: 'local' | 'ldap';
  /** login is a user name or name@domain (the domain already checked to be ours, or absent) */
  authenticate(login: string, password: string): Promise<AuthOutcome>;
  /** local part of an address at one of our domains → the mailbox owner */
  findRecipient(localPart: string): Promise<RecipientOutcome>;
  /** every local part (name or alias) a user may use as sender, lower case */
  senderLocalParts(user: string): Promise<SenderOutcome>;
  /** state for /status and metrics */
  /** up: the last request (or check) answered; failures: failed requests and checks so far */
  health(): { up: boolean; detail?: string; failures?: number };
  close(): Promise<void>;
}
