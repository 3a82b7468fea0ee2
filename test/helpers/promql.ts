// What a PromQL expression refers to (metric names, label matchers, grouping labels), parsed
// with Prometheus's own grammar (@prometheus-io/lezer-promql, the one its web UI uses), and a
// check of those references against what a live /metrics really exports.
import { parser } from '@prometheus-io/lezer-promql';

/** metric (series) name → label name → values seen */
export type Exposition = Map<string, Map<string, Set<string>>>;

/** Prometheus text format → the series names and labels it holds. */
export function parseExposition(text: string): Exposition {
  const out: Exposition = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+/);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels = out.get(m[1]!) ?? new Map<string, Set<string>>();
    out.set(m[1]!, labels);
    for (const [, name, value] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      const values = labels.get(name!) ?? new Set<string>();
      labels.set(name!, values);
      values.add(value!);
    }
  }
  return out;
}

export interface Matcher {
  readonly label: string;
  readonly op: string;
  readonly value: string;
}

export interface References {
  readonly selectors: { metric: string | null; matchers: Matcher[] }[];
  /** labels named in by/without/on/ignoring/group_left/group_right */
  readonly groupingLabels: string[];
  readonly syntaxErrors: string[];
}

export function references(expr: string): References {
  const tree = parser.parse(expr);
  const selectors: References['selectors'] = [];
  const groupingLabels: string[] = [];
  const syntaxErrors: string[] = [];
  const text = (from: number, to: number) => expr.slice(from, to);
  tree.iterate({
    enter(node) {
      if (node.type.isError) syntaxErrors.push(`syntax error at ${node.from}: …${expr.slice(Math.max(0, node.from - 20), node.from + 20)}…`);
      if (node.name === 'VectorSelector') {
        const n = node.node;
        const id = n.getChild('Identifier');
        const matchers: Matcher[] = [];
        const list = n.getChild('LabelMatchers');
        for (let c = list?.firstChild ?? null; c; c = c.nextSibling) {
          if (!c.name.endsWith('LabelMatcher')) continue;
          const name = c.getChild('LabelName') ?? c.getChild('QuotedLabelName');
          const op = c.getChild('MatchOp');
          const value = c.getChild('StringLiteral');
          if (!name || !op || !value) continue;
          matchers.push({ label: text(name.from, name.to).replace(/^"|"$/g, ''), op: text(op.from, op.to), value: JSON.parse(text(value.from, value.to).replace(/^'|'$/g, '"')) as string });
        }
        selectors.push({ metric: id ? text(id.from, id.to) : null, matchers });
      }
      if (node.name === 'GroupingLabels') {
        for (let c = node.node.firstChild; c; c = c.nextSibling) if (c.name === 'LabelName') groupingLabels.push(text(c.from, c.to));
      }
    },
  });
  return { selectors, groupingLabels, syntaxErrors };
}

export interface CheckOptions {
  /** labels Prometheus attaches to every series of a target (job, instance) */
  readonly targetLabels: readonly string[];
  /** series Prometheus makes itself (up) */
  readonly synthetic: readonly string[];
}

/** Problems of one expression against a live exposition: unknown metrics, labels or label values. */
export function checkExpr(expr: string, live: Exposition, o: CheckOptions): string[] {
  const refs = references(expr);
  const problems = [...refs.syntaxErrors];
  const known = new Set<string>(o.targetLabels);
  for (const s of refs.selectors) {
    if (!s.metric) {
      problems.push('a selector without a metric name');
      continue;
    }
    const labels = live.get(s.metric);
    if (!labels && !o.synthetic.includes(s.metric)) {
      problems.push(`metric ${s.metric} is not exported`);
      continue;
    }
    for (const l of labels?.keys() ?? []) known.add(l);
    for (const m of s.matchers) {
      if (o.targetLabels.includes(m.label)) continue;
      const values = labels?.get(m.label);
      if (!values) {
        problems.push(`${s.metric} has no label ${m.label}`);
      } else if (m.op === '=' && !values.has(m.value)) {
        problems.push(`${s.metric}{${m.label}="${m.value}"}: no such value (seen: ${[...values].join(', ')})`);
      } else if (m.op === '=~' && ![...values].some((v) => new RegExp(`^(?:${m.value})$`).test(v))) {
        problems.push(`${s.metric}{${m.label}=~"${m.value}"}: matches no value (seen: ${[...values].join(', ')})`);
      }
    }
  }
  for (const g of refs.groupingLabels) if (!known.has(g)) problems.push(`grouping by ${g}, which no metric of the expression has`);
  return problems.map((p) => `${p}\n    in: ${expr}`);
}
