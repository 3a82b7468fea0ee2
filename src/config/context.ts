// State shared by the checks of one load: where findings go, and referenced files read
// once (their content feeds both the checks and the state's hash).
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { IssueCode } from './codes.js';
import { dottedPath, issue, type ConfigIssue, type Severity } from './issues.js';
import type { ConfigSource, PathSegment, Position } from './source.js';

export class LoadContext {
  readonly issues: ConfigIssue[] = [];
  /** absolute path → content, for every referenced file read successfully */
  readonly files = new Map<string, string>();
  /** files holding raw passwords: hashed through their Secret (slowly), not as plain files */
  readonly secretFiles = new Set<string>();
  readonly baseDir: string;

  constructor(
    readonly source: ConfigSource,
    readonly env: NodeJS.ProcessEnv,
    readonly now: number,
    /** base for relative paths; the config file's folder unless given */
    baseDir?: string,
  ) {
    this.baseDir = baseDir ?? dirname(resolve(source.file));
  }

  resolvePath(p: string): string {
    return isAbsolute(p) ? p : resolve(this.baseDir, p);
  }

  /** Reads a referenced file; on failure records an error at the value that names it. */
  readFile(path: readonly PathSegment[], p: string, holds: 'data' | 'password' = 'data'): string | null {
    const abs = this.resolvePath(p);
    if (holds === 'password') this.secretFiles.add(abs);
    const known = this.files.get(abs);
    if (known !== undefined) return known;
    try {
      const text = readFileSync(abs, 'utf8');
      this.files.set(abs, text);
      return text;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? (e as Error).message})`;
      const shown = displayPath(abs);
      this.error('MP_FILE_UNREADABLE', path, `file ${JSON.stringify(p)} ${why}${shown !== p ? ` (looked for ${shown})` : ''}`);
      return null;
    }
  }

  error(code: IssueCode, path: readonly PathSegment[], message: string, at: 'value' | 'key' = 'value'): void {
    this.add('error', code, path, message, at);
  }

  warn(code: IssueCode, path: readonly PathSegment[], message: string, at: 'value' | 'key' = 'value'): void {
    this.add('warning', code, path, message, at);
  }

  /** A finding inside another file (e.g. a line of usersFile). */
  addAt(severity: Severity, code: IssueCode, where: Position, path: string, message: string): void {
    this.issues.push(issue(severity, code, where, path, message));
  }

  private add(severity: Severity, code: IssueCode, path: readonly PathSegment[], message: string, at: 'value' | 'key'): void {
    const where = at === 'key' ? this.source.keyAt(path) : this.source.valueAt(path);
    this.issues.push(issue(severity, code, where, dottedPath(path), message));
  }
}

/** A path as people should see it: relative to the working directory when it lies below it. */
export function displayPath(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}
