// Three replicas against one, on the same machine: each replica a mailplane process with its own
// data dir and ports, all with cluster.redis pointing at one real redis-server that the bench
// starts on a loopback port (Debian's, its own config, no persistence, stopped by its PID), so
// every connection's lease is decided in Redis (docs/scaling.md, shared limits). "One" and
// "three" are configured identically except for the count. The load is the headline's, Postfix's
// smtp-source, 20 sessions and the same number of messages in all, split evenly over the
// replicas (7 + 7 + 6 sessions in three generators running at once, or 20 in one); 1 KiB, a new
// connection per message. The recipient (bench@example.com) is remote here (the replicas' domain
// is example.org), relayed to a counting sink: `mailboxes.store: lmtp` is required with cluster
// settings and its address is one where nothing listens, since nothing is local. A round counts
// once the sink has every accepted message, and is not ok unless every replica's /metrics said
// Redis was up before and after and every connection was decided in Redis, none locally.
// The machine's cores are shared by all replicas, Redis, the sink and the load generators: this
// row shows what three processes and the Redis round trips cost on one machine, not how
// throughput scales with machines.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { BENCH_USER_HASH, freePort, percentile, probeLatency, rssMiB, smtpSource, startCountingSink, startMailplane, stopper, treeCpuMs, waitPort, type Row, type ServerUnderTest } from './harness.js';
import { metricCounts } from './pairs.js';
import type { Started } from './scale.js';

export const REDIS_SERVER = '/usr/bin/redis-server';
/** The replicas of the "three" side. */
export const REPLICAS = 3;
/** The headline's scenario: sessions in all, message size, a new connection per message. */
const SESSIONS = 20;
const SIZE = 1024;
/** How long a round may wait for the sink to have every accepted message. */
const SETTLE_MS = 120_000;

/** One side of a round: one replica, or three. */
export interface ReplicaSide extends Row {
  replicas: number;
  /** sessions of each generator (one per replica) */
  split: number[];
  /** wall time of the slowest generator */
  seconds: number;
  /** Redis's own CPU time per message */
  redisCpuMsPerMsg: number;
  /** RSS of the replicas' processes, summed, once the round has settled */
  rssMiB: number;
  /** limit decisions taken during the round, over all replicas of the side */
  decisions: { redis: number; local: number };
  /** messages accepted (the probe's included) and delivered to the relay's sink */
  accepted: number;
  delivered: number;
  /** from the start of the load until the last accepted message was at the relay (NaN: not within the time allowed) */
  relaySeconds: number;
  /** accepted / relaySeconds: the whole job's pace, relay delivery included */
  throughRate: number;
  /** why the round is not ok */
  problems: string[];
}

export interface ReplicasResult {
  cpus: number;
  model: string;
  replicas: number;
  sessions: number;
  size: number;
  /** messages of every round and side, in all */
  messages: number;
  /** why the row was not measured, or null */
  unavailable: string | null;
  rounds: { one: ReplicaSide; three: ReplicaSide }[];
}

/** Why the row cannot be measured here, or null. */
export function replicasUnavailable(bin: string): string | null {
  if (!existsSync(REDIS_SERVER)) return `${REDIS_SERVER} is missing: apt-get install redis-server`;
  if (!existsSync(bin)) return `${bin} is missing: it comes with the Debian package postfix`;
  return null;
}

/** A redis-server of its own on a loopback port: no persistence, in the foreground, stopped by its PID. */
async function startRedis(dir: string, port: number): Promise<ServerUnderTest & { pid: number }> {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'redis.conf');
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'save ""', 'appendonly no', 'daemonize no', 'logfile ""', ''].join('\n'));
  let log = '';
  const child = spawn(REDIS_SERVER, [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (d: Buffer) => {
    if (log.length < 100_000) log += d.toString();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  await waitPort(port, child, () => log);
  const pid = child.pid!;
  return { name: 'redis', port, dir, cpuMs: () => treeCpuMs(pid), rssMiB: () => rssMiB(pid), settle: () => Promise.resolve(), stop: stopper(child), pid };
}

/**
 * A replica's config: the same for every replica of either side but for its ports and data dir.
 * Like the headline's (bench/harness.ts mailplaneConfig), plus the cluster: example.com is not a
 * local domain here, so smtp-source's and the probe's recipient, bench@example.com, is remote and
 * goes through the relay; 127.0.0.1 (the load generators) may relay as an exempt client, with no
 * sending rate (as the headline's client has none), so each message costs one decision in Redis:
 * its connection's lease.
 */
function replicaConfig(dir: string, port: number, ops: number, o: { redis: number; relay: number; lmtp: number }): string {
  return `version: 1
hostname: mail.example.org
domains: [example.org]
smtp:
  maxMessageSize: 10MB
  listeners:
    - { name: mx, address: 127.0.0.1, port: ${port}, role: mx, tls: none }
  limits: { maxConnections: 20000, maxConnectionsPerClient: 20000, maxRecipients: 100, sendRate: { messages: 0, recipients: 0 } }
  auth: { exemptClients: [127.0.0.1] }
relay: { enabled: true, host: 127.0.0.1, port: ${o.relay}, secure: false }
mailboxes:
  store: lmtp
  lmtp: { address: "127.0.0.1:${o.lmtp}" }
cluster:
  redis: { url: "redis://127.0.0.1:${o.redis}/0" }
accounts:
  local:
    users:
      - { name: bench, passwordHash: "${BENCH_USER_HASH}", aliases: [postmaster] }
storage:
  dataDir: ${join(dir, 'data')}
observability:
  listen: 127.0.0.1:${ops}
`;
}

interface Replica {
  readonly server: ServerUnderTest;
  readonly ops: number;
}

interface ClusterReading {
  up: boolean;
  redis: number;
  local: number;
  accepted: number;
}

/** What a replica's /metrics says about Redis and the messages it accepted. */
async function readCluster(ops: number): Promise<ClusterReading> {
  const text = await (await fetch(`http://127.0.0.1:${ops}/metrics`)).text();
  const up = text.match(/^mailplane_cluster_redis_up (\S+)$/m)?.[1];
  const decisions = await metricCounts(ops, 'mailplane_cluster_limit_decisions_total', ['store']);
  const messages = await metricCounts(ops, 'mailplane_smtp_messages_total', ['result']);
  return { up: up === '1', redis: decisions.get('redis') ?? 0, local: decisions.get('local') ?? 0, accepted: messages.get('accepted') ?? 0 };
}

/** n split into `parts` as evenly as whole numbers allow, the larger parts first (20 → 7, 7, 6). */
function splitEvenly(n: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
}

/** `messages` in proportion to each generator's sessions, so that they all take about as long. */
function splitBySessions(messages: number, sessions: readonly number[]): number[] {
  const all = sessions.reduce((a, b) => a + b, 0);
  const out = sessions.map((s) => Math.floor((messages * s) / all));
  for (let i = 0, left = messages - out.reduce((a, b) => a + b, 0); left > 0; i++, left--) out[i % out.length]!++;
  return out;
}

async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * The whole side, once: one smtp-source per replica, all at once, `messages` in all; the latency
 * probe on the first replica while they run; then until the sink has every accepted message.
 */
async function runSide(
  name: string,
  replicas: readonly Replica[],
  ctx: { bin: string; redis: ServerUnderTest; sink: Awaited<ReturnType<typeof startCountingSink>> },
  messages: number,
  probe: boolean,
): Promise<ReplicaSide> {
  const split = splitEvenly(SESSIONS, replicas.length);
  const perReplica = splitBySessions(messages, split);
  const before = await Promise.all(replicas.map((r) => readCluster(r.ops)));
  const cpu0 = sum(replicas.map((r) => r.server.cpuMs()));
  const redis0 = ctx.redis.cpuMs();
  const sink0 = ctx.sink.delivered();
  const t0 = performance.now();
  let running = true;
  const lat = probe ? probeLatency(replicas[0]!.server.port, SIZE, () => running) : Promise.resolve([]);
  const loads = await Promise.all(replicas.map((r, i) => smtpSource(ctx.bin, r.server.port, { sessions: split[i]!, size: SIZE, messages: perReplica[i]!, reuse: false })));
  running = false;
  const latencies = await lat;
  const seconds = Math.max(...loads.map((l) => l.seconds));
  const loaded = await Promise.all(replicas.map((r) => readCluster(r.ops)));
  const accepted = sum(loaded.map((x, i) => x.accepted - before[i]!.accepted));
  // the whole job for these messages: every accepted one at the relay
  const settled = await within(ctx.sink.reached(sink0 + accepted), SETTLE_MS);
  const cpu1 = sum(replicas.map((r) => r.server.cpuMs()));
  const redis1 = ctx.redis.cpuMs();
  const after = await Promise.all(replicas.map((r) => readCluster(r.ops)));
  const problems: string[] = [];
  if (!loads.every((l) => l.ok)) problems.push('smtp-source reported errors');
  if (settled === null) problems.push(`only ${ctx.sink.delivered() - sink0} of ${accepted} accepted messages reached the relay within ${SETTLE_MS / 1000} s`);
  const decisions = { redis: 0, local: 0 };
  replicas.forEach((_, i) => {
    const [b, a] = [before[i]!, after[i]!];
    const redis = a.redis - b.redis;
    const local = a.local - b.local;
    decisions.redis += redis;
    decisions.local += local;
    const which = replicas.length > 1 ? `replica ${i + 1}` : 'the replica';
    if (!b.up || !a.up) problems.push(`${which}: mailplane_cluster_redis_up was not 1 ${b.up ? 'after' : 'before'} the round`);
    // every message came on its own connection, and each connection is one decision
    if (redis < perReplica[i]!) problems.push(`${which}: ${redis} decisions in Redis for ${perReplica[i]} connections`);
    if (local > 0) problems.push(`${which}: ${local} decisions taken locally (Redis down or slower than cluster.redis.timeout)`);
  });
  return {
    server: name,
    replicas: replicas.length,
    sessions: SESSIONS,
    split,
    size: SIZE,
    reuse: false,
    messages,
    seconds,
    rate: messages / seconds,
    cpuMsPerMsg: (cpu1 - cpu0) / messages,
    redisCpuMsPerMsg: (redis1 - redis0) / messages,
    rssMiB: sum(replicas.map((r) => r.server.rssMiB())),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    decisions,
    accepted,
    delivered: ctx.sink.delivered() - sink0,
    relaySeconds: settled === null ? NaN : (settled - t0) / 1000,
    throughRate: settled === null ? NaN : accepted / ((settled - t0) / 1000),
    problems,
    ok: problems.length === 0,
  };
}

/** The columns of run.ts's table, of one side. */
export function tableRow(s: ReplicaSide): Row {
  const { server, sessions, size, reuse, messages, rate, cpuMsPerMsg, p50, p99, ok } = s;
  return { server, sessions, size, reuse, messages, rate, cpuMsPerMsg, p50, p99, ok };
}

export const SIDE_NAMES = ['1 replica', `${REPLICAS} replicas`] as const;

/**
 * The row: one replica and three, `rounds` interleaved rounds (one, three, then three, one…) after
 * an unrecorded warm-up and calibration of each side. `print` gets each side as it is measured.
 * Everything started here is stopped here (and registered with run.ts, which stops it on Ctrl-C).
 */
export async function replicasRow(bin: string, dir: string, started: Started, rounds: number, seconds: number, print: (s: ReplicaSide) => void): Promise<ReplicasResult> {
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--replicas takes a number of rounds (at least 1)');
  const result: ReplicasResult = {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'cpu',
    replicas: REPLICAS,
    sessions: SESSIONS,
    size: SIZE,
    messages: 0,
    unavailable: replicasUnavailable(bin),
    rounds: [],
  };
  if (result.unavailable) {
    console.log(`*** the row "${REPLICAS} replicas vs 1" is left out of this run: ${result.unavailable} ***`);
    return result;
  }
  const mine: ServerUnderTest[] = [];
  const start: Started = async (s) => {
    const server = await started(s);
    mine.push(server);
    return server;
  };
  try {
    const redis = await start(startRedis(join(dir, 'redis'), await freePort()));
    const sink = await start(startCountingSink(join(dir, 'relay'), await freePort()));
    const lmtp = await freePort(); // nothing listens there: no recipient is local
    const sides: Replica[][] = [];
    for (const [side, count] of [
      ['one', 1],
      ['three', REPLICAS],
    ] as const) {
      const replicas: Replica[] = [];
      for (let i = 1; i <= count; i++) {
        const d = join(dir, side, `replica${i}`);
        const [port, ops] = [await freePort(), await freePort()];
        const server = await start(startMailplane(d, replicaConfig(d, port, ops, { redis: redis.port, relay: sink.port, lmtp }), ops, port));
        replicas.push({ server, ops });
      }
      sides.push(replicas);
    }
    // each replica connects to Redis on its own after /readyz
    const deadline = Date.now() + 10_000;
    while (!(await Promise.all(sides.flat().map((r) => readCluster(r.ops)))).every((x) => x.up)) {
      if (Date.now() > deadline) throw new Error(`the replicas did not report mailplane_cluster_redis_up 1 within 10 s (redis-server on ${redis.port})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ctx = { bin, redis, sink };
    // Warm-up (JIT, the first files of each data dir), then a calibration run of each side: the
    // faster one sets the messages of every round (the same for both sides), as the headline's
    // calibration does for one server, but at least 1,000: this row is slower than the headline
    // (every message also goes to the relay), and a round of a few hundred is mostly noise.
    for (const replicas of sides) await runSide('warm-up', replicas, ctx, 1000, false);
    const calib = [];
    for (const replicas of sides) calib.push(await runSide('calibration', replicas, ctx, 1000, false));
    const messages = Math.round(Math.min(40_000, Math.max(1000, Math.max(...calib.map((c) => c.rate)) * seconds)));
    result.messages = messages;
    for (let i = 0; i < rounds; i++) {
      const round: Partial<Record<'one' | 'three', ReplicaSide>> = {};
      for (const k of i % 2 ? ([1, 0] as const) : ([0, 1] as const)) {
        const s = await runSide(SIDE_NAMES[k], sides[k]!, ctx, messages, true);
        print(s);
        console.log(
          `              ${s.split.join(' + ')} sessions, slowest generator ${s.seconds.toFixed(2)} s, all at the relay after ${s.relaySeconds.toFixed(2)} s (${s.throughRate.toFixed(0)} msg/s); RSS ${s.rssMiB.toFixed(1)} MiB in all; Redis ${s.redisCpuMsPerMsg.toFixed(3)} CPU ms/msg; decisions in Redis ${s.decisions.redis}, locally ${s.decisions.local}; ${s.delivered}/${s.accepted} at the relay`,
        );
        for (const p of s.problems) console.log(`*** ${s.server}: ${p} ***`);
        round[k ? 'three' : 'one'] = s;
      }
      result.rounds.push({ one: round.one!, three: round.three! });
    }
    return result;
  } finally {
    for (const s of mine.reverse()) await s.stop().catch(() => {});
  }
}

/** Medians of each side and the ratios three/one, overall and (msg/s) round by round. */
export function replicasSummary(r: ReplicasResult) {
  if (!r.rounds.length) return null;
  const median = (side: 'one' | 'three', f: (s: ReplicaSide) => number) =>
    percentile(
      r.rounds.map((x) => f(x[side])),
      50,
    );
  const side = (k: 'one' | 'three') => ({
    rate: median(k, (s) => s.rate),
    throughRate: median(k, (s) => s.throughRate),
    cpuMsPerMsg: median(k, (s) => s.cpuMsPerMsg),
    redisCpuMsPerMsg: median(k, (s) => s.redisCpuMsPerMsg),
    rssMiB: median(k, (s) => s.rssMiB),
    p50: median(k, (s) => s.p50),
    p99: median(k, (s) => s.p99),
  });
  const one = side('one');
  const three = side('three');
  return {
    one,
    three,
    rate: three.rate / one.rate,
    through: three.throughRate / one.throughRate,
    cpu: three.cpuMsPerMsg / one.cpuMsPerMsg,
    rss: three.rssMiB / one.rssMiB,
    roundRatios: r.rounds.map((x) => x.three.rate / x.one.rate),
    ok: r.rounds.every((x) => x.one.ok && x.three.ok),
  };
}

/** The row in one line, as printed and (with bold) as written to latest.md. */
export function replicasLine(r: ReplicasResult, bold = ''): string {
  const title = `${r.replicas} replicas vs 1 on the same machine`;
  if (r.unavailable) return `${title}: not measured (${r.unavailable})`;
  const s = replicasSummary(r);
  if (!s) return `${title}: not measured`;
  const side = (x: typeof s.one) =>
    `${x.rate.toFixed(0)} msg/s accepted (${x.throughRate.toFixed(0)} msg/s until all were at the relay), ${x.cpuMsPerMsg.toFixed(3)} CPU ms/msg summed over the replicas (Redis ${x.redisCpuMsPerMsg.toFixed(3)} more), RSS ${x.rssMiB.toFixed(1)} MiB in all, p50 ${x.p50.toFixed(2)} ms, p99 ${x.p99.toFixed(2)} ms`;
  return (
    `${title} (this machine has ${r.cpus} cores, shared by the ${r.replicas} replicas, Redis, the relay's sink and the load generators: ` +
    `not a scaling promise, this is what ${r.replicas} processes and the Redis round trips cost on one machine; ` +
    `${r.sessions} sessions and ${r.messages} messages per side, split evenly over the replicas, ${r.size / 1024} KiB, new connection per message, relayed to a sink, each connection decided in Redis; median of ${r.rounds.length}): ` +
    `1 replica ${side(s.one)}; ${r.replicas} replicas ${side(s.three)}: ` +
    `${r.replicas}/1 msg/s ${bold}${s.rate.toFixed(2)}×${bold} (round by round: ${s.roundRatios.map((x) => `${x.toFixed(2)}×`).join(', ')}), until all at the relay ${s.through.toFixed(2)}×, CPU per message ${s.cpu.toFixed(2)}×, RSS ${s.rss.toFixed(2)}×` +
    `${s.ok ? '' : ' (not ok: see the rounds)'}`
  );
}
