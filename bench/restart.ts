// A restart with big mail in the queue: 25 messages of 20 MB each (under the default 25 MB
// limit) wait after a relay outage, and mailplane starts on them with a relay that answers slowly
// (each reply after 500 ms, each message read at 4 MB/s). Under a 512 MiB container limit the
// queue used to read every message whole into memory, 20 at a time, and was OOM-killed on every
// restart; now bodies stream from disk, deliveries in flight are bounded by bytes as well as by
// count (delivery.maxBytesInFlight), and the queue starts gradually after a restart. Measured:
// the peak RSS from the spawn until the last message is at the relay (kernel high-water mark
// and 20 ms samples), and the time to /readyz.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newQueueId } from '../src/store/queue-entry.js';
import { freePort, mailplaneConfig, startCountingSink, startMailplane, watchPeakRss } from './harness.js';
import { removeTree, type Started } from './scale.js';

export const RESTART_GOAL_MB = 300;
const MIB_PER_MB = 1e6 / 2 ** 20;

export interface RestartResult {
  messages: number;
  bytes: number;
  relayDelayMs: number;
  relayRate: number;
  /** spawn → /readyz 200 */
  readyMs: number;
  /** spawn → the last message taken by the relay (NaN: not within the time allowed) */
  deliveredMs: number;
  delivered: number;
  /** RSS a second after the last delivery */
  rssIdle: number;
  peakRss: number;
  sampledPeak: number;
  hwm: number | null;
  /** the config lines the row ran with besides the relay (e.g. the budgets switched off) */
  extra: string;
  ok: boolean;
}

const MB20 = 20_000_000;

/** Writes `count` queue entries of `bytes` each, due now after one failed attempt (a relay outage). */
function writeBigQueue(dir: string, count: number, bytes: number): void {
  const queue = join(dir, 'data/queue');
  mkdirSync(join(queue, 'tmp'), { recursive: true });
  const line = `${'x'.repeat(76)}\r\n`;
  const head = 'Received: from client.example.com (client.example.com [192.0.2.10])\r\nFrom: <big@example.com>\r\nTo: <someone@remote.example>\r\nSubject: big\r\n\r\n';
  const body = Buffer.from(head + line.repeat(Math.ceil((bytes - head.length) / line.length))).subarray(0, bytes);
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const arrivedAt = now - 3_600_000 + i;
    const id = newQueueId(arrivedAt);
    const entry = {
      version: 1,
      id,
      sender: 'big@example.com',
      arrivedAt,
      size: body.length,
      dkim: '',
      recipients: [{ address: `r${i}@remote.example`, state: 'pending', attempts: 1, lastResponse: '451 4.4.1 the relay could not be reached', updatedAt: now - 600_000 }],
      attempts: 1,
      nextAttemptAt: now - 1000,
      lastError: '451 4.4.1 the relay could not be reached',
      bounced: false,
    };
    writeFileSync(join(queue, `${id}.eml`), body);
    writeFileSync(join(queue, `${id}.json`), JSON.stringify(entry));
  }
}

export async function bigQueueRestart(dir: string, started: Started, o: { extra?: string; messages?: number; bytes?: number; relayDelayMs?: number; relayRate?: number } = {}): Promise<RestartResult> {
  const messages = o.messages ?? 25;
  const bytes = o.bytes ?? MB20;
  const relayDelayMs = o.relayDelayMs ?? 500;
  const relayRate = o.relayRate ?? 4_000_000;
  const extra = o.extra ?? '';
  mkdirSync(dir, { recursive: true });
  try {
    writeBigQueue(dir, messages, bytes);
    const sink = await started(startCountingSink(join(dir, 'relay'), await freePort(), 'bench/slow-relay.mjs', [String(relayDelayMs), String(relayRate)]));
    const [port, ops] = [await freePort(), await freePort()];
    const relay = `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${sink.port}\n  secure: false\n${extra}`;
    let peak: ReturnType<typeof watchPeakRss> | null = null;
    const all = sink.reached(messages);
    const t0 = performance.now();
    const s = await started(
      startMailplane(dir, mailplaneConfig(dir, port, ops, relay, { maxMessageSize: '30MB' }), ops, port, (pid) => {
        peak = watchPeakRss(pid, 20);
      }),
    );
    try {
      const readyMs = s.startupMs;
      let timer: NodeJS.Timeout | undefined;
      const at = await Promise.race([all, new Promise<number>((r) => (timer = setTimeout(() => r(NaN), 600_000)))]);
      clearTimeout(timer);
      const p = peak!.stop();
      await new Promise((r) => setTimeout(r, 1000));
      const rssIdle = s.rssMiB();
      const deliveredMs = at - t0;
      return {
        messages,
        bytes,
        relayDelayMs,
        relayRate,
        readyMs,
        deliveredMs,
        delivered: sink.delivered(),
        rssIdle,
        peakRss: p.peakMiB,
        sampledPeak: p.sampledMiB,
        hwm: p.hwmMiB,
        extra,
        ok: sink.delivered() === messages,
      };
    } finally {
      await s.stop();
      await sink.stop();
    }
  } finally {
    removeTree(dir);
  }
}

const mib = (x: number) => `${x.toFixed(1)} MiB`;
const goalMiB = RESTART_GOAL_MB * MIB_PER_MB;

export function restartLine(r: RestartResult): string {
  return `${r.messages} × ${r.bytes / 1e6} MB queued, restart, slow relay (${r.relayDelayMs} ms per reply, ${r.relayRate / 1e6} MB/s per message${r.extra ? `; ${r.extra.trim().replace(/\n\s*/g, ' ')}` : ''}): peak RSS ${mib(r.peakRss)} (goal < ${RESTART_GOAL_MB} MB = ${goalMiB.toFixed(1)} MiB: ${r.peakRss < goalMiB ? 'met' : 'NOT met'}); /readyz after ${r.readyMs.toFixed(0)} ms; all ${r.delivered}/${r.messages} at the relay after ${(r.deliveredMs / 1000).toFixed(1)} s; RSS after ${mib(r.rssIdle)}${r.ok ? '' : '  (errors)'} [sampled every 20 ms ${mib(r.sampledPeak)}, kernel high-water mark ${r.hwm === null ? 'n/a' : mib(r.hwm)}]`;
}

export function restartMarkdown(r: RestartResult): string {
  return `| ${r.messages} × ${r.bytes / 1e6} MB queued, restart, slow relay | peak RSS ${mib(r.peakRss)}, /readyz ${r.readyMs.toFixed(0)} ms, all at the relay after ${(r.deliveredMs / 1000).toFixed(1)} s (${r.delivered}/${r.messages}) | < ${RESTART_GOAL_MB} MB: ${r.peakRss < goalMiB ? 'met' : '**not met**'} |`;
}
