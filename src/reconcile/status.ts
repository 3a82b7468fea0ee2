// The /status document: what runs, where it came from, how the last attempt went. No secrets:
// only names, counts, fingerprints and times.
import { formatLmtpTarget } from '../config/check-mailboxes.js';
import { specView } from '../plan/plan.js';
import type { LoadProgress } from '../outbound/queue.js';
import type { EventLoopMonitor } from '../ops/event-loop.js';
import type { Lockout } from '../smtp/limits.js';
import type { Storage } from './storage.js';
import type { Runtime } from './transaction.js';

export type ReloadOutcome = 'applied' | 'unchanged' | 'invalid' | 'rolled_back';

/** What /status is made of: a snapshot the controller hands over (status knows no controller). */
export interface StatusSource {
  readonly configPath: string;
  readonly ready: boolean;
  readonly rt: Runtime;
  readonly lastAttempt: LastAttempt | null;
  readonly eventLoop: Pick<EventLoopMonitor, 'worstMs' | 'lastSecondMs'>;
  readonly lockouts: readonly Lockout[];
  /** the spam filter, whether it answers and its last error (null: none configured) */
  readonly spamFilter: unknown;
  /** the Redis of the shared limits (never its password), the hand-off peer, a hand-off in progress */
  readonly cluster: unknown;
}

export interface LastAttempt {
  readonly time: number;
  readonly reason: string;
  readonly outcome: ReloadOutcome;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}

const iso = (t: number | null | undefined) => (t ? new Date(t).toISOString() : null);

export function buildStatus(c: StatusSource): unknown {
  const gen = c.rt.applied;
  const tls = gen?.state.smtp.tls ?? null;
  const listeners = [...(gen?.listeners.values() ?? []), ...c.rt.draining].map((l) => {
    const binding = [...c.rt.pool.values()].find((b) => b.target === l);
    return {
      name: l.name,
      role: l.context.spec.role,
      address: l.spec.address ?? '*',
      port: binding?.boundPort ?? l.spec.port,
      tls: l.spec.tls,
      state: l.state,
      openSessions: l.openSessions,
      certificateExpiry: l.spec.tls !== 'none' && tls ? iso(tls.material.notAfter) : null,
    };
  });
  const accounts = gen?.accounts;
  const relay = gen?.state.relay;
  return {
    configPath: c.configPath,
    ready: c.ready,
    applied: gen ? { generation: gen.number, hash: gen.state.publicHash, appliedAt: iso(c.rt.appliedAt), hostname: gen.state.hostname, domains: gen.state.domains } : null,
    /** what each component is built from (secrets only as "set"): what `mailplane plan NEW --server URL` diffs against */
    specs: gen ? specView(gen.state, 'presence').specs : null,
    lastAttempt: c.lastAttempt ? { ...c.lastAttempt, time: iso(c.lastAttempt.time) } : null,
    listeners,
    tls: tls ? { certFile: tls.certFile, fingerprint256: tls.material.fingerprint256, subject: tls.material.subject, notAfter: iso(tls.material.notAfter) } : null,
    /** the DKIM keys signing now: selectors and public-key fingerprints, never key bytes */
    dkim: gen
      ? {
          keys: gen.signer.spec.keys.map((k) => {
            const m = gen.state.dkim.keys.find((x) => x.domain === k.domain && x.selector === k.selector)?.material;
            return { domain: k.domain, selector: k.selector, algorithm: k.algorithm, bits: m?.bits ?? null, fingerprint: k.fingerprint, record: `${k.selector}._domainkey.${k.domain}` };
          }),
        }
      : null,
    accounts: accounts
      ? {
          backend: accounts.kind,
          ...accounts.health(),
          ...(gen.state.accounts.type === 'local' ? { users: gen.state.accounts.users.length } : { url: gen.state.accounts.ldap.url }),
        }
      : null,
    relay: relay
      ? {
          enabled: relay.enabled,
          host: relay.host,
          port: relay.port,
          secure: relay.secure,
          username: relay.auth?.username ?? null,
          ...(relay.enabled ? gen.transport.health() : {}),
        }
      : null,
    /** where local copies go, the LMTP server and how its last delivery went, Dovecot's passwd-file (never its content) */
    mailboxes: gen
      ? {
          store: gen.state.mailboxes.store,
          lmtp: gen.state.mailboxes.lmtp ? { address: formatLmtpTarget(gen.state.mailboxes.lmtp), ...(gen.lmtp?.health() ?? {}) } : null,
          dovecotPasswdFile: gen.passwd ? { path: gen.passwd.path, users: gen.passwd.users, writtenAt: iso(gen.passwd.writtenAt), checkedAt: iso(gen.passwd.checkedAt) } : null,
        }
      : null,
    delivery: gen ? { transport: gen.transport.kind, ...(gen.transport.kind === 'mx' ? { lastError: gen.transport.health().lastError } : {}) } : null,
    queue: gen
      ? {
          ...queueStatus(gen.storage.stats()),
          load: loadStatus(gen.storage.outbound.progress),
          schedule: gen.storage.outbound.schedule(),
          /** the attempts running now: message, destination, since when, which attempt, the host being tried */
          deliveries: gen.storage.outbound.deliveries().map((d) => ({ ...d, since: iso(d.since) })),
        }
      : null,
    storage: gen
      ? {
          dataDir: gen.state.storage.dataDir,
          messageMemory: { usedBytes: gen.storage.intake.budget.used, budgetBytes: gen.storage.intake.budget.limit },
          unwritten: unwrittenStatus(gen.storage.journal.unwritten()),
        }
      : null,
    /** client addresses refused AUTH and submission after too many failed AUTH attempts */
    authLockouts: c.lockouts.map((l) => ({ address: l.address, failures: l.failures, since: iso(l.since), until: iso(l.until) })),
    spamFilter: c.spamFilter,
    cluster: c.cluster,
    eventLoop: { worstDelayMs: round(c.eventLoop.worstMs), lastSecondWorstDelayMs: round(c.eventLoop.lastSecondMs) },
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** Accepted mail not written into its Maildir (or the queue) yet: how much, and why, per destination. */
function unwrittenStatus(u: ReturnType<Storage['journal']['unwritten']>) {
  return {
    count: u.count,
    oldestAgeSeconds: u.oldest === null ? null : Math.round((Date.now() - u.oldest) / 1000),
    destinations: u.destinations.map((d) => ({ destination: d.destination, count: d.count, since: iso(d.since), error: d.error })),
  };
}

/** How far loading the queue from disk got (and why it failed, if it did). */
function loadStatus(p: LoadProgress | null) {
  if (!p) return null;
  if (p.state === 'failed') return { state: p.state, error: p.error };
  return { state: p.state, entries: p.loaded, ...(p.state === 'loaded' ? { ms: p.ms } : { seconds: Math.round((Date.now() - p.startedAt) / 1000) }) };
}

function queueStatus(s: { active: number; deferred: number; oldestArrival: number | null }) {
  return { active: s.active, deferred: s.deferred, oldestAgeSeconds: s.oldestArrival === null ? null : Math.round((Date.now() - s.oldestArrival) / 1000) };
}
