// Parses config text keeping node positions, so every later finding can point at
// file:line:col. The raw JS value is the only thing validation and normalize walk.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { issue, type ConfigIssue } from './issues.js';

export type PathSegment = string | number;

export interface Position {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export class ConfigSource {
  readonly value: unknown;

  /** set when the document parses but cannot become a value (an alias to nothing, alias bombs) */
  readonly valueError: { offset: number; message: string } | null = null;

  private constructor(
    readonly file: string,
    readonly text: string,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {
    let value: unknown;
    if (!doc.errors.length) {
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (e) {
        this.valueError = { offset: badAliasOffset(doc), message: (e as Error).message };
      }
    }
    this.value = value;
  }

  /** Parses text; YAML errors (syntax, duplicate keys) come back as issues with positions. */
  static parse(file: string, text: string): { source: ConfigSource; errors: ConfigIssue[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true });
    const src = new ConfigSource(file, text, doc, lines);
    const errors = doc.errors.map((e) => {
      const p = src.at(e.pos[0]);
      if (e.code === 'DUPLICATE_KEY') {
        const key = (text.slice(e.pos[0]).match(/^("[^"]*"|'[^']*'|[^:\s]+)/)?.[1] ?? '').replace(/^["']|["']$/g, '');
        return issue('error', 'MP_YAML_SYNTAX', p, '', `duplicate key '${key}': a key may appear only once in a mapping`);
      }
      return issue('error', 'MP_YAML_SYNTAX', p, '', yamlMessage(e.message));
    });
    if (src.valueError) {
      errors.push(issue('error', 'MP_YAML_SYNTAX', src.at(src.valueError.offset), '', yamlMessage(src.valueError.message)));
    }
    return { source: src, errors };
  }

  /** Position of a character offset. */
  at(offset: number): Position {
    const { line, col } = this.lines.linePos(Math.max(0, Math.min(offset, this.text.length)));
    return { file: this.file, line, col };
  }

  /** Position of the value at path, or of its nearest existing ancestor. */
  valueAt(path: readonly PathSegment[]): Position {
    for (let n = path.length; n >= 0; n--) {
      const node = this.node(path.slice(0, n));
      if (node?.range) return this.at(node.range[0]);
      if (n === 0) break;
    }
    return { file: this.file, line: 1, col: 1 };
  }

  /** Position of the key naming path's last segment (for a list item: the item itself). */
  keyAt(path: readonly PathSegment[]): Position {
    if (path.length === 0) return { file: this.file, line: 1, col: 1 };
    const parent = this.node(path.slice(0, -1));
    const last = path[path.length - 1];
    if (isMap(parent)) {
      for (const pair of parent.items) {
        if (isPair(pair) && isScalar(pair.key) && String(pair.key.value) === String(last) && pair.key.range) {
          return this.at(pair.key.range[0]);
        }
      }
    }
    return this.valueAt(path);
  }

  /** Position of the key that holds the object at path (for "missing key" findings). */
  ownerAt(path: readonly PathSegment[]): Position {
    if (path.length === 0) return { file: this.file, line: 1, col: 1 };
    return typeof path[path.length - 1] === 'number' ? this.valueAt(path) : this.keyAt(path);
  }

  /** Names of the keys present in the mapping at path (empty when it is not a mapping). */
  keysAt(path: readonly PathSegment[]): string[] {
    const node = this.node(path);
    if (!isMap(node)) return [];
    return node.items.flatMap((p) => (isPair(p) && isScalar(p.key) ? [String(p.key.value)] : []));
  }

  /** Every path in the document whose key is one of names (any depth). */
  findKeys(names: ReadonlySet<string>): PathSegment[][] {
    const out: PathSegment[][] = [];
    const walk = (node: unknown, path: PathSegment[]): void => {
      if (isMap(node)) {
        for (const p of node.items) {
          if (!isPair(p) || !isScalar(p.key)) continue;
          const key = String(p.key.value);
          if (names.has(key)) out.push([...path, key]);
          walk(p.value, [...path, key]);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => walk(item, [...path, i]));
      }
    };
    walk(this.doc.contents, []);
    return out;
  }

  private node(path: readonly PathSegment[]): Node | undefined {
    if (path.length === 0) return this.doc.contents ?? undefined;
    const n = this.doc.getIn(path, true);
    return n && typeof n === 'object' ? (n as Node) : undefined;
  }
}

/** Where the first alias without an anchor is (or the start of the document). */
function badAliasOffset(doc: Document.Parsed): number {
  let offset = 0;
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) === undefined) {
        offset = node.range?.[0] ?? 0;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return offset;
}

/** YAML's messages end with " at line L, column C:" and a code frame; we print positions ourselves. */
function yamlMessage(message: string): string {
  const first = (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?\s*$/, '').trim();
  return `YAML syntax: ${first.charAt(0).toLowerCase()}${first.slice(1)}`;
}
