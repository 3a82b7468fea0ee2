// Problems found in a config file: one shape for YAML, schema and semantic findings,
// each with a position, a dotted path and a stable code for programs.
import { ISSUE_CODES, type IssueCode } from './codes.js';

export type Severity = 'error' | 'warning';

export interface ConfigIssue {
  readonly severity: Severity;
  readonly code: IssueCode;
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Dotted path into the config, e.g. `smtp.listeners[1].port`; empty for the whole file. */
  readonly path: string;
  readonly message: string;
}

export function issue(severity: Severity, code: IssueCode, where: { file: string; line: number; col: number }, path: string, message: string): ConfigIssue {
  if (!(code in ISSUE_CODES)) throw new Error(`unknown issue code ${code}`);
  return { severity, code, file: where.file, line: where.line, col: where.col, path, message };
}

export function formatIssue(i: ConfigIssue): string {
  const where = `${i.file}:${i.line}:${i.col}: `;
  const kind = i.severity === 'warning' ? 'warning: ' : '';
  return `${where}${kind}${i.path ? `${i.path}: ` : ''}${i.message}`;
}

export function sortIssues(list: readonly ConfigIssue[]): ConfigIssue[] {
  return [...list].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || a.path.localeCompare(b.path) || a.message.localeCompare(b.message));
}

/** Dotted path from a list of keys and indexes: ['smtp','listeners',1,'port'] → smtp.listeners[1].port */
export function dottedPath(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else out += out ? `.${s}` : s;
  }
  return out;
}
