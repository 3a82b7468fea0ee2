// `mailplane queue list|retry|delete`: inspect and steer the outbound queue of a data dir.
// While a server owns the data dir, changes go to it as requests (only it writes queue
// state); otherwise they are made on disk directly.
import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatIssue } from '../config/issues.js';
import { loadConfigFile } from '../config/load.js';
import { lockOwner } from '../store/lock.js';
import { DirSyncer } from '../store/durable.js';
import { QueueStore, type QueueEntry } from '../outbound/queue-store.js';
import { submitRequest, type QueueRequest } from '../outbound/requests.js';
import { UsageError, type Command } from './command.js';

export const queueCommand: Command = {
  name: 'queue',
  summary: 'list, retry or delete messages in the outbound queue',
  usage: `Usage: mailplane queue list [--format text|json]
       mailplane queue retry [ID]
       mailplane queue delete ID

The data dir comes from the config (--config FILE, default ./mailserver.yaml) or
--data-dir DIR. Safe while the server runs: retry and delete are handed to it.

  list     every queued message: id, age, sender, next attempt, recipients and their
           state (pending, delivered, failed) with the last reply
  retry    attempt now (one message, or all)
  delete   remove a message for good (no bounce is sent)

Options:
  --config FILE      config file to read storage.dataDir from
  --data-dir DIR     the data directory, instead of --config
  --format text|json output of list (default text)
  -h, --help         show this help`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string' }, 'data-dir': { type: 'string' }, format: { type: 'string', default: 'text' } },
    });
    const [action, id, extra] = positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
    if (action !== 'list' && action !== 'retry' && action !== 'delete') throw new UsageError('give list, retry or delete');
    if (action === 'delete' && !id) throw new UsageError('delete needs the message ID (see mailplane queue list)');
    if (action === 'list' && id) throw new UsageError('list takes no ID');
    if (values.format !== 'text' && values.format !== 'json') throw new UsageError('--format must be text or json');
    const dataDir = await resolveDataDir(values['data-dir'], values.config);
    if (dataDir === null) return 1;
    const queueDir = join(dataDir, 'queue');
    if (!existsSync(queueDir)) {
      process.stderr.write(`mailplane queue: no queue in ${dataDir} (nothing was ever queued there)\n`);
      return action === 'list' ? 0 : 1;
    }
    const store = new QueueStore(queueDir, new DirSyncer());
    if (action === 'list') return list(store, values.format);
    const req: Exclude<QueueRequest, { op: 'unlock' }> = action === 'retry' ? { op: 'retry', id: id ?? null } : { op: 'delete', id: id! };
    const owner = await lockOwner(dataDir);
    const result = owner !== null ? await viaServer(queueDir, req) : await directly(store, req);
    process.stdout.write(`${result.message}\n`);
    return result.ok ? 0 : 1;
  },
};

export async function resolveDataDir(dataDir: string | undefined, config: string | undefined): Promise<string | null> {
  if (dataDir) return resolve(dataDir);
  const file = resolve(config ?? 'mailserver.yaml');
  const r = await loadConfigFile(file);
  if (!r.state) {
    for (const i of r.errors) process.stderr.write(`${formatIssue(i)}\n`);
    process.stderr.write(`mailplane queue: cannot read the data dir from ${file}; give --data-dir\n`);
    return null;
  }
  return r.state.storage.dataDir;
}

/** Hands a request to the server that owns the data dir and waits for its answer. */
export async function viaServer(queueDir: string, req: QueueRequest): Promise<{ ok: boolean; message: string }> {
  const path = await submitRequest(queueDir, req);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      const result = JSON.parse(await fs.readFile(`${path}.result`, 'utf8')) as { ok: boolean; message: string };
      await fs.unlink(`${path}.result`).catch(() => {});
      return result;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  await fs.unlink(path).catch(() => {});
  return { ok: false, message: 'the running server did not answer within 10 s; nothing was changed' };
}

async function directly(store: QueueStore, req: Exclude<QueueRequest, { op: 'unlock' }>): Promise<{ ok: boolean; message: string }> {
  if (req.op === 'delete') {
    if (!(await store.read(req.id))) return { ok: false, message: `no queued message ${req.id}` };
    await store.remove(req.id);
    return { ok: true, message: `deleted ${req.id}` };
  }
  const entries = req.id ? [await store.read(req.id)].filter((e): e is QueueEntry => e !== null) : await store.list();
  if (req.id && !entries.length) return { ok: false, message: `no queued message ${req.id}` };
  for (const e of entries) {
    e.nextAttemptAt = Date.now();
    await store.update(e);
  }
  return { ok: true, message: `${entries.length} message${entries.length === 1 ? '' : 's'} will be attempted as soon as the server runs` };
}

async function list(store: QueueStore, format: string): Promise<number> {
  const entries = await store.list();
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify({ messages: entries }, null, 2)}\n`);
    return 0;
  }
  if (!entries.length) {
    process.stdout.write('The queue is empty.\n');
    return 0;
  }
  const now = Date.now();
  const deferred = entries.filter((e) => e.attempts > 0).length;
  const out = [`${entries.length} message${entries.length === 1 ? '' : 's'} in the queue (${entries.length - deferred} new, ${deferred} deferred)`, ''];
  for (const e of entries) {
    const next = e.nextAttemptAt <= now ? 'next attempt now' : `next attempt in ${age(e.nextAttemptAt - now)}`;
    out.push(`${e.id}  ${age(now - e.arrivedAt).padStart(6)} old  from <${e.sender}>  ${e.size} bytes  ${next}  (${e.attempts} attempt${e.attempts === 1 ? '' : 's'})`);
    const width = Math.max(...e.recipients.map((r) => r.address.length));
    for (const r of e.recipients) out.push(`    ${r.address.padEnd(width)}  ${r.state.padEnd(9)}  ${r.lastResponse ?? ''}`.trimEnd());
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}
