// A feature measured on and off in the same run (bench/run.ts pairRows): what a variant gives —
// the message to send, the config of each server, and how to tell from a server's metrics
// that the feature ran for every message (on) or for none (off).
import type { ConfigOptions } from './harness.js';

export interface PairSetup {
  /** the message as sent (CRLF), for the latency probe */
  readonly message: string;
  /** the same with LF line ends, for smtp-source -F (which sends each line with CRLF) */
  readonly file: string;
  /** its size in bytes as sent */
  readonly size: number;
  /** what the config of the server with the feature on or off says beyond the usual */
  config(on: boolean): { extra: string; options: ConfigOptions };
  /** the counters the variant watches on the server whose ops endpoint is on `ops`: label → count */
  counts(ops: number): Promise<Map<string, number>>;
  /** whether the counts seen while `messages` were measured show the feature ran as configured */
  ran(on: boolean, seen: ReadonlyMap<string, number>, messages: number): boolean;
  stop(): Promise<void>;
}

export interface PairVariant {
  /** the bench flag that runs only this pair (`--checks N`) and the key in latest.json */
  readonly flag: string;
  /** for the printed line: "inbound checks" */
  readonly title: string;
  /** the server names of the rows, off then on */
  readonly names: readonly [string, string];
  /** what the line says about the scenario, given the message size */
  describe(size: string): string;
  /** why the rows cannot be measured here, or null */
  unavailable(): string | null;
  setUp(dir: string): Promise<PairSetup>;
}

/** A counter of the server whose ops endpoint is on `ops`, by the given labels joined with spaces ("dkim pass") → value. */
export async function metricCounts(ops: number, metric: string, labels: readonly string[]): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${ops}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    const key = labels.map((name) => m[1]!.match(new RegExp(`${name}="([^"]*)"`))?.[1] ?? '').join(' ');
    out.set(key, Number(m[2]));
  }
  return out;
}

/** What was counted between two readings, e.g. "dkim pass" → 4000. */
export function countsBetween(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) if (v - (before.get(k) ?? 0) > 0) out.set(k, v - (before.get(k) ?? 0));
  return out;
}
