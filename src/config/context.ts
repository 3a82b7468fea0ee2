// State shared by the checks of one load: where findings go, and referenced files read
// once (their content feeds both the checks and the state's hash).
//
// The checks never touch the disk: they look referenced files up in `reads`, which the loader
// fills beforehand (asynchronously for a running server; see load.ts). A file the checks ask
// for that is not there yet is noted in `missing`; the loader reads those and runs the
// checks again.
import { readFile as readFileAsync } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { IssueCode } from './codes.js';
import { dottedPath, issue, type ConfigIssue, type Severity } from './issues.js';
import type { ConfigSource, PathSegment, Position } from './source.js';

/** What reading one referenced file gave: its content, or why it could not be read. */
export type FileRead = { readonly text: string } | { readonly error: unknown };

/** Reads the files (absolute paths) into reads, all at once and without blocking the event loop. */
export async function readFilesAsync(paths: Iterable<string>, reads: Map<string, FileRead>): Promise<void> {
  const todo = [...new Set(paths)].filter((abs) => !reads.has(abs));
  const done = await Promise.all(
    todo.map((abs) =>
      readFileAsync(abs, 'utf8').then(
        (text): FileRead => ({ text }),
        (error: unknown): FileRead => ({ error }),
      ),
    ),
  );
  todo.forEach((abs, i) => reads.set(abs, done[i]!));
}

export class LoadContext {
  readonly issues: ConfigIssue[] = [];
  /** absolute path → content, for every referenced file read successfully */
  readonly files = new Map<string, string>();
  /** files the checks asked for that were not in `reads` (their findings are then incomplete) */
  readonly missing = new Set<string>();
  readonly baseDir: string;

  constructor(
    readonly source: ConfigSource,
    readonly env: NodeJS.ProcessEnv,
    readonly now: number,
    /** base for relative paths; the config file's folder unless given */
    baseDir: string | undefined,
    /** absolute path → what reading it gave, filled by the loader before the checks run */
    private readonly reads: ReadonlyMap<string, FileRead> = new Map(),
  ) {
    this.baseDir = baseDir ?? dirname(resolve(source.file));
  }

  resolvePath(p: string): string {
    return isAbsolute(p) ? p : resolve(this.baseDir, p);
  }

  /**
   * A referenced file's content, looked up in what the loader read (no I/O here); on failure
   * records an error at the value that names it. A file not read yet is noted in `missing`.
   */
  readFile(path: readonly PathSegment[], p: string): string | null {
    const abs = this.resolvePath(p);
    const known = this.files.get(abs);
    if (known !== undefined) return known;
    const read = this.reads.get(abs);
    if (read === undefined) {
      this.missing.add(abs);
      return null;
    }
    if ('text' in read) {
      this.files.set(abs, read.text);
      return read.text;
    }
    const e = read.error;
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? (e as Error).message})`;
    const shown = displayPath(abs);
    this.error('MP_FILE_UNREADABLE', path, `file ${JSON.stringify(p)} ${why}${shown !== p ? ` (looked for ${shown})` : ''}`);
    return null;
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
