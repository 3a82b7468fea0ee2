// `mailplane queue list|retry|delete|handoff`: inspect and steer the outbound queue of a data dir.
// While a server owns the data dir, changes go to it as requests (only it writes queue
// state), and `list` asks it which deliveries are in progress; otherwise changes are made on
// disk directly. Safe under sudo: run as root for a server that runs as a service user, what
// it writes belongs to the owner of the queue folder. Expected failures (permissions, a
// server that does not answer) are one line on stderr and a non-zero exit, never a stack.
import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatIssue } from '../config/issues.js';
import { loadConfigFile } from '../config/load.js';
import { lockOwner } from '../store/lock.js';
import { DirSyncer } from '../store/durable.js';
import { QueueStore, type QueueEntry } from '../outbound/queue-store.js';
import { ownerFor, submitRequest, type DeliveryInProgress, type QueueRequest, type RequestResult } from '../outbound/requests.js';
import { parseDuration } from '../config/units.js';
import { UsageError, type Command } from './command.js';

export const queueCommand: Command = {
  name: 'queue',
  summary: 'list, retry or delete messages in the outbound queue, or hand it to a peer and leave',
  usage: `Usage: mailplane queue list [--format text|json]
       mailplane queue retry [ID]
       mailplane queue delete ID
       mailplane queue handoff [--timeout DURATION]

The data dir comes from the config (--config FILE, default ./mailserver.yaml) or
--data-dir DIR. Safe while the server runs: retry and delete are handed to it. Run as
root for a server that runs as another user, what it writes is given to that user.

  list     every queued message: id, age, sender, the delivery in progress or the next
           attempt, recipients and their state (pending, delivered, failed) with the last reply
  retry    attempt now (one message, or all); a message being delivered is attempted
           again as soon as that attempt ends
  delete   remove a message for good (no bounce is sent)
  handoff  this replica leaves for good (the Helm chart's preStop hook): the server stops
           accepting, lets sessions finish, hands every queued message to the peer listener
           of cluster.peers.handoff (each deleted here after the peer's 250) and exits when
           the queue is empty; this command waits for that. Exit 0: handed off, 1: not (the
           rest stays in the data dir and is delivered when a server runs on it again)

Options:
  --config FILE      config file to read storage.dataDir from
  --data-dir DIR     the data directory, instead of --config
  --format text|json output of list (default text)
  --timeout DURATION handoff: give up waiting after this long (30s, 5m; default: wait)
  -h, --help         show this help`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string' }, 'data-dir': { type: 'string' }, format: { type: 'string', default: 'text' }, timeout: { type: 'string' } },
    });
    const [action, id, extra] = positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
    if (action !== 'list' && action !== 'retry' && action !== 'delete' && action !== 'handoff') throw new UsageError('give list, retry, delete or handoff');
    if (action === 'handoff' && id) throw new UsageError('handoff takes no ID');
    let timeoutMs: number | null = null;
    if (values.timeout !== undefined) {
      if (action !== 'handoff') throw new UsageError('--timeout is for handoff');
      if (!/^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$/.test(values.timeout)) throw new UsageError('--timeout must be a duration such as 90s or 10m');
      timeoutMs = /\d\s*$/.test(values.timeout) ? Number(values.timeout) * 1000 : parseDuration(values.timeout);
    }
    if (action === 'delete' && !id) throw new UsageError('delete needs the message ID (see mailplane queue list)');
    if (action === 'list' && id) throw new UsageError('list takes no ID');
    if (values.format !== 'text' && values.format !== 'json') throw new UsageError('--format must be text or json');
    const dataDir = await resolveDataDir(values['data-dir'], values.config);
    if (dataDir === null) return 1;
    const queueDir = join(dataDir, 'queue');
    if (action === 'handoff') return await handoff(dataDir, queueDir, timeoutMs);
    if (!existsSync(queueDir)) {
      process.stderr.write(`mailplane queue: no queue in ${dataDir} (nothing was ever queued there)\n`);
      return action === 'list' ? 0 : 1;
    }
    try {
      const store = new QueueStore(queueDir, new DirSyncer());
      const owner = await lockOwner(dataDir);
      if (action === 'list') return await list(store, values.format, owner !== null ? queueDir : null);
      const req: Exclude<QueueRequest, { op: 'unlock' | 'deliveries' | 'handoff' }> = action === 'retry' ? { op: 'retry', id: id ?? null } : { op: 'delete', id: id! };
      const result = owner !== null ? await viaServer(queueDir, req) : await directly(store, req);
      (result.ok ? process.stdout : process.stderr).write(`${result.message}\n`);
      return result.ok ? 0 : 1;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (!err.code || !err.syscall) throw e; // a bug: keep its stack
      process.stderr.write(`mailplane queue: ${await fsProblem(err, queueDir)}\n`);
      return 1;
    }
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

/** A file-system error of a command as one sentence: what failed, and what to do about it. */
export async function fsProblem(e: NodeJS.ErrnoException, queueDir: string): Promise<string> {
  const where = e.path ? ` ${e.path}` : '';
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    const owner = await fs.stat(queueDir).then(
      (st) => ` (uid ${st.uid})`,
      () => '',
    );
    return `permission denied: cannot ${verb(e.syscall)}${where}; run this as the user the server runs as${owner}, or as root`;
  }
  if (e.code === 'ENOSPC') return `no space left on the device: cannot ${verb(e.syscall)}${where}`;
  if (e.code === 'EROFS') return `the file system is read-only: cannot ${verb(e.syscall)}${where}`;
  return `cannot ${verb(e.syscall)}${where}: ${e.message.replace(/^E[A-Z]+: /, '')}`;
}

function verb(syscall: string | undefined): string {
  if (syscall === 'open' || syscall === 'read' || syscall === 'scandir' || syscall === 'stat') return 'read';
  if (syscall === 'mkdir') return 'create the folder';
  if (syscall === 'unlink') return 'remove';
  if (syscall === 'chown') return 'give to the server user';
  return 'write';
}

/** Hands a request to the server that owns the data dir and waits for its answer. */
export async function viaServer(queueDir: string, req: QueueRequest, timeoutMs = 10_000): Promise<RequestResult> {
  let path: string;
  try {
    path = await submitRequest(queueDir, req);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (!err.code) throw e;
    return { ok: false, message: `cannot hand the request to the running server: ${await fsProblem(err, queueDir)}` };
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const result = JSON.parse(await fs.readFile(`${path}.result`, 'utf8')) as RequestResult;
      await fs.unlink(`${path}.result`).catch(() => {});
      return result;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  await fs.unlink(path).catch(() => {});
  return { ok: false, message: `the running server did not answer within ${Math.round(timeoutMs / 1000)} s; nothing was changed (its log says why: is it still loading the queue?)` };
}

async function directly(store: QueueStore, req: Exclude<QueueRequest, { op: 'unlock' | 'deliveries' | 'handoff' }>): Promise<{ ok: boolean; message: string }> {
  if (req.op === 'delete') {
    if (!(await store.read(req.id))) return { ok: false, message: `no queued message ${req.id}` };
    await store.remove(req.id);
    return { ok: true, message: `deleted ${req.id}` };
  }
  const entries = req.id ? [await store.read(req.id)].filter((e): e is QueueEntry => e !== null) : await store.list();
  if (req.id && !entries.length) return { ok: false, message: `no queued message ${req.id}` };
  const owner = await ownerFor(store.dir);
  for (const e of entries) {
    e.nextAttemptAt = Date.now();
    await store.update(e);
    // written by root: given to the server's user, or the server could not read it
    if (owner) await fs.chown(join(store.dir, `${e.id}.json`), owner.uid, owner.gid);
  }
  return { ok: true, message: `${entries.length} message${entries.length === 1 ? '' : 's'} will be attempted as soon as the server runs` };
}

/**
 * `queue handoff`: asks the running server to leave (stop accepting, hand its queue to the peer,
 * exit when it is empty) and waits until it has exited; reports what is left.
 */
async function handoff(dataDir: string, queueDir: string, timeoutMs: number | null): Promise<number> {
  const owner = await lockOwner(dataDir);
  if (owner === null) {
    process.stderr.write(
      `mailplane queue: no server is running on ${dataDir}: the hand-off is done by the running server (what is queued here is delivered when a server runs on this data dir again)\n`,
    );
    return 1;
  }
  // the server takes the request once its queue is loaded (every entry must be known)
  const r = await viaServer(queueDir, { op: 'handoff' }, 60_000);
  (r.ok ? process.stdout : process.stderr).write(`${r.message}\n`);
  if (!r.ok) return 1;
  const store = new QueueStore(queueDir, new DirSyncer());
  const deadline = timeoutMs === null ? Infinity : Date.now() + timeoutMs;
  let shown = Date.now();
  while ((await lockOwner(dataDir)) === owner) {
    if (Date.now() > deadline) {
      process.stderr.write(
        `mailplane queue: the server is still handing off after ${Math.round((timeoutMs ?? 0) / 1000)} s (${await store.count().catch(() => '?')} messages left); it goes on, see its log\n`,
      );
      return 1;
    }
    if (Date.now() - shown > 5000) {
      shown = Date.now();
      process.stdout.write(`${await store.count().catch(() => '?')} messages left\n`);
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  const left = await store.count().catch(() => 0);
  if (left === 0) {
    process.stdout.write('handed off: the queue is empty and the server has exited\n');
    return 0;
  }
  process.stderr.write(`mailplane queue: the server stopped with ${left} message${left === 1 ? '' : 's'} still queued in ${queueDir}: they are delivered when a server runs on this data dir again\n`);
  return 1;
}

/** @param serverQueue the queue folder of a running server to ask for the deliveries in progress, or null */
async function list(store: QueueStore, format: string, serverQueue: string | null): Promise<number> {
  const entries = await store.list();
  let deliveries: readonly DeliveryInProgress[] = [];
  if (serverQueue !== null && entries.length) {
    const r = await viaServer(serverQueue, { op: 'deliveries' }, 3000);
    if (r.ok) deliveries = r.deliveries ?? [];
    else process.stderr.write(`mailplane queue: deliveries in progress are not shown: ${r.message}\n`);
  }
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify({ messages: entries, deliveries }, null, 2)}\n`);
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
    const running = deliveries.filter((d) => d.id === e.id);
    const next = running.length
      ? running.map((d) => `delivering since ${clock(d.since)} (${age(now - d.since)}), attempt ${d.attempt}${d.host ? `, ${d.host}` : ''}`).join('; ')
      : e.nextAttemptAt <= now
        ? 'next attempt now'
        : `next attempt in ${age(e.nextAttemptAt - now)}`;
    out.push(`${e.id}  ${age(now - e.arrivedAt).padStart(6)} old  from <${e.sender}>  ${e.size} bytes  ${next}  (${e.attempts} attempt${e.attempts === 1 ? '' : 's'})`);
    const width = Math.max(...e.recipients.map((r) => r.address.length));
    for (const r of e.recipients) out.push(`    ${r.address.padEnd(width)}  ${r.state.padEnd(9)}  ${r.lastResponse ?? ''}`.trimEnd());
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

/** A time of day, local: 14:02:03. */
function clock(t: number): string {
  return new Date(t).toTimeString().slice(0, 8);
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}
