// The documented blocks the tests run: the fenced code block that follows a marker in a doc, so
// a test and the doc it proves can never drift apart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

/**
 * The fenced block after the first occurrence of `marker` in docs/<file> (with its final line
 * end), its indentation (a block inside a list item) removed.
 */
export function docBlock(file: string, marker: string): string {
  const doc = readFileSync(join(ROOT, 'docs', file), 'utf8');
  const at = doc.indexOf(marker);
  assert.ok(at >= 0, `docs/${file} has no "${marker}"`);
  const m = /( *)```[a-z]*\n([\s\S]*?\n) *```/.exec(doc.slice(at));
  assert.ok(m, `docs/${file}: no code block after "${marker}"`);
  const indent = m[1]!.length;
  return indent ? m[2]!.replace(new RegExp(`^ {0,${indent}}`, 'gm'), '') : m[2]!;
}
