// Accounts from a directory (OpenLDAP, Active Directory, FreeIPA). Searches run on a small pool
// of connections bound as the service account; a login is checked by binding as the user's DN
// on a connection of its own. A slow or absent directory is a temporary failure, never an
// open door: AUTH answers 454, RCPT 451, MAIL's sender check 451. Passwords are never cached;
// found recipients are, briefly.
import type { ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import { Client, InvalidCredentialsError } from 'ldapts';
import type { LdapSpec } from '../plan/specs.js';
import type { AccountBackend, AuthOutcome, RecipientOutcome, SenderOutcome } from './backend.js';

const MAILBOX_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const CACHE_MAX = 10_000;
/** A name the check looks up: nobody has it, and finding no one is an answer. */
const CHECK_NAME = 'mailplane-health-check';

/** RFC 4515: a value inside a filter cannot close it, widen it with * or inject NUL. */
export function escapeFilterValue(v: string): string {
  return v.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

class Unavailable extends Error {}

export class LdapAccounts implements AccountBackend {
  /** How often a directory that failed is checked until it answers: health follows the directory, not the last lookup (tests shorten it). */
  static recheckMs = 30_000;
  readonly kind = 'ldap' as const;
  private readonly pool: (Client | null)[];
  private readonly binding: (Promise<Client> | null)[];
  private next = 0;
  private readonly cache = new Map<string, { user: string; expires: number }>();
  private readonly nameAttribute: string | null;
  private up = true;
  private detail: string | undefined;
  private closed = false;
  /** failed requests and checks so far (mailplane_accounts_backend_failures_total) */
  private failures = 0;
  private recheck: NodeJS.Timeout | null = null;

  constructor(
    private readonly s: LdapSpec,
    private readonly domains: readonly string[],
  ) {
    this.pool = Array.from({ length: s.poolSize }, () => null);
    this.binding = Array.from({ length: s.poolSize }, () => null);
    this.nameAttribute = s.userFilter.match(/\(([A-Za-z][\w-]*)=\{user\}\)/)?.[1] ?? null;
  }

  async authenticate(login: string, password: string): Promise<AuthOutcome> {
    const name = login.toLowerCase();
    // An empty password would be an anonymous bind, which "succeeds".
    if (!password || !name || /[\0\r\n]/.test(name) || name.length > 256) return { ok: false, reason: 'invalid' };
    let entry: { dn: string; user: string } | null;
    try {
      entry = await this.findOne(this.userFilter(name), name);
    } catch (e) {
      return { ok: false, reason: 'unavailable', detail: (e as Error).message };
    }
    if (!entry) {
      // the same round trips as a wrong password, so timing does not tell who exists
      const decoy = this.newClient();
      await this.bounded(
        this.connectTls(decoy).then(() => decoy.bind(`cn=mailplane-no-such-user,${this.s.userBase}`, password)),
        'bind',
      ).catch(() => {});
      await decoy.unbind().catch(() => {});
      return { ok: false, reason: 'invalid' };
    }
    const client = this.newClient();
    try {
      await this.bounded(
        this.connectTls(client).then(() => client.bind(entry.dn, password)),
        'bind',
      );
      this.markUp();
      return { ok: true, user: entry.user };
    } catch (e) {
      if (e instanceof InvalidCredentialsError) return { ok: false, reason: 'invalid' };
      this.markDown(e as Error);
      return { ok: false, reason: 'unavailable', detail: (e as Error).message };
    } finally {
      await client.unbind().catch(() => {});
    }
  }

  async findRecipient(localPart: string): Promise<RecipientOutcome> {
    const key = localPart.toLowerCase();
    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now()) return { found: true, user: hit.user };
    if (/[\0\r\n]/.test(key) || key.length > 256) return { found: false, unavailable: false };
    const aliases = this.s.aliasAttributes.flatMap((a) => this.domains.map((d) => `(${a}=${escapeFilterValue(`${key}@${d}`)})`));
    const filter = aliases.length ? `(|${this.userFilter(key)}${aliases.join('')})` : this.userFilter(key);
    try {
      const entry = await this.findOne(filter, key);
      if (!entry) return { found: false, unavailable: false };
      if (this.s.cacheTtlMs > 0) {
        if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
        this.cache.set(key, { user: entry.user, expires: Date.now() + this.s.cacheTtlMs });
      }
      return { found: true, user: entry.user };
    } catch (e) {
      return { found: false, unavailable: true, detail: (e as Error).message };
    }
  }

  async senderLocalParts(user: string): Promise<SenderOutcome> {
    try {
      const entry = await this.search(this.userFilter(user), [...this.s.aliasAttributes]);
      const own = new Set<string>([user]);
      for (const e of entry) {
        for (const a of this.s.aliasAttributes) {
          for (const v of values(e[a])) {
            const at = v.lastIndexOf('@');
            if (at > 0 && this.domains.includes(v.slice(at + 1).toLowerCase())) own.add(v.slice(0, at).toLowerCase());
          }
        }
      }
      return { available: true, localParts: [...own] };
    } catch (e) {
      return { available: false, detail: (e as Error).message };
    }
  }

  health(): { up: boolean; detail?: string; failures: number } {
    return this.up ? { up: true, failures: this.failures } : { up: false, detail: this.detail, failures: this.failures };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = null;
    await Promise.all(this.pool.flatMap((c) => (c ? [c.unbind().catch(() => {})] : [])));
    this.pool.fill(null);
  }

  private userFilter(name: string): string {
    return this.s.userFilter.split('{user}').join(escapeFilterValue(name));
  }

  /**
   * The single entry the filter matches (none, or ambiguous, is "no such user"). Its mailbox is
   * named by the attribute the filter tests (uid, sAMAccountName…), else by the name asked for.
   */
  private async findOne(filter: string, asked: string): Promise<{ dn: string; user: string } | null> {
    const attrs = this.nameAttribute ? [this.nameAttribute] : ['1.1'];
    const entries = await this.search(filter, attrs);
    if (entries.length !== 1) return null;
    const e = entries[0]!;
    const raw = this.nameAttribute ? values(e[this.nameAttribute])[0] : undefined;
    const user = (raw ?? asked).toLowerCase();
    // the mailbox name becomes a folder: refuse anything that is not a plain name
    if (!MAILBOX_NAME.test(user)) return null;
    return { dn: String(e.dn), user };
  }

  private async search(filter: string, attributes: string[]): Promise<Record<string, unknown>[]> {
    const slot = this.next++ % this.pool.length;
    try {
      const client = await this.searchClient(slot);
      const r = await this.bounded(client.search(this.s.userBase, { scope: 'sub', filter, attributes, sizeLimit: 2 }), 'search');
      this.markUp();
      return r.searchEntries;
    } catch (e) {
      // A size-limit error means more than one match: ambiguous, treated as no such user.
      if ((e as { code?: number }).code === 4) return [{}, {}];
      this.drop(slot);
      this.markDown(e as Error);
      throw e instanceof Unavailable ? e : new Unavailable(`directory ${this.s.url}: ${(e as Error).message}`);
    }
  }

  private searchClient(slot: number): Promise<Client> {
    const existing = this.pool[slot];
    if (existing?.isConnected) return Promise.resolve(existing);
    this.binding[slot] ??= (async () => {
      const c = this.newClient();
      try {
        await this.bounded(this.connectTls(c), 'connect');
        if (this.s.bindDn) await this.bounded(c.bind(this.s.bindDn, this.s.bindPassword?.reveal() ?? ''), 'bind');
      } catch (e) {
        await c.unbind().catch(() => {});
        throw e;
      }
      if (this.closed) await c.unbind().catch(() => {});
      this.pool[slot] = c;
      return c;
    })().finally(() => {
      this.binding[slot] = null;
    });
    return this.binding[slot];
  }

  private drop(slot: number): void {
    const c = this.pool[slot];
    this.pool[slot] = null;
    void c?.unbind().catch(() => {});
  }

  private newClient(): Client {
    // tlsOptions only for ldaps://: given for ldap://, ldapts would speak TLS at once and StartTLS fails
    const ldaps = this.s.url.startsWith('ldaps://');
    return new Client({ url: this.s.url, timeout: this.s.timeoutMs, connectTimeout: this.s.timeoutMs, ...(ldaps ? { tlsOptions: this.tlsOptions() } : {}) });
  }

  private async connectTls(c: Client): Promise<void> {
    if (this.s.startTls) await c.startTLS(this.tlsOptions());
  }

  private tlsOptions(): ConnectionOptions {
    const host = new URL(this.s.url).hostname.replace(/^\[|\]$/g, '');
    return {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      ...(isIP(host) ? {} : { servername: host }),
      ...(this.s.caPem ? { ca: [this.s.caPem] } : {}),
    };
  }

  /** Every directory operation is bounded, whatever the library does with its own timeouts. */
  private bounded<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Unavailable(`directory ${what} timed out after ${this.s.timeoutMs} ms`)), this.s.timeoutMs);
    });
    return Promise.race([p, limit]).finally(() => clearTimeout(timer));
  }

  private markUp(): void {
    this.up = true;
    this.detail = undefined;
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = null;
  }

  /**
   * A request failed: down until one succeeds. While down the directory is checked every
   * recheckMs (a search for a name nobody has), so that on a quiet night one failed lookup does
   * not leave it reported down for hours: it is up again as soon as it answers.
   */
  private markDown(e: Error): void {
    if (this.closed) return; // a check that ended after close(): nobody asks any more
    this.up = false;
    this.detail = e.message;
    this.failures++;
    if (this.recheck || this.closed) return;
    this.recheck = setInterval(() => {
      if (this.closed) return;
      this.search(this.userFilter(CHECK_NAME), ['1.1']).catch(() => {}); // marks up or down
    }, LdapAccounts.recheckMs);
    this.recheck.unref();
  }
}

function values(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
}
