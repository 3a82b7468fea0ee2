// Operator requests for a running server (`mailplane queue retry|delete|list|handoff`, `mailplane unlock`),
// passed as files in <dataDir>/queue/requests/ so that only the server writes its state while it runs.
// A command run as root for a server that runs as a service user gives what it writes to the
// owner of the queue folder, so the server can read it (and a folder an earlier root run left
// behind is given back too); a request the server cannot read anyway is answered with why.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export type QueueRequest =
  | { readonly op: 'retry'; readonly id: string | null }
  | { readonly op: 'delete'; readonly id: string }
  | { readonly op: 'unlock'; readonly address: string | null }
  /** the deliveries in progress, for `queue list` */
  | { readonly op: 'deliveries' }
  /** leave: stop accepting, hand every queued message to cluster.peers.handoff, exit when the queue is empty (`queue handoff`) */
  | { readonly op: 'handoff' };

/** A delivery attempt running now. */
export interface DeliveryInProgress {
  readonly id: string;
  /** the recipient domain, 'relay', or 'lmtp' (local mail to the LMTP server) */
  readonly destination: string;
  /** when the attempt started (ms since the epoch) */
  readonly since: number;
  /** the message's attempt number this is (1: the first) */
  readonly attempt: number;
  /** the host being tried (host[ip]:port, or the relay's host:port); null before one is */
  readonly host: string | null;
}

export interface RequestResult {
  readonly ok: boolean;
  readonly message: string;
  readonly deliveries?: readonly DeliveryInProgress[];
}

/** A request found in the folder: readable and well-formed, or why not. */
export type Taken = { readonly path: string; readonly req: QueueRequest } | { readonly path: string; readonly problem: string };

export function requestsDir(queueDir: string): string {
  return join(queueDir, 'requests');
}

/** Whom what we write into the queue folder must belong to: its owner, when we are root and it is another user; else null. */
export async function ownerFor(queueDir: string): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const st = await fs.stat(queueDir);
  return st.uid === 0 ? null : { uid: st.uid, gid: st.gid };
}

/** Writes a request atomically; returns its path (the server deletes it once done). */
export async function submitRequest(queueDir: string, req: QueueRequest): Promise<string> {
  const dir = requestsDir(queueDir);
  const owner = await ownerFor(queueDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (owner) await fs.chown(dir, owner.uid, owner.gid);
  const name = `${Date.now()}-${randomBytes(4).toString('hex')}.json`;
  const tmp = join(dir, `.${name}`);
  await fs.writeFile(tmp, JSON.stringify(req), { mode: 0o600 });
  if (owner) await fs.chown(tmp, owner.uid, owner.gid);
  const path = join(dir, name);
  await fs.rename(tmp, path);
  return path;
}

/**
 * Requests waiting, oldest first, each with its request or what is wrong with it (the caller
 * answers those). Throws when the folder exists but cannot be read.
 */
export async function takeRequests(queueDir: string): Promise<Taken[]> {
  const dir = requestsDir(queueDir);
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => !n.startsWith('.') && n.endsWith('.json')).sort(); // not the .result answers
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: Taken[] = [];
  for (const n of names) {
    const path = join(dir, n);
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      const uid = process.getuid?.();
      out.push({
        path,
        problem:
          code === 'EACCES' || code === 'EPERM'
            ? `the server (uid ${uid}) may not read the request file ${path}: run the command as that user or as root`
            : `the server could not read the request file ${path}: ${(e as Error).message}`,
      });
      continue;
    }
    let req: QueueRequest | null = null;
    try {
      req = JSON.parse(text) as QueueRequest;
    } catch {}
    if (
      req &&
      ((req.op === 'retry' && (req.id === null || typeof req.id === 'string')) ||
        (req.op === 'delete' && typeof req.id === 'string') ||
        (req.op === 'unlock' && (req.address === null || typeof req.address === 'string')) ||
        req.op === 'deliveries' ||
        req.op === 'handoff')
    )
      out.push({ path, req });
    else out.push({ path, problem: 'the request is not one this server understands (a newer mailplane wrote it?)' });
  }
  return out;
}
