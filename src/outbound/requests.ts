// Operator requests for a running server (`mailplane queue retry|delete`, `mailplane unlock`),
// passed as files in <dataDir>/queue/requests/ so that only the server writes its state while it runs.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export type QueueRequest = { readonly op: 'retry'; readonly id: string | null } | { readonly op: 'delete'; readonly id: string } | { readonly op: 'unlock'; readonly address: string | null };

export function requestsDir(queueDir: string): string {
  return join(queueDir, 'requests');
}

/** Writes a request atomically; returns its path (the server deletes it once done). */
export async function submitRequest(queueDir: string, req: QueueRequest): Promise<string> {
  const dir = requestsDir(queueDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const name = `${Date.now()}-${randomBytes(4).toString('hex')}.json`;
  const tmp = join(dir, `.${name}`);
  await fs.writeFile(tmp, JSON.stringify(req));
  const path = join(dir, name);
  await fs.rename(tmp, path);
  return path;
}

/** Requests waiting, oldest first; malformed ones are dropped. */
export async function takeRequests(queueDir: string): Promise<{ path: string; req: QueueRequest }[]> {
  const dir = requestsDir(queueDir);
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => !n.startsWith('.') && n.endsWith('.json')).sort(); // not the .result answers
  } catch {
    return [];
  }
  const out: { path: string; req: QueueRequest }[] = [];
  for (const n of names) {
    const path = join(dir, n);
    try {
      const req = JSON.parse(await fs.readFile(path, 'utf8')) as QueueRequest;
      if (
        (req.op === 'retry' && (req.id === null || typeof req.id === 'string')) ||
        (req.op === 'delete' && typeof req.id === 'string') ||
        (req.op === 'unlock' && (req.address === null || typeof req.address === 'string'))
      )
        out.push({ path, req });
      else await fs.unlink(path);
    } catch {
      await fs.unlink(path).catch(() => {});
    }
  }
  return out;
}
