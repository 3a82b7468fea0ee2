// Specs as plain JSON, for comparing and for publishing. Secrets become their digest (keyed by
// a random per-process key: comparable within this process, worthless outside it) or, in what
// /status publishes, only "set"; PEM text becomes its sha256. Changes are listed leaf by leaf,
// with config-like paths: `limits.idleTimeout: 300000ms → 60000ms`, `domains added: x`.
import { createHash } from 'node:crypto';
import { Secret } from './secret.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** 'digest': secrets as keyed digests (in-process comparisons); 'presence': only that they are set. */
export type SecretMode = 'digest' | 'presence';

export function canonical(v: unknown, secrets: SecretMode): Json {
  if (v instanceof Secret) return { secret: secrets === 'digest' ? v.digest() : 'set' };
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return /-----BEGIN /.test(v) ? { sha256: createHash('sha256').update(v).digest('hex') } : v;
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map((x) => canonical(x, secrets));
  if (typeof v === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = canonical(x, secrets);
    return out;
  }
  return typeof v === 'bigint' || typeof v === 'symbol' ? v.toString() : typeof v; // functions: their kind only
}

export function sameJson(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as Json[]).length && a.every((x, i) => sameJson(x, (b as Json[])[i]!));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => k in (b as object) && sameJson((a as Record<string, Json>)[k]!, (b as Record<string, Json>)[k]!));
}

const isLeafObject = (v: Json): v is { secret: string } | { sha256: string } => !!v && typeof v === 'object' && !Array.isArray(v) && ('secret' in v || 'sha256' in v) && Object.keys(v).length === 1;
const isScalar = (v: Json) => v === null || typeof v !== 'object';

/** One line per changed leaf, for people. */
export function describeChanges(a: Json, b: Json, path = ''): string[] {
  if (sameJson(a, b)) return [];
  const label = path.replace(/Ms(?=$|\.)/g, '');
  if (isLeafObject(a) || isLeafObject(b)) {
    if (a && typeof a === 'object' && 'secret' in a) return [`${label}: changed`];
    if (b && typeof b === 'object' && 'secret' in b) return [`${label}: ${a === null ? 'set' : 'changed'}`];
    return [`${label}: content changed`];
  }
  if (Array.isArray(a) && Array.isArray(b)) return describeList(a, b, path, label);
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => describeChanges(a[k] ?? null, b[k] ?? null, path ? `${path}.${k}` : k));
  }
  return [`${label}: ${show(a, path)} → ${show(b, path)}`];
}

function describeList(a: Json[], b: Json[], path: string, label: string): string[] {
  if (a.every(isScalar) && b.every(isScalar)) {
    const added = b.filter((x) => !a.some((y) => sameJson(x, y)));
    const removed = a.filter((x) => !b.some((y) => sameJson(x, y)));
    const out: string[] = [];
    if (added.length) out.push(`${label} added: ${added.map((x) => show(x, path)).join(', ')}`);
    if (removed.length) out.push(`${label} removed: ${removed.map((x) => show(x, path)).join(', ')}`);
    return out.length ? out : [`${label}: order changed`];
  }
  // lists of named things (users): by name
  const named = (l: Json[]) => l.every((x) => x && typeof x === 'object' && !Array.isArray(x) && typeof (x as Record<string, Json>).name === 'string');
  if (named(a) && named(b)) {
    const byName = (l: Json[]) => new Map(l.map((x) => [(x as Record<string, Json>).name as string, x]));
    const [ma, mb] = [byName(a), byName(b)];
    const out: string[] = [];
    const added = [...mb.keys()].filter((k) => !ma.has(k));
    const removed = [...ma.keys()].filter((k) => !mb.has(k));
    if (added.length) out.push(`${label} added: ${added.join(', ')}`);
    if (removed.length) out.push(`${label} removed: ${removed.join(', ')}`);
    for (const [k, x] of mb) if (ma.has(k)) out.push(...describeChanges(ma.get(k)!, x, `${path}.${k}`));
    return out;
  }
  return [`${label}: changed`];
}

function show(v: Json, path: string): string {
  if (v === null) return /\.address$/.test(path) ? 'all interfaces' : 'none';
  if (typeof v === 'number' && /Ms$/.test(path)) return `${v}ms`;
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}
