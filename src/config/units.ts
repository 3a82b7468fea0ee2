// Sizes and durations as written in mailserver.yaml. The schema checks their shape;
// these turn them into numbers.

const SIZE_UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

/** Bytes from an integer or a string such as "25MB" / "10MiB". */
export function parseSize(v: number | string): number {
  if (typeof v === 'number') return v;
  const m = v.trim().match(/^([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/);
  if (!m) throw new Error(`not a size: ${v}`);
  return Math.floor(Number(m[1]) * (SIZE_UNITS[m[2] ?? 'B'] ?? 1));
}

/** Milliseconds from seconds (integer) or a string such as "30s" / "5m" / "500ms". */
export function parseDuration(v: number | string): number {
  if (typeof v === 'number') return v * 1000;
  const m = v.trim().match(/^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)$/);
  if (!m) throw new Error(`not a duration: ${v}`);
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] ?? 's'] ?? 1000));
}

/** The largest whole unit of a duration, for people: 3600000 → "1h", 90000 → "90s". */
export function formatDuration(ms: number): string {
  for (const [unit, size] of Object.entries(DURATION_UNITS).reverse()) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}
