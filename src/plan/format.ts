// Human forms of a Plan: one line per action for logs and /-/reload, and the report
// `mailplane plan` prints (fit for a pull-request comment).
import { touchesSockets, type Action, type Plan } from './plan.js';

function where(spec: { address: string | null; port: number }): string {
  return `${spec.address ?? '*'}:${spec.port}`;
}

function short(fp: string | null): string {
  return fp ? fp.replace(/:/g, '').slice(0, 16).toLowerCase() : 'none';
}

/** A headline and the individual changes behind it. */
export function describe(a: Action): { title: string; details: readonly string[] } {
  switch (a.kind) {
    case 'listener.add':
      return { title: `add listener ${a.listener} (${a.spec.role}, ${where(a.spec)}, tls ${a.spec.tls}): binds a new socket`, details: [] };
    case 'listener.remove':
      return { title: `remove listener ${a.listener} (${where(a.spec)}): stops accepting, open sessions drain`, details: [] };
    case 'listener.rebind':
      return { title: `rebind listener ${a.listener}: new connections get the new settings, open sessions drain`, details: a.changes };
    case 'listener.update':
      return { title: `update listener ${a.listener}: new sessions only, no socket touched`, details: a.changes };
    case 'tls.rotate':
      return {
        title: a.from === a.to ? `replace the certificate chain of ${short(a.to)}: swapped in place, no restart` : `rotate certificate ${short(a.from)} → ${short(a.to)}: swapped in place, no restart`,
        details: [
          ...a.changes.filter((c) => a.from !== a.to || c !== 'certificate chain changed'),
          ...(a.notAfter && a.from !== a.to ? [`new certificate expires ${new Date(a.notAfter).toISOString()}`] : []),
        ],
      };
    case 'policy.update':
      return { title: 'update policy: new sessions only', details: a.changes };
    case 'accounts.update':
      return { title: 'update accounts: new sessions only', details: a.changes };
    case 'relay.update':
      return { title: 'update relay: new deliveries only, sends in flight finish', details: a.changes };
    case 'delivery.update':
      return { title: 'update delivery settings: applies from the next attempt', details: a.changes };
    case 'storage.update':
      return { title: 'update storage: applies to new messages (a new dataDir receives them)', details: a.changes };
    case 'observability.rebind':
      return { title: `move observability endpoint ${a.from} → ${a.to}: binds a new socket`, details: [] };
    case 'observability.update':
      return { title: 'update access to /status and /-/reload: applies to the next request', details: a.changes };
    case 'signing.update':
      return { title: 'update DKIM signing keys: swapped in place, the next message signed uses them', details: a.changes };
    case 'mailboxes.update':
      return { title: 'update mailboxes: local copies of new messages follow, deliveries in flight over LMTP finish', details: a.changes };
    case 'dovecot.update':
      return { title: "update Dovecot's passwd-file: written atomically, Dovecot rereads it at the next login", details: a.changes };
    case 'cluster.update':
      return { title: 'update cluster settings: the shared limits move to the new Redis in place, a hand-off uses the new peer', details: a.changes };
  }
}

/** One line per action, for logs and JSON. */
export function summarize(plan: Plan): string[] {
  return plan.actions.map((a) => {
    const d = describe(a);
    return d.details.length ? `${d.title} (${d.details.join('; ')})` : d.title;
  });
}

/** The `mailplane plan` report. */
export function formatPlan(plan: Plan): string {
  if (plan.actions.length === 0) return 'No changes. The running server already matches this config.\n';
  const lines: string[] = [];
  for (const a of plan.actions) {
    const d = describe(a);
    lines.push(`${touchesSockets(a) ? '!' : '~'} ${d.title}`);
    for (const x of d.details) lines.push(`    ${x}`);
  }
  const sockets = plan.actions.filter(touchesSockets).length;
  // the legend explains the marks the report uses, and only those
  const legend = [...(sockets > 0 ? ['! binds or closes a socket, or drains open sessions'] : []), ...(sockets < plan.actions.length ? ['~ applied in place to new sessions; nothing is closed'] : [])];
  return [`Plan: ${plan.actions.length} change${plan.actions.length === 1 ? '' : 's'}, ${sockets} binding or closing sockets or draining sessions.`, '', ...lines, '', ...legend, ''].join('\n');
}
