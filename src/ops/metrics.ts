// Every Prometheus metric mailplane exports, defined in this one module. Labels never carry
// an address or a user name: only listener names, fixed reasons and results.
import { readFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// prom-client's defaults that `promtool check metrics` rejects (gauges named *_total).
const DROPPED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export const REJECTION_REASONS = [
  'relay_denied',
  'unknown_recipient',
  'auth_required',
  'auth_failed',
  'sender_mismatch',
  'size',
  'line_length',
  'tls_required',
  'rate_limited',
  'storage',
  'too_many_recipients',
  'connection_limit',
  'temporary_failure',
  'send_rate',
  'rejected_recipients',
  'mail_loop',
  'syntax',
  'dmarc',
  'own_domain',
  'spam',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

export class Metrics {
  readonly registry = new Registry();

  readonly smtpConnections = new Counter({
    name: 'mailplane_smtp_connections_total',
    help: 'SMTP connections accepted, by listener.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly smtpSessionsActive = new Gauge({
    name: 'mailplane_smtp_sessions_active',
    help: 'SMTP sessions currently open, by listener.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly smtpMessages = new Counter({
    name: 'mailplane_smtp_messages_total',
    help: 'Messages at the end of DATA, by listener and result (accepted, rejected).',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  readonly smtpRejections = new Counter({
    name: 'mailplane_smtp_rejections_total',
    help: 'SMTP commands or connections refused, by listener and reason.',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly smtpAuth = new Counter({
    name: 'mailplane_smtp_auth_total',
    help: 'AUTH attempts, by listener and result (success, failure, error).',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  /** read at every scrape: the lockouts in force (set by whoever owns the limiter) */
  activeLockouts: () => number = () => 0;
  readonly authLockouts: Gauge = new Gauge({
    name: 'mailplane_smtp_auth_lockouts_active',
    help: 'Client addresses locked out after too many failed AUTH attempts (refused AUTH and submission connections).',
    registers: [this.registry],
    collect: () => this.authLockouts.set(this.activeLockouts()),
  });
  readonly smtpMessageSize = new Histogram({
    name: 'mailplane_smtp_message_size_bytes',
    help: 'Size of accepted messages, by listener.',
    labelNames: ['listener'] as const,
    buckets: [1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
    registers: [this.registry],
  });
  readonly delivery = new Counter({
    name: 'mailplane_delivery_total',
    help: 'Delivery attempts per recipient, by transport (local: written into the Maildir; relay, mx; lmtp: local mail delivered to the LMTP server; handoff: handed to another replica while this one leaves) and result (delivered, deferred, bounced, failed).',
    labelNames: ['transport', 'result'] as const,
    registers: [this.registry],
  });
  readonly inboundAuth = new Counter({
    name: 'mailplane_inbound_auth_total',
    help: 'Authentication checks of mail from unauthenticated, untrusted mx clients, by method (spf, dkim, dmarc, arc) and result (RFC 8601: pass, fail, softfail, neutral, none, temperror, permerror, policy). One per DKIM signature.',
    labelNames: ['method', 'result'] as const,
    registers: [this.registry],
  });
  readonly inboundActions = new Counter({
    name: 'mailplane_inbound_auth_actions_total',
    help: "What inbound.checks did to messages that failed a rule, by rule (dmarc: the sender domain's enforced policy; own_domain: unauthenticated mail claiming one of our domains) and action (reject: refused with 550 5.7.1; junk: filed in the junk folder; tempfail: 451 4.7.0 because the checks could not finish; arc_override: delivered because a trusted ARC sealer vouched for it).",
    labelNames: ['rule', 'action'] as const,
    registers: [this.registry],
  });
  readonly mtaSts = new Counter({
    name: 'mailplane_mta_sts_total',
    help: 'Direct MX delivery attempts to domains with an MTA-STS policy (delivery.mtaSts), by result: enforced (sent under an enforce policy: TLS with a valid certificate to an MX the policy names), deferred (the enforce policy could not be met: no MX it names, no STARTTLS, an invalid certificate; the mail waits), testing_ok, testing_violation (a testing policy that enforcement would have failed; delivered anyway), fetch_error (the policy could not be fetched; none cached, delivered as without one).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly spamScans = new Counter({
    name: 'mailplane_spam_scans_total',
    help: 'Messages given to the spam filter (inbound.spamFilter), by the action it decided (no_action, greylist, add_header, rewrite_subject, soft_reject, reject), or error (unreachable, too slow, an unusable answer: onError applied) and too_big (over maxSize: not scanned).',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly spamScanDuration = new Histogram({
    name: 'mailplane_spam_scan_duration_seconds',
    help: 'Time from sending a message to the spam filter to its verdict (errors included).',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30],
    registers: [this.registry],
  });
  readonly spamFilterUp = new Gauge({
    name: 'mailplane_spam_filter_up',
    help: 'Whether the spam filter answered the last scan (or probe): 1 yes, 0 no, by type (rspamd). Absent when no spam filter is configured.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly inboundAuthForged = new Counter({
    name: 'mailplane_inbound_auth_forged_headers_total',
    help: 'Authentication-Results header fields claiming our host name that arrived from untrusted clients and were removed.',
    registers: [this.registry],
  });
  readonly inboundAuthSkipped = new Counter({
    name: 'mailplane_inbound_auth_skipped_total',
    help: 'Messages due for inbound authentication checks that got none: error (the checker failed; the message is delivered without checks).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly bodiesSpooled = new Counter({
    name: 'mailplane_message_bodies_spooled_total',
    help: 'Messages whose body went to a spool file while it was received (larger than 64 KiB, or the memory budget was spent).',
    registers: [this.registry],
  });
  /** set by the serving generation: the memory budget of its data dir */
  bodyMemorySource: (() => { used: number; limit: number }) | null = null;
  readonly bodyMemory: Gauge = new Gauge({
    name: 'mailplane_message_memory_bytes',
    help: 'Bytes of message bodies held in memory while they are received, across all sessions (bounded by storage.memoryBudget).',
    registers: [this.registry],
    collect: (): void => this.bodyMemory.set(this.bodyMemorySource?.().used ?? 0),
  });
  readonly bodyMemoryBudget: Gauge = new Gauge({
    name: 'mailplane_message_memory_budget_bytes',
    help: 'storage.memoryBudget of the serving config: bodies beyond it spool to disk.',
    registers: [this.registry],
    collect: (): void => this.bodyMemoryBudget.set(this.bodyMemorySource?.().limit ?? 0),
  });
  readonly eventLoopDelay = new Histogram({
    name: 'mailplane_event_loop_delay_seconds',
    help: 'The longest event-loop delay of each second (perf_hooks.monitorEventLoopDelay): how long a ready socket or timer waited at worst.',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  /** set by the serving generation: where queue gauges read from */
  queueSource: (() => { active: number; deferred: number; oldestArrival: number | null }) | null = null;
  relaySource: (() => boolean | null) | null = null;
  /** set by the serving generation: whether the LMTP server took the last delivery (null: none configured, or none tried yet) */
  lmtpSource: (() => boolean | null) | null = null;

  readonly queueMessages = new Gauge({
    name: 'mailplane_queue_messages',
    help: 'Messages in the outbound queue, by state (active: new or being delivered; deferred: waiting for a retry).',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: () => {
      const s = this.queueSource?.();
      this.queueMessages.set({ state: 'active' }, s?.active ?? 0);
      this.queueMessages.set({ state: 'deferred' }, s?.deferred ?? 0);
    },
  });
  readonly queueOldestAge = new Gauge({
    name: 'mailplane_queue_oldest_message_age_seconds',
    help: 'Age of the oldest message in the outbound queue (0 when empty).',
    registers: [this.registry],
    collect: () => {
      const oldest = this.queueSource?.().oldestArrival ?? null;
      this.queueOldestAge.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    },
  });
  /** set by the serving generation: accepted mail not written into its Maildir yet */
  localDeliverySource: (() => { count: number; oldest: number | null }) | null = null;
  readonly localDeliveriesPending: Gauge = new Gauge({
    name: 'mailplane_local_deliveries_pending',
    help: 'Copies of accepted messages not written into their Maildir yet (a mailbox that cannot be written): they wait in the journal and are retried with backoff.',
    registers: [this.registry],
    collect: (): void => this.localDeliveriesPending.set(this.localDeliverySource?.().count ?? 0),
  });
  readonly localDeliveriesOldestAge: Gauge = new Gauge({
    name: 'mailplane_local_deliveries_oldest_pending_age_seconds',
    help: 'How long the oldest copy waiting to be written into its Maildir has waited (0 when none waits).',
    registers: [this.registry],
    collect: (): void => {
      const oldest = this.localDeliverySource?.().oldest ?? null;
      this.localDeliveriesOldestAge.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    },
  });
  readonly deliveryDuration = new Histogram({
    name: 'mailplane_delivery_duration_seconds',
    help: 'Time of one delivery attempt through a transport (relay, mx, lmtp).',
    labelNames: ['transport'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly relayUp = new Gauge({
    name: 'mailplane_relay_up',
    help: 'Whether the last attempt through the relay, or the last check of it, reached it and was not refused for its credentials (1) or not (0); while it is down it is checked every minute, so this follows the relay rather than the last message. Absent without a relay.',
    registers: [this.registry],
    collect: () => {
      const up = this.relaySource?.() ?? null;
      this.relayUp.reset();
      if (up !== null) this.relayUp.set(up ? 1 : 0);
    },
  });

  /** set by the serving generation: failed attempts and checks of the relay so far (null: no relay) */
  relayFailuresSource: (() => number | null) | null = null;
  private relayFailuresSeen = 0;
  readonly relayFailures: Counter = new Counter({
    name: 'mailplane_relay_failures_total',
    help: 'Delivery attempts through the relay that did not reach it or were refused for the credentials, and failed checks of it while it is down (every minute).',
    registers: [this.registry],
    collect: (): void => {
      this.relayFailuresSeen = addSince(this.relayFailures, this.relayFailuresSource?.() ?? null, this.relayFailuresSeen);
    },
  });

  readonly lmtpUp = new Gauge({
    name: 'mailplane_lmtp_up',
    help: 'Whether the last delivery to the LMTP server (mailboxes.lmtp) reached it (1) or not (0: connection refused, socket missing, no greeting); absent without an LMTP server or before its first delivery.',
    registers: [this.registry],
    collect: () => {
      const up = this.lmtpSource?.() ?? null;
      this.lmtpUp.reset();
      if (up !== null) this.lmtpUp.set(up ? 1 : 0);
    },
  });

  /** set by the shared limits: whether Redis answers (null: no cluster.redis) */
  clusterRedisSource: (() => { up: boolean } | null) | null = null;
  readonly clusterRedisUp = new Gauge({
    name: 'mailplane_cluster_redis_up',
    help: 'Whether Redis (cluster.redis) answers, so that the abuse limits are shared across replicas (1), or not (0: this replica decides on its own counters). Also 0 without cluster.redis (an unlabelled gauge is always exported): mailplane_cluster_redis_state_changes_total rises only with cluster.redis set.',
    registers: [this.registry],
    collect: () => {
      const s = this.clusterRedisSource?.() ?? null;
      this.clusterRedisUp.reset();
      if (s) this.clusterRedisUp.set(s.up ? 1 : 0);
    },
  });
  readonly clusterRedisChanges = new Counter({
    name: 'mailplane_cluster_redis_state_changes_total',
    help: 'Changes of whether Redis (cluster.redis) answers, by the state entered (up, down); each is logged.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly clusterDecisions = new Counter({
    name: 'mailplane_cluster_limit_decisions_total',
    help: "Abuse-limit decisions (lockout, sending rate, connections per client, harvest) with cluster.redis, by where they were taken: redis (shared), local (this replica's own counters: Redis down or slower than cluster.redis.timeout).",
    labelNames: ['store'] as const,
    registers: [this.registry],
  });
  readonly handoffActive = new Gauge({
    name: 'mailplane_handoff_active',
    help: 'Whether this replica is handing its queue to a peer (mailplane queue handoff): 1 from the request until the queue is empty and the process exits.',
    registers: [this.registry],
  });

  readonly accountsLookupDuration = new Histogram({
    name: 'mailplane_accounts_lookup_duration_seconds',
    help: 'Time the account backend took to answer, by backend (local, ldap) and operation (auth, recipient, sender).',
    labelNames: ['backend', 'operation'] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  /** set by the serving generation: the account backend whose state is reported, and its failures so far */
  accountsSource: (() => { backend: string; up: boolean; failures?: number }) | null = null;
  private accountsFailuresSeen = 0;
  readonly accountsBackendUp = new Gauge({
    name: 'mailplane_accounts_backend_up',
    help: 'Whether the account backend of the serving config answered its last request, or the last check of it, (1) or not (0); a directory that failed is checked every 30 s until it answers, so this follows the directory rather than the last lookup.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
    collect: () => {
      const s = this.accountsSource?.();
      this.accountsBackendUp.reset();
      if (s) this.accountsBackendUp.set({ backend: s.backend }, s.up ? 1 : 0);
    },
  });
  readonly accountsBackendFailures: Counter = new Counter({
    name: 'mailplane_accounts_backend_failures_total',
    help: 'Requests to the account backend that failed (unreachable, timed out, refused the service account), and failed checks of it while it is down, by backend.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
    collect: (): void => {
      const s = this.accountsSource?.();
      if (!s) return;
      this.accountsBackendFailures.inc({ backend: s.backend }, 0);
      this.accountsFailuresSeen = addSince(this.accountsBackendFailures.labels({ backend: s.backend }), s.failures ?? 0, this.accountsFailuresSeen);
    },
  });

  /** set by the serving generation: the data dir, whose file system is reported */
  dataDirSource: (() => string) | null = null;
  readonly volumeSize: Gauge = new Gauge({
    name: 'mailplane_storage_volume_size_bytes',
    help: 'Size of the file system that holds storage.dataDir (the queue, the journal, the Maildirs).',
    registers: [this.registry],
    collect: async (): Promise<void> => {
      const fs = await volumeOf(this.dataDirSource?.() ?? null);
      this.volumeSize.reset();
      if (fs) this.volumeSize.set(fs.size);
    },
  });
  readonly volumeAvailable: Gauge = new Gauge({
    name: 'mailplane_storage_volume_available_bytes',
    help: 'Bytes of the file system that holds storage.dataDir that mailplane may still write (statfs f_bavail).',
    registers: [this.registry],
    collect: async (): Promise<void> => {
      const fs = await volumeOf(this.dataDirSource?.() ?? null);
      this.volumeAvailable.reset();
      if (fs) this.volumeAvailable.set(fs.available);
    },
  });
  readonly memoryLimit: Gauge = new Gauge({
    name: 'mailplane_memory_limit_bytes',
    help: "The memory limit of the process's cgroup (a container's resources.limits.memory; cgroup v2 memory.max or v1 memory.limit_in_bytes), 0 when there is none: compare process_resident_memory_bytes with it.",
    registers: [this.registry],
    collect: (): void => this.memoryLimit.set(cgroupMemoryLimit()),
  });

  readonly configLastReloadSuccessful = new Gauge({
    name: 'mailplane_config_last_reload_successful',
    help: 'Whether the last attempt to load and apply the config succeeded (1) or not (0).',
    registers: [this.registry],
  });
  readonly configLastReloadSuccessTimestamp = new Gauge({
    name: 'mailplane_config_last_reload_success_timestamp_seconds',
    help: 'Time of the last successful config apply, in seconds since the epoch.',
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'mailplane_config_reloads_total',
    help: 'Reconcile attempts by outcome (applied, unchanged, invalid, rolled_back).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'mailplane_reconcile_duration_seconds',
    help: 'Time from reading the config to the end of apply.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly configGenerationInfo = new Gauge({
    name: 'mailplane_config_generation_info',
    help: 'The content hash of the applied config, as the label hash (value 1).',
    labelNames: ['hash'] as const,
    registers: [this.registry],
  });
  readonly configGeneration = new Gauge({
    name: 'mailplane_config_generation',
    help: 'The applied config generation: 1 at start-up, one more for every applied change.',
    registers: [this.registry],
  });
  readonly listenerUp = new Gauge({
    name: 'mailplane_listener_up',
    help: 'Whether a configured listener is bound and serving (1) or not (0).',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly tlsCertificateExpiry = new Gauge({
    name: 'mailplane_tls_certificate_expiry_timestamp_seconds',
    help: 'Expiry of the certificate a TLS listener serves, in seconds since the epoch.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  /** the domain label is only ever one of dkim.keys[].domain (ours, configured): bounded */
  readonly dkimSignatures = new Counter({
    name: 'mailplane_dkim_signatures_total',
    help: 'Outbound messages signed with DKIM (with every key of their From: domain), by signing domain.',
    labelNames: ['domain'] as const,
    registers: [this.registry],
  });
  readonly dkimSigningFailures = new Counter({
    name: 'mailplane_dkim_signing_failures_total',
    help: 'DKIM signatures that could not be made (one per key that failed); the message leaves without that signature.',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    for (const name of DROPPED_DEFAULTS) this.registry.removeSingleMetric(name);
    // inbound checks and their actions start at zero, so the dashboard and alert see them before the first event
    for (const method of ['spf', 'dkim', 'dmarc', 'arc']) for (const result of ['pass', 'fail', 'temperror']) this.inboundAuth.inc({ method, result }, 0);
    for (const rule of ['dmarc', 'own_domain']) for (const action of ['reject', 'junk', 'tempfail', 'arc_override']) this.inboundActions.inc({ rule, action }, 0);
    for (const action of ['no_action', 'greylist', 'add_header', 'rewrite_subject', 'soft_reject', 'reject', 'error', 'too_big']) this.spamScans.inc({ action }, 0);
    for (const result of ['enforced', 'deferred', 'testing_ok', 'testing_violation', 'fetch_error']) this.mtaSts.inc({ result }, 0);
    for (const state of ['up', 'down']) this.clusterRedisChanges.inc({ state }, 0);
    for (const store of ['redis', 'local']) this.clusterDecisions.inc({ store }, 0);
    this.handoffActive.set(0);
  }

  /** Starts the series of a listener at zero so dashboards see it before the first event. */
  initListener(listener: string): void {
    this.smtpConnections.inc({ listener }, 0);
    this.smtpSessionsActive.set({ listener }, 0);
    for (const result of ['accepted', 'rejected']) this.smtpMessages.inc({ listener, result }, 0);
    for (const result of ['success', 'failure']) this.smtpAuth.inc({ listener, result }, 0);
  }

  /** One series for the applied generation: the old hash's series goes away. */
  setGeneration(number: number, hash: string): void {
    this.configGenerationInfo.reset();
    this.configGenerationInfo.set({ hash }, 1);
    this.configGeneration.set(number);
  }

  /** Removes every series of a listener that no longer exists. */
  async dropListener(listener: string): Promise<void> {
    for (const m of this.perListener()) await removeWhere(m, 'listener', listener);
  }

  protected perListener(): Removable[] {
    return [this.smtpConnections, this.smtpSessionsActive, this.smtpMessages, this.smtpRejections, this.smtpAuth, this.smtpMessageSize, this.listenerUp, this.tlsCertificateExpiry];
  }
}

/** Adds to a counter what a monotonic source has counted since `seen`; returns the new mark (a source that restarted from 0: all it has). */
function addSince(counter: { inc(n: number): void }, now: number | null, seen: number): number {
  if (now === null) return seen;
  const delta = now >= seen ? now - seen : now;
  if (delta > 0) counter.inc(delta);
  return now;
}

/** The file system of a folder: its size and what may still be written, or null when it cannot be read. */
async function volumeOf(dir: string | null): Promise<{ size: number; available: number } | null> {
  if (!dir) return null;
  try {
    const s = await statfs(dir);
    return { size: s.blocks * s.bsize, available: s.bavail * s.bsize };
  } catch {
    return null;
  }
}

let memoryLimitCache: number | null = null;

/** The memory limit of this process's cgroup in bytes (read once: it does not change under a running process), 0 for none. */
export function cgroupMemoryLimit(): number {
  if (memoryLimitCache !== null) return memoryLimitCache;
  memoryLimitCache = 0;
  const read = (path: string): string | null => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return null;
    }
  };
  // the process's own group (/proc/self/cgroup: "0::/path" for v2, "N:memory:/path" for v1), then the root as a container sees it
  const groups = (read('/proc/self/cgroup') ?? '').split('\n');
  const v2 = groups.find((l) => l.startsWith('0::'))?.slice(3);
  const v1 = groups.find((l) => /^\d+:memory:/.test(l))?.replace(/^\d+:memory:/, '');
  const candidates = [
    ...(v2 && v2 !== '/' ? [`/sys/fs/cgroup${v2}/memory.max`] : []),
    '/sys/fs/cgroup/memory.max',
    ...(v1 && v1 !== '/' ? [`/sys/fs/cgroup/memory${v1}/memory.limit_in_bytes`] : []),
    '/sys/fs/cgroup/memory/memory.limit_in_bytes',
  ];
  for (const path of candidates) {
    const text = read(path);
    if (text === null) continue;
    const n = Number(text);
    // "max", or v1's "no limit" (a number near 2^63)
    if (Number.isFinite(n) && n > 0 && n < 2 ** 60) memoryLimitCache = n;
    break;
  }
  return memoryLimitCache;
}

type Labels = Record<string, string | number>;
interface Removable {
  get(): Promise<{ values: { labels: Labels }[] }>;
  remove(labels: Labels): void;
}

/** prom-client removes only exact label sets: find every series carrying label=value first. */
async function removeWhere(metric: Removable, label: string, value: string): Promise<void> {
  const seen = new Map<string, Labels>();
  for (const v of (await metric.get()).values) {
    if (v.labels[label] !== value) continue;
    const { le: _le, ...labels } = v.labels;
    seen.set(JSON.stringify(labels), labels);
  }
  for (const labels of seen.values()) metric.remove(labels);
}
