// `npm run bench`: mailplane against Postfix and a bare smtp-server+fsync baseline, measured in the
// same run with Postfix's smtp-source as the load generator, mailplane with its inbound checks on
// and off (bench/checks.ts) and with its spam filter on and off (bench/spam.ts), three replicas
// sharing limits in Redis against one (bench/replicas.ts), then mailplane at scale (bench/scale.ts).
// Prints a table and writes bench/results/latest.{json,md}. Never part of `npm test`.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { checksVariant } from './checks.js';
import { countsBetween, type PairSetup, type PairVariant } from './pairs.js';
import { spamVariant } from './spam.js';
import {
  ensureSmtpSource,
  freePort,
  idleConnections,
  mailplaneConfig,
  percentile,
  probeLatency,
  ROOT,
  smtpSource,
  startBaseline,
  startSink,
  startMailplane,
  type Row,
  type ServerUnderTest,
} from './harness.js';
import { postfixUnavailable, startPostfix } from './postfix.js';
import { reloadUnderLoad } from './reload.js';
import { replicasLine, replicasRow, tableRow, type ReplicasResult } from './replicas.js';
import { bigQueueRestart, restartLine, restartMarkdown, type RestartResult } from './restart.js';
import { bigMessages, fanOut, queueStartup, removeTree, scaleLine, scaleMarkdown, schedulingCost, type ScaleResult, type Started } from './scale.js';

const QUICK = process.argv.includes('--quick');
const SECONDS = QUICK ? 1.5 : 3;
// `--headline N`: only the headline scenario, N interleaved pairs (for working on it).
const HEADLINE = process.argv.includes('--headline') ? Number(process.argv[process.argv.indexOf('--headline') + 1] ?? 5) : 0;
// `--scale`: only the rows at scale (for working on them); nothing is written to bench/results.
const SCALE = process.argv.includes('--scale') && !HEADLINE;
// `--checks N` / `--spam N`: only mailplane with its inbound checks / its spam filter on and off,
// N interleaved pairs; nothing is written.
const PAIRS: readonly PairVariant[] = [checksVariant, spamVariant];
const PAIR_ONLY = HEADLINE || SCALE ? null : (PAIRS.find((v) => process.argv.includes(`--${v.flag}`)) ?? null);
const PAIR_ROUNDS = PAIR_ONLY ? Number(process.argv[process.argv.indexOf(`--${PAIR_ONLY.flag}`) + 1] ?? 3) : 0;
// `--replicas N`: only the row "three replicas vs one on the same machine", N interleaved rounds;
// nothing is written.
const REPLICAS_ONLY = process.argv.includes('--replicas') && !HEADLINE && !SCALE && !PAIR_ONLY;
const REPLICA_ROUNDS = REPLICAS_ONLY ? Number(process.argv[process.argv.indexOf('--replicas') + 1] ?? 3) : 0;
// `--restart`: only the row "25 × 20 MB queued, restart, slow relay"; nothing is written.
const RESTART_ONLY = process.argv.includes('--restart') && !HEADLINE && !SCALE;
// `--queue N`: queued entries for the start-up row (a million; a tenth of that with --quick).
const QUEUE = process.argv.includes('--queue') ? Number(process.argv[process.argv.indexOf('--queue') + 1]) : QUICK ? 100_000 : 1_000_000;

/** The message smtp-source sends over and over (instead of its own of `size` bytes), and the same for the probe. */
interface Load {
  readonly file: string;
  readonly message: string;
}

async function measure(bin: string, s: ServerUnderTest, sessions: number, size: number, reuse: boolean, load?: Load): Promise<Row> {
  const calib = await smtpSource(bin, s.port, { sessions, size, messages: Math.max(sessions * 5, 200), reuse, file: load?.file });
  await s.settle();
  const messages = Math.round(Math.min(40_000, Math.max(sessions * 10, 300, calib.rate * SECONDS)));
  const cpu0 = s.cpuMs();
  let running = true;
  const probe = probeLatency(s.port, size, () => running, 20, load?.message);
  const r = await smtpSource(bin, s.port, { sessions, size, messages, reuse, file: load?.file });
  running = false;
  const lat = await probe;
  await s.settle(); // the whole job for these messages: Postfix delivers them after its 250
  const cpu1 = s.cpuMs();
  return { server: s.name, sessions, size, reuse, messages, rate: r.rate, cpuMsPerMsg: (cpu1 - cpu0) / messages, p50: percentile(lat, 50), p99: percentile(lat, 99), ok: r.ok && calib.ok };
}

async function main(): Promise<void> {
  const bin = ensureSmtpSource();
  const work = mkdtempSync(join(tmpdir(), 'mailplane-bench-'));
  console.log(
    `mailplane benchmark — ${new Date().toISOString()} — ${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`,
  );
  console.log(`work dir ${work}\n`);

  if (!Number.isInteger(QUEUE) || QUEUE < 100) throw new Error('--queue takes a number of entries (at least 100)');
  const noPostfix = postfixUnavailable();
  if (noPostfix && !SCALE && !REPLICAS_ONLY) console.log(`*** Postfix is left out of this run: ${noPostfix} ***\n`);
  // Every server started is stopped again, whatever happens (a failed start, Ctrl-C); the work
  // dir goes too (the start-up row leaves a million files there while it runs).
  const servers: ServerUnderTest[] = [];
  const stopAll = async () => {
    for (const s of servers.splice(0)) await s.stop().catch(() => {});
  };
  const interrupted = () =>
    void stopAll().then(() => {
      removeTree(work);
      process.exit(130);
    });
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);
  const started: Started = async (s) => {
    const server = await s;
    servers.push(server);
    return server;
  };
  if (RESTART_ONLY) {
    try {
      console.log(`  ${restartLine(await bigQueueRestart(join(work, 'scale-restart'), started))}`);
    } finally {
      await stopAll();
    }
    console.log('\n(--restart: nothing written to bench/results)');
    rmSync(work, { recursive: true, force: true });
    return;
  }
  if (SCALE) {
    await atScale(bin, work, started, stopAll);
    console.log('\n(--scale: nothing written to bench/results)');
    rmSync(work, { recursive: true, force: true });
    return;
  }
  const rows: Row[] = [];
  let replicas: ReplicasResult | null = null;
  const head = 'server        sessions  size     conn   messages    msg/s  cpu ms/msg  p50 ms  p99 ms';
  console.log(head);
  const print = (r: Row) =>
    console.log(
      `${r.server.padEnd(12)}  ${String(r.sessions).padStart(8)}  ${(r.size >= 1024 ? kib(r.size) : `${r.size} B`).padEnd(7)}  ${(r.reuse ? 'reuse' : 'new').padEnd(5)}  ${String(r.messages).padStart(8)}  ${r.rate.toFixed(0).padStart(7)}  ${r.cpuMsPerMsg.toFixed(3).padStart(10)}  ${r.p50.toFixed(2).padStart(6)}  ${r.p99.toFixed(2).padStart(6)}${r.ok ? '' : '  (errors)'}`,
    );
  if (REPLICAS_ONLY) {
    let r: ReplicasResult;
    try {
      r = await replicasRow(bin, join(work, 'replicas'), started, REPLICA_ROUNDS, SECONDS, print);
    } finally {
      await stopAll();
    }
    console.log(`\n${replicasLine(r)}\n(--replicas: nothing written to bench/results)`);
    rmSync(work, { recursive: true, force: true });
    return;
  }
  if (PAIR_ONLY) {
    try {
      rows.push(...(await pairRows(PAIR_ONLY, bin, join(work, PAIR_ONLY.flag), started, PAIR_ROUNDS, print)));
    } finally {
      await stopAll();
    }
    const s = pairSummary(PAIR_ONLY, rows);
    console.log(`\n${s ? pairLine(PAIR_ONLY, s) : `${PAIR_ONLY.title}: not measured`}\n(--${PAIR_ONLY.flag}: nothing written to bench/results)`);
    rmSync(work, { recursive: true, force: true });
    return;
  }
  try {
    const [mpPort, mpOps] = [await freePort(), await freePort()];
    const mp = await started(startMailplane(join(work, 'mailplane'), mailplaneConfig(join(work, 'mailplane'), mpPort, mpOps), mpOps, mpPort));
    const base = await started(startBaseline(join(work, 'baseline'), await freePort()));
    const postfix = noPostfix
      ? []
      : [
          await started(startPostfix('postfix', join(work, 'postfix'), await freePort(), { hold: false })),
          await started(startPostfix('postfix-hold', join(work, 'postfix-hold'), await freePort(), { hold: true })),
        ];
    const sink = await started(startSink(join(work, 'sink'), await freePort()));
    // Warm-up, not recorded: JIT, page cache and the first files of each server.
    for (const s of servers) await measure(bin, s, 20, 1024, false);
    // The headline scenario five times, interleaved (who goes first rotates), so that every
    // server sees the same noise; with a reference point: the same library storing nothing.
    const competitors = [base, mp, ...postfix];
    for (let i = 0; i < (HEADLINE || (QUICK ? 1 : 5)); i++) {
      for (const s of [...rotate(competitors, i), sink]) {
        const r = await measure(bin, s, 20, 1024, false);
        rows.push(r);
        print(r);
      }
    }
    let n = 0;
    for (const size of HEADLINE ? [] : [1024, 100 * 1024]) {
      for (const reuse of [false, true]) {
        for (const sessions of [1, 20, 100]) {
          if (sessions === 20 && size === 1024 && !reuse) continue; // done above
          for (const s of rotate([base, mp, ...postfix.slice(0, 1)], n++)) {
            const r = await measure(bin, s, sessions, size, reuse);
            rows.push(r);
            print(r);
          }
        }
      }
    }
    if (!HEADLINE) for (const v of PAIRS) rows.push(...(await pairRows(v, bin, join(work, v.flag), started, QUICK ? 1 : 3, print)));
    if (!HEADLINE) {
      replicas = await replicasRow(bin, join(work, 'replicas'), started, QUICK ? 1 : 3, SECONDS, print);
      for (const round of replicas.rounds) rows.push(tableRow(round.one), tableRow(round.three));
    }
  } finally {
    await stopAll();
  }

  if (HEADLINE) {
    const summary = summarize(rows);
    console.log(`\nheadline, median of ${HEADLINE}: ${headline(summary)}`);
    rmSync(work, { recursive: true, force: true });
    return;
  }
  console.log('\nreload under load (20 sessions sending, 50 changes: policy and certificate rotations)…');
  const reload = await reloadUnderLoad(bin, join(work, 'reload'), QUICK ? 20 : 50);
  console.log(
    `  applied ${reload.applied}/${reload.changes}; file change → applied p50 ${reload.p50.toFixed(0)} ms, p99 ${reload.p99.toFixed(0)} ms; failed or 4xx/5xx transactions: ${reload.failed} of ${reload.sent}`,
  );

  console.log('\nmemory and start-up…');
  const memory = await memoryRun(bin, join(work, 'memory'));
  console.log(
    `  RSS idle: ${memory.rss0.toFixed(1)} MiB; 1,000 idle connections ${memory.rss1k.toFixed(1)} MiB; 5,000 ${memory.rss5k.toFixed(1)} MiB → ${memory.perConnKiB.toFixed(1)} KiB per connection`,
  );
  console.log(
    `  RSS after ${memory.at1.toLocaleString()} messages ${memory.rssAt1.toFixed(1)} MiB, after ${memory.at2.toLocaleString()} ${memory.rssAt2.toFixed(1)} MiB (growth ${(memory.rssAt2 - memory.rssAt1).toFixed(1)} MiB)`,
  );
  console.log(`  start-up to /readyz: median ${memory.startupMs.toFixed(0)} ms`);

  const scale = await atScale(bin, work, started, stopAll);

  const summary = summarize(rows);
  console.log(`\nheadline (20 sessions, 1 KiB, new connection per message, median of interleaved runs): ${headline(summary)}`);
  const pairs = Object.fromEntries(PAIRS.map((v) => [v.flag, pairSummary(v, rows)]));
  for (const v of PAIRS) if (pairs[v.flag]) console.log(pairLine(v, pairs[v.flag]!));
  if (replicas) console.log(replicasLine(replicas));
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version },
    rows,
    reload,
    memory,
    scale,
    summary,
    checks: pairs.checks ?? null,
    spam: pairs.spam ?? null,
    replicas,
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(ROOT, 'bench/results/latest.md'), markdown(result));
  console.log('\nwrote bench/results/latest.json and bench/results/latest.md');
  rmSync(work, { recursive: true, force: true });
}

/** The rows at scale (bench/scale.ts), each printed as soon as it is measured. */
async function atScale(bin: string, work: string, started: Started, stopAll: () => Promise<void>): Promise<ScaleResult & { restart: RestartResult }> {
  console.log('\nat scale…');
  try {
    const row = <T>(r: T, line: (r: T) => string) => {
      console.log(`  ${line(r)}`);
      return r;
    };
    const big = row(await bigMessages(bin, join(work, 'scale-big'), started), scaleLine.big);
    const restart = row(await bigQueueRestart(join(work, 'scale-restart'), started), restartLine);
    const fan = row(await fanOut(bin, join(work, 'scale-fanout'), started), scaleLine.fanOut);
    const queue = row(await queueStartup(join(work, 'scale-queue'), QUEUE, started), scaleLine.queue);
    const scheduling = row(schedulingCost(), scaleLine.scheduling);
    return { big, fanOut: fan, queue, scheduling, restart };
  } finally {
    await stopAll();
  }
}

/**
 * mailplane with a feature on and off (PairVariant: the inbound checks of bench/checks.ts, the
 * spam filter of bench/spam.ts): the headline scenario (20 sessions, new connection per message)
 * with the variant's message from an untrusted client, `rounds` interleaved pairs after an
 * unrecorded warm-up. Each row says whether the feature ran as configured (the variant reads the
 * server's metrics around it): on, for every message measured; off, for none.
 */
async function pairRows(v: PairVariant, bin: string, dir: string, started: Started, rounds: number, print: (r: Row) => void): Promise<Row[]> {
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--${v.flag} takes a number of rounds (at least 1)`);
  const unavailable = v.unavailable();
  if (unavailable) {
    console.log(`*** the ${v.title} rows are left out of this run: ${unavailable} ***`);
    return [];
  }
  let setup: PairSetup | null = null;
  try {
    setup = await v.setUp(dir);
    const servers: { server: ServerUnderTest; ops: number; on: boolean }[] = [];
    for (const on of [false, true]) {
      const [port, ops] = [await freePort(), await freePort()];
      const d = join(dir, on ? 'on' : 'off');
      const { extra, options } = setup.config(on);
      const s = await started(startMailplane(d, mailplaneConfig(d, port, ops, extra, options), ops, port));
      servers.push({ server: { ...s, name: v.names[on ? 1 : 0] }, ops, on });
    }
    const load = { file: setup.file, message: setup.message };
    for (const { server } of servers) await measure(bin, server, 20, setup.size, false, load);
    const rows: Row[] = [];
    for (let i = 0; i < rounds; i++) {
      for (const { server, ops, on } of rotate(servers, i)) {
        const before = await setup.counts(ops);
        const r = await measure(bin, server, 20, setup.size, false, load);
        const seen = countsBetween(before, await setup.counts(ops));
        const what = [...seen].map(([k, n]) => `${k} ${n}`).join(', ');
        if (!setup.ran(on, seen, r.messages)) {
          r.ok = false;
          console.log(`*** ${server.name}: did not run as configured (${what || 'nothing counted'} for ${r.messages} messages) ***`);
        }
        rows.push(r);
        print(r);
        if (on && i === 0) console.log(`              counted: ${what}`);
      }
    }
    return rows;
  } finally {
    await setup?.stop();
  }
}

/** A variant's rows: medians on and off, and the ratio on/off, overall and round by round. */
function pairSummary(v: PairVariant, rows: readonly Row[]) {
  const on = rows.filter((r) => r.server === v.names[1]);
  const off = rows.filter((r) => r.server === v.names[0]);
  if (!on.length || !off.length) return null;
  const median = (rs: readonly Row[], f: (r: Row) => number) => percentile(rs.map(f), 50);
  return {
    size: on[0]!.size,
    rounds: on.length,
    on: median(on, (r) => r.rate),
    off: median(off, (r) => r.rate),
    ratio: median(on, (r) => r.rate) / median(off, (r) => r.rate),
    roundRatios: on.map((r, i) => r.rate / off[i]!.rate),
    cpuOn: median(on, (r) => r.cpuMsPerMsg),
    cpuOff: median(off, (r) => r.cpuMsPerMsg),
    p50On: median(on, (r) => r.p50),
    p50Off: median(off, (r) => r.p50),
    ok: [...on, ...off].every((r) => r.ok),
  };
}

function pairLine(v: PairVariant, c: NonNullable<ReturnType<typeof pairSummary>>, bold = ''): string {
  return (
    `${v.title} (${v.describe(kib(c.size))}; median of ${c.rounds}): ` +
    `on ${c.on.toFixed(0)} msg/s (${c.cpuOn.toFixed(3)} CPU ms/msg, p50 ${c.p50On.toFixed(2)} ms), off ${c.off.toFixed(0)} msg/s (${c.cpuOff.toFixed(3)} CPU ms/msg, p50 ${c.p50Off.toFixed(2)} ms): ` +
    `on/off ${bold}${c.ratio.toFixed(2)}×${bold} (round by round: ${c.roundRatios.map((x) => `${x.toFixed(2)}×`).join(', ')})${c.ok ? '' : ' (errors)'}`
  );
}

const kib = (bytes: number) => `${Number.isInteger(bytes / 1024) ? bytes / 1024 : (bytes / 1024).toFixed(1)} KiB`;

/** Rounds of the headline: medians, and mailplane's ratio to each competitor, overall and round by round. */
function summarize(rows: Row[]) {
  const pick = (server: string) => rows.filter((r) => r.server === server && r.sessions === 20 && r.size === 1024 && !r.reuse).map((r) => r.rate);
  const mine = pick('mailplane');
  const m = percentile(mine, 50);
  const against = (server: string) => {
    const theirs = pick(server);
    const median = percentile(theirs, 50);
    return { median, ratio: m / median, rounds: theirs.length ? mine.map((rate, i) => rate / theirs[i]!) : [] };
  };
  return { mailplane: m, baseline: against('baseline'), postfix: against('postfix'), postfixHold: against('postfix-hold'), sink: percentile(pick('sink'), 50) };
}

/** The headline result in a few lines, as printed and as written to latest.md. */
function headline(s: ReturnType<typeof summarize>, bold = ''): string {
  const vs = (label: string, c: { median: number; ratio: number; rounds: number[] }) =>
    Number.isNaN(c.median)
      ? `${label}: not measured`
      : `${label} ${c.median.toFixed(0)} msg/s: mailplane ${bold}${c.ratio.toFixed(2)}×${bold} (round by round: ${c.rounds.map((x) => `${x.toFixed(2)}×`).join(', ')})`;
  return [
    `mailplane ${s.mailplane.toFixed(0)} msg/s`,
    vs('baseline (bare smtp-server + fdatasync)', s.baseline),
    vs('Postfix (accepting and delivering to the Maildir)', s.postfix),
    vs('Postfix accepting only (mail held in its queue)', s.postfixHold),
    `the sink (the same library storing nothing) ${s.sink.toFixed(0)} msg/s`,
  ].join('; ');
}

function rotate<T>(list: readonly T[], by: number): T[] {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** The row of `server` measured in the same round as `row` (same scenario, same repetition). */
function paired(rows: readonly Row[], row: Row, server: string): Row | undefined {
  const same = (x: Row) => x.sessions === row.sessions && x.size === row.size && x.reuse === row.reuse;
  const round = rows.filter((x) => x.server === row.server && same(x)).indexOf(row);
  return rows.filter((x) => x.server === server && same(x))[round];
}

async function memoryRun(bin: string, dir: string) {
  const starts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [port, ops] = [await freePort(), await freePort()];
    const d = join(dir, `start${i}`);
    const s = await startMailplane(d, mailplaneConfig(d, port, ops), ops, port);
    starts.push(s.startupMs);
    await s.stop();
  }
  const [port, ops] = [await freePort(), await freePort()];
  const s = await startMailplane(dir, mailplaneConfig(dir, port, ops), ops, port);
  try {
    await new Promise((r) => setTimeout(r, 500));
    const rss0 = s.rssMiB();
    let idle = await idleConnections(port, 1000);
    const rss1k = s.rssMiB();
    await idle.close();
    idle = await idleConnections(port, 5000);
    const rss5k = s.rssMiB();
    await idle.close();
    const at1 = QUICK ? 2000 : 10_000;
    const at2 = QUICK ? 10_000 : 100_000;
    await smtpSource(bin, port, { sessions: 20, size: 1024, messages: at1, reuse: false });
    const rssAt1 = s.rssMiB();
    await smtpSource(bin, port, { sessions: 20, size: 1024, messages: at2 - at1, reuse: false });
    const rssAt2 = s.rssMiB();
    return { rss0, rss1k, rss5k, perConnKiB: ((rss5k - rss0) * 1024) / 5000, at1, rssAt1, at2, rssAt2, startupMs: percentile(starts, 50) };
  } finally {
    await s.stop();
  }
}

function markdown(r: {
  date: string;
  machine: Record<string, unknown>;
  rows: Row[];
  reload: Awaited<ReturnType<typeof reloadUnderLoad>>;
  memory: Awaited<ReturnType<typeof memoryRun>>;
  scale: ScaleResult & { restart: RestartResult };
  summary: ReturnType<typeof summarize>;
  checks: ReturnType<typeof pairSummary>;
  spam: ReturnType<typeof pairSummary>;
  replicas: ReplicasResult | null;
}): string {
  const lines = [
    `Run ${r.date} on ${String(r.machine.cpus)}× ${String(r.machine.model)}, ${String(r.machine.memGiB)} GiB, Linux ${String(r.machine.kernel)}, Node ${String(r.machine.node)}.`,
    '',
    '| server | sessions | size | connection | messages | msg/s | CPU ms/msg | p50 ms | p99 ms | vs baseline | vs Postfix |',
    '|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const vs = (row: Row, server: string) => {
    const other = row.server === 'mailplane' ? paired(r.rows, row, server) : undefined;
    return other ? `${(row.rate / other.rate).toFixed(2)}×` : '';
  };
  for (const row of r.rows) {
    lines.push(
      `| ${row.server} | ${row.sessions} | ${kib(row.size)} | ${row.reuse ? 'reused' : 'new per message'} | ${row.messages} | ${row.rate.toFixed(0)} | ${row.cpuMsPerMsg.toFixed(3)} | ${row.p50.toFixed(2)} | ${row.p99.toFixed(2)} | ${vs(row, 'baseline')} | ${vs(row, 'postfix')} |`,
    );
  }
  lines.push(
    '',
    `Headline (20 sessions, 1 KiB, new connection per message, median of interleaved runs): ${headline(r.summary, '**')}.`,
    '',
    ...(r.checks ? [`${pairLine(checksVariant, r.checks, '**').replace(/^inbound checks/, 'Inbound checks')}.`, ''] : []),
    ...(r.spam ? [`${pairLine(spamVariant, r.spam, '**').replace(/^spam filter/, 'Spam filter')}.`, ''] : []),
    ...(r.replicas ? [`${replicasLine(r.replicas, '**')}.`, ''] : []),
    `Reload under load: ${r.reload.applied}/${r.reload.changes} changes applied, file change → applied p50 ${r.reload.p50.toFixed(0)} ms, p99 ${r.reload.p99.toFixed(0)} ms; ${r.reload.failed} failed or 4xx/5xx transactions out of ${r.reload.sent}.`,
    '',
    `Memory: ${r.memory.rss0.toFixed(1)} MiB idle, ${r.memory.rss1k.toFixed(1)} MiB with 1,000 idle connections, ${r.memory.rss5k.toFixed(1)} MiB with 5,000 (${r.memory.perConnKiB.toFixed(1)} KiB per connection); ${r.memory.rssAt1.toFixed(1)} MiB after ${r.memory.at1} messages, ${r.memory.rssAt2.toFixed(1)} MiB after ${r.memory.at2}. Start-up to /readyz: ${r.memory.startupMs.toFixed(0)} ms (median of 3).`,
    '',
    ...scaleMarkdown(r.scale),
    restartMarkdown(r.scale.restart),
    '',
  );
  return lines.join('\n');
}

await main();
