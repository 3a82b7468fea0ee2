// Postfix, the server operators run today, measured in the same run: a private instance (its own
// config, queue and Maildir under the bench's work dir, one smtpd listener on loopback), started
// with `postfix start-fg` and stopped with `postfix stop`. Postfix's own defaults otherwise: every
// message is fsync'ed into the queue before the 250, then the queue manager hands it to virtual(8),
// which writes it into a Maildir, as mailplane does before its 250. With `hold`, mail stays in the
// hold queue instead: Postfix's acceptance path alone, its best case, for reference.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stopper, treeCpuMs, waitPort, type ServerUnderTest } from './harness.js';

const POSTFIX = '/usr/sbin/postfix';

/** Why Postfix cannot run here, or null when it can (it comes with the package smtp-source is in). */
export function postfixUnavailable(): string | null {
  if (!existsSync(POSTFIX)) return `${POSTFIX} is missing`;
  if (process.getuid?.() !== 0) return 'starting Postfix needs root';
  try {
    execFileSync('id', ['postfix'], { stdio: 'ignore' });
    execFileSync('getent', ['group', 'postdrop'], { stdio: 'ignore' });
  } catch {
    return 'the postfix user or the postdrop group is missing';
  }
  return null;
}

function uid(name: string): number {
  return Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
}

export async function startPostfix(name: string, dir: string, port: number, o: { hold: boolean }): Promise<ServerUnderTest> {
  const conf = join(dir, 'conf');
  const mail = join(dir, 'mail');
  for (const d of [conf, join(dir, 'queue'), join(dir, 'data'), mail]) mkdirSync(d, { recursive: true });
  // Postfix's daemons run as postfix, its deliveries as nobody: both must reach into these folders
  // (the bench's work dir is made private by mkdtemp).
  for (const d of [dirname(dir), dir]) chmodSync(d, 0o755);
  const nobody = uid('nobody');
  chownSync(mail, nobody, nobody);
  chownSync(join(dir, 'data'), uid('postfix'), 0);
  writeFileSync(
    join(conf, 'main.cf'),
    `compatibility_level = 3.6
queue_directory = ${join(dir, 'queue')}
data_directory = ${join(dir, 'data')}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.com
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# no reverse-DNS lookup per connection, as for the other servers
smtpd_peername_lookup = no
virtual_mailbox_domains = example.com
virtual_mailbox_base = ${mail}
virtual_mailbox_maps = static:bench/
virtual_uid_maps = static:${nobody}
virtual_gid_maps = static:${nobody}
alias_maps =
alias_database =
biff = no
maillog_file = ${join(dir, 'maillog')}
maillog_file_prefixes = ${dir}
${o.hold ? 'smtpd_data_restrictions = check_client_access static:HOLD\n' : ''}`,
  );
  // Debian's master.cf, without chroot (the queue is not under /var/spool/postfix) and with
  // the one listener on the bench's port.
  writeFileSync(
    join(conf, 'master.cf'),
    `127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`,
  );
  let log = '';
  const child = spawn(POSTFIX, ['-c', conf, 'start-fg'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  await waitPort(port, child, () => log + maillog(dir));
  const master = Number(readFileSync(join(dir, 'queue', 'pid', 'master.pid'), 'utf8').trim());
  return {
    name,
    port,
    dir,
    // the master and every process it runs (smtpd, cleanup, qmgr, virtual…), the exited ones included
    cpuMs: () => treeCpuMs(master),
    rssMiB: () => NaN,
    settle: () => queueEmpty(join(dir, 'queue')),
    stop: async () => {
      if (child.exitCode !== null) return;
      try {
        execFileSync(POSTFIX, ['-c', conf, 'stop'], { stdio: 'ignore' });
      } catch {} // the stopper's signals end it then
      await stopper(child)();
    },
  };
}

/** Waits until nothing is left to deliver (held mail stays in hold/, which is not looked at). */
async function queueEmpty(queue: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (['maildrop', 'incoming', 'active', 'deferred'].some((q) => files(join(queue, q)) > 0)) {
    if (Date.now() > deadline) throw new Error(`postfix did not deliver its queue within 120 s (${queue})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function files(dir: string): number {
  try {
    return readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? files(join(dir, e.name)) : 1), 0);
  } catch {
    return 0;
  }
}

function maillog(dir: string): string {
  try {
    return readFileSync(join(dir, 'maillog'), 'utf8').slice(-2000);
  } catch {
    return '';
  }
}
