// Maildir file names (the files live at <dataDir>/mail/<user>/{tmp,new,cur}, the layout
// Dovecot serves with `maildir:<dataDir>/mail/%n`), unique per the Maildir convention.
import { hostname } from 'node:os';

let counter = 0;
const HOST = hostname().replace(/[/:]/g, '_');

/** time.M<usec>P<pid>Q<n>.host,S=<size> — unique per process, sortable by arrival. */
export function maildirName(size: number, now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + (counter % 1000);
  counter++;
  return `${sec}.M${usec}P${process.pid}Q${counter}.${HOST},S=${size}`;
}
