// Users from the config and usersFile. Hashes are verified off the event loop; an unknown
// user costs the same hash work as a wrong password, so timing does not reveal who exists:
// the password is checked against a real user's hash (same scheme, same cost) and refused.
import type { LocalUser } from '../config/desired-state.js';
import type { AccountBackend, AuthOutcome, RecipientOutcome, SenderOutcome } from './backend.js';
import { hashPassword, verifyPassword } from './passwords.js';

let decoy: Promise<string> | undefined;

export class LocalAccounts implements AccountBackend {
  readonly kind = 'local' as const;
  private readonly users = new Map<string, LocalUser>();
  private readonly owners = new Map<string, string>(); // local part (name or alias) → user
  private readonly list: readonly LocalUser[];

  constructor(users: readonly LocalUser[]) {
    this.list = users;
    for (const u of users) {
      this.users.set(u.name, u);
      this.owners.set(u.name, u.name);
      for (const a of u.aliases) this.owners.set(a, u.name);
    }
  }

  async authenticate(login: string, password: string): Promise<AuthOutcome> {
    const user = this.users.get(login.toLowerCase());
    if (!user || !password) {
      const stand = this.standIn(login);
      if (stand) await verifyPassword(password || 'x', stand.passwordHash.reveal(), stand.scheme);
      else await verifyPassword(password || 'x', await (decoy ??= hashPassword('decoy password for unknown users', 'argon2id')), 'argon2id');
      return { ok: false, reason: 'invalid' };
    }
    const ok = await verifyPassword(password, user.passwordHash.reveal(), user.scheme);
    return ok ? { ok: true, user: user.name } : { ok: false, reason: 'invalid' };
  }

  /** The user whose hash an unknown login is checked against: fixed per login, spread over users. */
  private standIn(login: string): LocalUser | undefined {
    if (!this.list.length) return undefined;
    let h = 0;
    for (let i = 0; i < login.length; i++) h = (h * 31 + login.charCodeAt(i)) >>> 0;
    return this.list[h % this.list.length];
  }

  findRecipient(localPart: string): Promise<RecipientOutcome> {
    const user = this.owners.get(localPart.toLowerCase());
    return Promise.resolve(user ? { found: true, user } : { found: false, unavailable: false });
  }

  senderLocalParts(user: string): Promise<SenderOutcome> {
    const u = this.users.get(user);
    return Promise.resolve({ available: true, localParts: u ? [u.name, ...u.aliases] : [] });
  }

  health(): { up: boolean } {
    return { up: true };
  }

  async close(): Promise<void> {}
}
