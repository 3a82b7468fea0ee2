// JSON Schema validation with ajv, and ajv's findings turned into messages for people:
// positioned at the offending key or value, unknown keys with a "did you mean".
import { readFileSync } from 'node:fs';
import { readFile as readFileAsync } from 'node:fs/promises';
import AjvModule, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { closest } from './suggest.js';
import { dottedPath, issue, type ConfigIssue } from './issues.js';
import type { ConfigSource, PathSegment } from './source.js';

const Ajv = AjvModule.default;
const addFormats = addFormatsModule.default;

export const SCHEMA_URL = new URL('../../schema/mailserver.schema.json', import.meta.url);

type JsonSchema = Record<string, unknown>;

let compiled: { validate: ValidateFunction; schema: JsonSchema } | undefined;
let preparing: Promise<void> | undefined;

export function loadSchema(): JsonSchema {
  return JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as JsonSchema;
}

/** Reads and compiles the schema once, without a blocking read; validateSchema then uses it. */
export function prepareSchema(): Promise<void> {
  if (compiled) return Promise.resolve();
  preparing ??= readFileAsync(SCHEMA_URL, 'utf8').then(
    (text) => {
      compiled ??= compile(JSON.parse(text) as JsonSchema);
    },
    (e: unknown) => {
      preparing = undefined; // let a later load try again (or fail loudly in validator())
      throw e;
    },
  );
  return preparing;
}

function compile(schema: JsonSchema): { validate: ValidateFunction; schema: JsonSchema } {
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    strictRequired: false,
    allowUnionTypes: true,
    useDefaults: true,
    coerceTypes: false,
  });
  ajv.addKeyword({ keyword: 'patternErrorMessage', schemaType: 'string' });
  addFormats(ajv);
  return { validate: ajv.compile(schema), schema };
}

/** The compiled schema; read synchronously only when nothing called prepareSchema() first. */
function validator(): { validate: ValidateFunction; schema: JsonSchema } {
  compiled ??= compile(loadSchema());
  return compiled;
}

/**
 * Validates value in place (ajv fills schema defaults into it) and returns positioned issues.
 * Defaults live only in the schema; this is where they are applied.
 */
export function validateSchema(value: unknown, source: ConfigSource): ConfigIssue[] {
  const { validate, schema } = validator();
  if (validate(value)) return [];
  const errors = validate.errors ?? [];
  // "unknown key 'prot'; did you mean 'port'?" already explains the missing 'port'
  const suggested = new Set<string>();
  for (const err of errors) {
    if (err.keyword !== 'additionalProperties') continue;
    const hint = closest(String(err.params.additionalProperty), knownKeys(schema, err.schemaPath));
    if (hint) suggested.add(`${err.instancePath}/${hint}`);
  }
  const out: ConfigIssue[] = [];
  for (const err of errors) {
    if (err.keyword === 'required' && suggested.has(`${err.instancePath}/${String(err.params.missingProperty)}`)) continue;
    const found = describe(err, schema, source);
    if (found) out.push(found);
  }
  return dedupe(out);
}

function describe(err: ErrorObject, root: JsonSchema, source: ConfigSource): ConfigIssue | null {
  const path = pointerToPath(err.instancePath);
  const at = dottedPath(path);
  const sub = schemaAt(root, err.schemaPath.replace(/\/[^/]+$/, '')); // the schema holding the failed keyword
  const p = err.params as Record<string, unknown>;
  switch (err.keyword) {
    case 'if':
      return null; // the failing `then` branch reports the actual problem
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const hint = closest(key, knownKeys(root, err.schemaPath));
      return issue('error', 'MP_UNKNOWN_KEY', source.keyAt([...path, key]), dottedPath([...path, key]), `unknown key '${key}'${hint ? `; did you mean '${hint}'?` : ''}`);
    }
    case 'required': {
      const missing = String(p.missingProperty);
      const conditional = /\/then\/required$/.test(err.schemaPath);
      const why = conditional ? conditionText(root, err.schemaPath) : '';
      return issue('error', 'MP_MISSING_KEY', source.ownerAt(path), at || '(top level)', `missing required key '${missing}'${why}`);
    }
    case 'type': {
      const want = String(p.type).split(',').map(typeLabel).join(' or ');
      // never echo what sits where a secret belongs
      const got = /password|secret/i.test(at) ? 'something else' : typeName(valueAt(err, path, source));
      return issue('error', 'MP_TYPE', source.valueAt(path), at, `must be ${want}, got ${got}`);
    }
    case 'const':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must be ${JSON.stringify(p.allowedValue)}`);
    case 'enum': {
      const allowed = (p.allowedValues as unknown[]).map(String);
      const got = valueAt(err, path, source);
      const hint = typeof got === 'string' ? closest(got, allowed) : undefined;
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must be one of ${allowed.join(', ')}; got ${JSON.stringify(got)}${hint ? ` (did you mean '${hint}'?)` : ''}`);
    }
    case 'pattern': {
      const custom = (sub.patternErrorMessage as string | undefined) ?? refMessage(root, err.schemaPath);
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, custom ?? `must match ${String(p.pattern)}`);
    }
    case 'format':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must be a valid ${String(p.format)}`);
    case 'minimum':
    case 'maximum':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must be ${String(p.comparison)} ${String(p.limit)}`);
    case 'minItems':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must have at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}`);
    case 'maxItems':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must have at most ${String(p.limit)} items`);
    case 'minLength':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`);
    case 'maxLength':
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, `must be at most ${String(p.limit)} characters`);
    default:
      return issue('error', 'MP_INVALID_VALUE', source.valueAt(path), at, err.message ?? 'is invalid');
  }
}

function knownKeys(root: JsonSchema, additionalPropertiesPath: string): string[] {
  return Object.keys(schemaAt(root, additionalPropertiesPath.replace(/\/additionalProperties$/, '')).properties ?? {});
}

function pointerToPath(pointer: string): PathSegment[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function schemaAt(root: JsonSchema, schemaPath: string): JsonSchema {
  let node: unknown = root;
  for (const seg of schemaPath.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    node = (node as Record<string, unknown> | undefined)?.[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return (node ?? {}) as JsonSchema;
}

/** Messages for shared definitions (`#/definitions/x/pattern`) live on the definition. */
function refMessage(root: JsonSchema, schemaPath: string): string | undefined {
  const def = schemaPath.match(/^#\/definitions\/([^/]+)\//);
  if (!def?.[1]) return undefined;
  return schemaAt(root, `#/definitions/${def[1]}`).patternErrorMessage as string | undefined;
}

/** " (required when type is ldap)" from the sibling `if` of a failing `then`. */
function conditionText(root: JsonSchema, schemaPath: string): string {
  const cond = schemaAt(root, schemaPath.replace(/\/then\/required$/, '/if')) as { properties?: Record<string, { const?: unknown }> };
  const entries = Object.entries(cond.properties ?? {});
  if (!entries.length) return '';
  return ` (required when ${entries.map(([k, v]) => `${k} is ${JSON.stringify(v.const)}`).join(' and ')})`;
}

function valueAt(err: ErrorObject, path: PathSegment[], source: ConfigSource): unknown {
  if ('data' in err) return err.data;
  let v: unknown = source.value;
  for (const seg of path) v = (v as Record<string | number, unknown> | undefined)?.[seg];
  return v;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'number') return Number.isInteger(v) ? `integer ${v}` : `number ${v}`;
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v === 'boolean' ? `boolean ${v}` : typeof v;
}

function typeLabel(t: string): string {
  const labels: Record<string, string> = {
    object: 'a mapping',
    array: 'a list',
    integer: 'an integer',
    number: 'a number',
    string: 'a string',
    boolean: 'a boolean (true or false)',
    null: 'null',
  };
  return labels[t] ?? t;
}

function dedupe(list: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return list.filter((i) => {
    const k = `${i.line}:${i.col}:${i.path}:${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
