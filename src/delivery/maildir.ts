// Maildirs at <dataDir>/mail/<user>/{tmp,new,cur}, the layout Dovecot serves with
// `maildir:<dataDir>/mail/%n`. Unique names follow the Maildir convention.
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

let counter = 0;
const HOST = hostname().replace(/[/:]/g, '_');

export class Maildirs {
  private readonly ready = new Set<string>();

  constructor(readonly root: string) {}

  dirOf(user: string): string {
    return join(this.root, user);
  }

  /** Creates the user's Maildir on first use. */
  async ensure(user: string): Promise<string> {
    const dir = this.dirOf(user);
    if (!this.ready.has(user)) {
      await Promise.all(['tmp', 'new', 'cur'].map((sub) => fs.mkdir(join(dir, sub), { recursive: true, mode: 0o700 })));
      this.ready.add(user);
    }
    return dir;
  }

  /** Drops the cache, e.g. after an operator removed a Maildir. */
  forget(user: string): void {
    this.ready.delete(user);
  }
}

/** time.M<usec>P<pid>Q<n>.host,S=<size> — unique per process, sortable by arrival. */
export function maildirName(size: number, now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + (counter % 1000);
  counter++;
  return `${sec}.M${usec}P${process.pid}Q${counter}.${HOST},S=${size}`;
}
