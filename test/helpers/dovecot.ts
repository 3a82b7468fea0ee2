// Debian's Dovecot for the tests that use it as the mailbox store: started by the test on its own
// config, folders and loopback ports, stopped by its PID; the lmtp-store blocks of docs/dovecot.md
// moved onto the test's paths, ports and mail user; and what Dovecot stored, read from its folders.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { docBlock } from './docs.js';
import { accepts } from './ports.js';
import { waitFor } from './server.js';
import { idOf } from './system-users.js';
import { tempDir } from './tmp.js';

export const DOVECOT = '/usr/sbin/dovecot';

/** Why Dovecot with LMTP cannot run here (root for users and Dovecot's privilege drop, the packages, useradd), or null. */
export function dovecotMissing(): string | null {
  if (process.getuid?.() !== 0) return 'the tests do not run as root (users, Dovecot)';
  if (!existsSync(DOVECOT) || !existsSync('/usr/lib/dovecot/lmtp') || !existsSync('/usr/lib/dovecot/pop3'))
    return 'Dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd)';
  if (!['useradd', 'userdel', 'groupdel'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0)) return 'useradd/userdel are missing';
  return null;
}

/** A Dovecot started by the test on its own config, folders and loopback ports. */
export class Dovecot {
  private child: ChildProcess | null = null;
  private out = '';
  constructor(
    readonly dir: string,
    private readonly ports: number[],
  ) {}

  get log(): string {
    const file = join(this.dir, 'dovecot.log');
    return `${this.out}\n${existsSync(file) ? readFileSync(file, 'utf8') : ''}`;
  }

  /** The test's own settings (folders, loopback), then the docs' blocks. */
  write(blocks: string): void {
    writeFileSync(
      join(this.dir, 'dovecot.conf'),
      `base_dir = ${this.dir}/run
state_dir = ${this.dir}/state
log_path = ${this.dir}/dovecot.log
listen = 127.0.0.1
# test only: refused logins answered at once (Dovecot waits 2 s by default)
auth_failure_delay = 0
${blocks}`,
    );
  }

  async start(): Promise<void> {
    this.child = spawn(DOVECOT, ['-F', '-c', join(this.dir, 'dovecot.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.out += d));
    this.child.stderr!.on('data', (d) => (this.out += d));
    const child = this.child;
    process.on('exit', () => child.kill('SIGKILL'));
    for (const port of this.ports)
      await waitFor(
        `Dovecot to listen on ${port}`,
        () => accepts(port),
        15_000,
        () => this.log,
      );
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
    for (const port of this.ports) await waitFor(`Dovecot to stop listening on ${port}`, async () => !(await accepts(port)), 10_000);
  }
}

/** IMAP in clear on a loopback port and no IMAPS: for the tests that log in without TLS. */
export function plainImapBlock(port: number): string {
  return `protocols = imap
ssl = no
disable_plaintext_auth = no
service imap-login {
  inet_listener imap {
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
`;
}

/** The docs' mailplane block for the lmtp store: the data dir, the mail group and the LMTP port moved. */
export function lmtpMailplaneBlock(o: { dataDir: string; vmail: string; lmtp: number }): string {
  return docBlock('dovecot.md', '<!-- test/dovecot-lmtp.test.ts runs mailplane with this block (lmtp store')
    .replaceAll('/var/lib/mailplane', o.dataDir)
    .replace(/\bvmail\b/g, o.vmail)
    .replace('127.0.0.1:24', `127.0.0.1:${o.lmtp}`);
}

/** The docs' Dovecot block for the lmtp store: the passwd-file of `dataDir`, the store, the mail user and the LMTP port moved. */
export function lmtpDovecotBlock(o: { dataDir: string; store: string; vmail: string; lmtp: number }): string {
  return docBlock('dovecot.md', "<!-- test/dovecot-lmtp.test.ts runs Debian's Dovecot with this block (lmtp store")
    .replaceAll('/var/lib/mailplane', o.dataDir)
    .replaceAll('/var/vmail', o.store)
    .replace(/\bvmail\b/g, o.vmail)
    .replace('port = 24', `port = ${o.lmtp}`);
}

/** A folder for Dovecot (others pass through) with its store inside, owned by the mail user (the docs' /var/vmail). */
export function dovecotDir(name: string, vmail: string): { dir: string; store: string } {
  const dir = tempDir(name);
  chmodSync(dir, 0o711);
  const store = join(dir, 'store');
  mkdirSync(store, { mode: 0o700 });
  chownSync(store, idOf('-u', vmail), idOf('-g', vmail));
  return { dir, store };
}

/** Every message Dovecot stored for `user` in its INBOX (store laid out as the lmtp block says: <store>/<user>/Maildir). */
export function storedMessages(store: string, user: string): string[] {
  const maildir = join(store, user, 'Maildir');
  const out: string[] = [];
  for (const sub of ['new', 'cur']) {
    const folder = join(maildir, sub);
    if (!existsSync(folder)) continue;
    for (const f of readdirSync(folder)) out.push(readFileSync(join(folder, f), 'latin1'));
  }
  return out;
}
