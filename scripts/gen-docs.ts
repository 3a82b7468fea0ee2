// Generates docs/configuration.md from the schema's descriptions and the issue-code table.
import { readFileSync } from 'node:fs';
import { ISSUE_CODES } from '../src/config/codes.js';
import { writeOrCheck } from './generated.js';

type Schema = {
  title?: string;
  description?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  $ref?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
};

const SCHEMA = new URL('../schema/mailserver.schema.json', import.meta.url);
const OUT = new URL('../docs/configuration.md', import.meta.url);
const root = JSON.parse(readFileSync(SCHEMA, 'utf8')) as Schema & { definitions: Record<string, Schema> };

function deref(s: Schema): Schema {
  if (!s.$ref) return s;
  const name = s.$ref.replace('#/definitions/', '');
  const def = root.definitions[name]!;
  return { ...def, ...s, description: s.description ?? def.description, $ref: undefined };
}

function typeOf(s: Schema): string {
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((e) => `\`${String(e)}\``).join(' \\| ');
  if (s.$ref?.endsWith('/duration')) return 'duration';
  const t = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (t.includes('array')) return `list of ${s.items ? typeOf(deref(s.items)) : 'values'}`;
  if (t.includes('object')) return 'mapping';
  return t.join(' or ');
}

function defaultOf(s: Schema): string {
  if (s.default === undefined) return '';
  if (Array.isArray(s.default) && s.default.length && typeof s.default[0] === 'object') return 'see description';
  if (typeof s.default === 'object' && !Array.isArray(s.default) && Object.keys(s.default as object).length === 0) return '';
  return `\`${JSON.stringify(s.default)}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

const rows: string[] = [];
function walk(s: Schema, path: string, required: boolean): void {
  const d = deref(s);
  if (path) {
    const notes: string[] = [];
    if (required) notes.push('**required**');
    if (d.type === 'integer' && d.minimum !== undefined) notes.push(`min ${d.minimum}`);
    if (d.type === 'integer' && d.maximum !== undefined) notes.push(`max ${d.maximum}`);
    if (d.format) notes.push(`format: ${d.format}`);
    rows.push(`| \`${path}\` | ${typeOf(s)} | ${defaultOf(d)} | ${cell([notes.join(', '), d.description ?? ''].filter(Boolean).join('. '))} |`);
  }
  for (const [k, child] of Object.entries(d.properties ?? {})) walk(child, path ? `${path}.${k}` : k, (d.required ?? []).includes(k));
  if (d.items?.properties) {
    for (const [k, child] of Object.entries(d.items.properties)) walk(child, `${path}[].${k}`, (d.items.required ?? []).includes(k));
  }
}
walk(root, '', false);

const codes = Object.entries(ISSUE_CODES).map(([code, text]) => `| \`${code}\` | ${cell(text)} |`);

const doc = `<!-- Generated from schema/mailserver.schema.json and src/config/codes.ts by \`npm run generate\`. Do not edit by hand. -->
# Configuration reference

mailplane reads one file, \`mailserver.yaml\`. Its contract is the JSON Schema
[\`schema/mailserver.schema.json\`](../schema/mailserver.schema.json); editors that speak
yaml-language-server validate and complete it when the file starts with

\`\`\`yaml
# yaml-language-server: $schema=path/to/mailplane/schema/mailserver.schema.json
\`\`\`

(a relative path from the config file to the schema). Check a file with \`mailplane validate FILE\`.

* Sizes are bytes or strings with a unit: \`KB\`, \`MB\`, \`GB\` (×1000), \`KiB\`, \`MiB\`, \`GiB\` (×1024).
* Durations are seconds, or strings such as \`500ms\`, \`30s\`, \`5m\`, \`2h\`, \`5d\`.
* Relative file paths resolve against the folder of the config file.
* Secrets never appear in the file: password hashes for local users, and files (or an
  environment variable) for the relay and LDAP passwords.

## Fields

| key | type | default | description |
|---|---|---|---|
${rows.join('\n')}

## Problem codes

\`mailplane validate --format json\` reports each problem with one of these stable codes.

| code | meaning |
|---|---|
${codes.join('\n')}
`;

writeOrCheck(OUT, doc, 'docs/configuration.md');
