// Generates src/config/types.generated.ts from the schema. `--check` fails when the committed file is stale.
import { readFileSync } from 'node:fs';
import { compile } from 'json-schema-to-typescript';
import { writeOrCheck } from './generated.js';

const SCHEMA = new URL('../schema/mailserver.schema.json', import.meta.url);
const OUT = new URL('../src/config/types.generated.ts', import.meta.url);

const schema = JSON.parse(readFileSync(SCHEMA, 'utf8')) as Parameters<typeof compile>[0];
const ts = await compile(schema, 'MailserverConfig', {
  additionalProperties: false,
  bannerComment: '/* Generated from schema/mailserver.schema.json by `npm run generate`. Do not edit by hand. */\n/* eslint-disable */',
  cwd: new URL('../schema/', import.meta.url).pathname,
  declareExternallyReferenced: true,
  enableConstEnums: false,
  strictIndexSignatures: true,
  format: true,
  style: { singleQuote: true, printWidth: 120 },
  unreachableDefinitions: false,
});

writeOrCheck(OUT, ts, 'src/config/types.generated.ts');
