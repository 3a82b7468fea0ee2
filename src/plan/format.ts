// Human forms of a Plan: one line per action for logs and /-/reload, and the Markdown-friendly
// report `mailplane plan` prints (fit for a pull-request comment).
import { touchesSockets, type Action, type Plan } from './plan.js';

function where(spec: { address: string | null; port: number }): string {
  return `${spec.address ?? '*'}:${spec.port}`;
}

export function describe(a: Action): string {
  switch (a.kind) {
    case 'listener.add':
      return `add listener ${a.listener} (${a.spec.role}, ${where(a.spec)}, tls ${a.spec.tls}): binds a new socket`;
    case 'listener.remove':
      return `remove listener ${a.listener} (${where(a.spec)}): stops accepting, open sessions drain`;
    case 'listener.rebind':
      return `rebind listener ${a.listener} (${a.changes.join('; ')}): new connections go to the new settings, open sessions drain`;
    case 'listener.update':
      return `update listener ${a.listener} (${a.changes.join('; ')}): new sessions only, no socket touched`;
    case 'tls.rotate':
      return `rotate certificate ${short(a.from)} → ${short(a.to)}${a.notAfter ? ` (expires ${new Date(a.notAfter).toISOString().slice(0, 10)})` : ''}: swapped in place, no restart`;
    case 'policy.update':
      return `update policy (${a.changes.join('; ')}): new sessions only`;
    case 'accounts.update':
      return `update accounts (${a.changes.join('; ')}): new sessions only`;
    case 'relay.update':
      return `update relay (${a.changes.join('; ')}): new deliveries only, sends in flight finish`;
    case 'storage.update':
      return `update storage (${a.changes.join('; ')}): new messages go to the new data directory`;
    case 'observability.rebind':
      return `move observability endpoint ${a.from} → ${a.to}: binds a new socket`;
  }
}

function short(fp: string | null): string {
  return fp ? fp.replace(/:/g, '').slice(0, 16).toLowerCase() : 'none';
}

/** One line per action, for logs and JSON. */
export function summarize(plan: Plan): string[] {
  return plan.actions.map(describe);
}

/** The `mailplane plan` report. */
export function formatPlan(plan: Plan): string {
  if (plan.actions.length === 0) return 'No changes. The running server already matches this config.\n';
  const lines = plan.actions.map((a) => `${touchesSockets(a) ? '!' : '~'} ${describe(a)}`);
  const sockets = plan.actions.filter(touchesSockets).length;
  return [
    `Plan: ${plan.actions.length} change${plan.actions.length === 1 ? '' : 's'}, ${sockets} touching sockets or draining sessions.`,
    '',
    ...lines,
    '',
    '  ! binds or closes a socket, or drains open sessions',
    '  ~ applied in place to new sessions; nothing is closed',
    '',
  ].join('\n');
}
