// `mailplane plan`: what a reload would do, fit for a pull-request comment. Exit codes follow
// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes, 1 invalid or error.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatIssue } from '../config/issues.js';
import { loadConfigFile } from '../config/load.js';
import { formatPlan } from '../plan/format.js';
import { diff, specView, touchesSockets, withoutSecrets, type SpecView } from '../plan/plan.js';
import { UsageError, type Command } from './command.js';

export const planCommand: Command = {
  name: 'plan',
  summary: 'show what applying a config would change',
  usageExitCode: 1,
  usage: `Usage: mailplane plan OLD.yaml NEW.yaml
       mailplane plan NEW.yaml --server http://HOST:PORT

Prints the actions a reload from OLD (or from what a running server applied, read from
its /status) to NEW would take. Actions marked "!" bind or close a socket or drain open
sessions; "~" apply in place to new sessions.

Options:
  --server URL         compare with the running server whose ops endpoint is URL
  --token-file FILE    the bearer token for the server's /status (observability.tokenFile);
                       default: the MAILPLANE_TOKEN environment variable
  --format text|json   output format (default text)
  -h, --help           show this help

Exit status: 0 no changes, 2 changes, 1 a config is invalid or the server unreachable.`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { server: { type: 'string' }, 'token-file': { type: 'string' }, format: { type: 'string', default: 'text' } },
    });
    if (values.format !== 'text' && values.format !== 'json') throw new UsageError('--format must be text or json');
    const files = positionals;
    if (values.server ? files.length !== 1 : files.length !== 2) {
      throw new UsageError(values.server ? 'with --server give exactly one file (the new config)' : 'give OLD and NEW config files, or NEW and --server URL');
    }
    let before: SpecView | null;
    const loadView = async (file: string): Promise<SpecView | null> => {
      const r = await loadConfigFile(file);
      for (const i of [...r.errors, ...r.warnings]) process.stderr.write(`${formatIssue(i)}\n`);
      if (!r.state) {
        process.stderr.write(`${file}: invalid, no plan\n`);
        return null;
      }
      // both files in this process: a changed secret shows (as "changed", never its value)
      return specView(r.state, 'digest');
    };
    if (values.server) {
      const url = `${values.server.replace(/\/$/, '')}/status`;
      let status: { specs?: SpecView['specs'] | null; applied?: { hash: string } | null };
      try {
        const token = values['token-file'] ? (await readFile(values['token-file'], 'utf8')).replace(/\r?\n$/, '') : process.env.MAILPLANE_TOKEN;
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000), headers: token ? { authorization: `Bearer ${token}` } : {} });
        if (res.status === 401) throw new Error('HTTP 401: the server wants its token (--token-file FILE or MAILPLANE_TOKEN)');
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        status = (await res.json()) as typeof status;
      } catch (e) {
        process.stderr.write(`mailplane plan: cannot read ${url}: ${(e as Error).message}\n`);
        return 1;
      }
      before = status.specs && status.applied ? { hash: status.applied.hash, specs: status.specs } : null;
    } else {
      before = await loadView(files[0]!);
      if (!before) return 1;
    }
    const loaded = await loadView(files[files.length - 1]!);
    if (!loaded) return 1;
    // a server publishes only whether its secrets are set: compare the new config the same way
    const after = values.server ? withoutSecrets(loaded) : loaded;
    const plan = diff(before, after);
    if (values.format === 'json') {
      process.stdout.write(
        `${JSON.stringify({ changes: plan.actions.length, from: plan.from, to: plan.to, actions: plan.actions.map((a) => ({ ...a, touchesSockets: touchesSockets(a) })) }, null, 2)}\n`,
      );
    } else {
      process.stdout.write(formatPlan(plan));
      if (values.server) process.stdout.write('(Secrets are compared with the server as set or not set: a changed password does not show here.)\n');
    }
    return plan.actions.length === 0 ? 0 : 2;
  },
};
