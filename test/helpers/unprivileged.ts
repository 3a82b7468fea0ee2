// Running mailplane the way a service runs it: as an unprivileged user (`nobody`) owning its data
// dir, while the tests (root in CI) play the operator, who runs commands with sudo. Without root
// these tests cannot switch users and are skipped.
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { BIN, mailplane, type CliResult } from './cli.js';
import { MailplaneProcess, type Env } from './server.js';

/** Debian's nobody/nogroup. */
export const NOBODY = { uid: 65534, gid: 65534 } as const;

export const IS_ROOT = process.getuid?.() === 0;

/** The test folder readable by the service user, the data dir owned by it, then the config. */
export function prepareFor(env: Env, config: string, user: { uid: number; gid: number } = NOBODY): void {
  chmodSync(env.dir, 0o755);
  for (const f of [env.certFile, env.keyFile]) chmodSync(f, 0o644);
  mkdirSync(env.dataDir, { recursive: true });
  chownSync(env.dataDir, user.uid, user.gid);
  writeFileSync(env.configFile, config, { mode: 0o644 });
}

/** `mailplane run` as the service user. */
export function spawnAs(env: Env, user: { uid: number; gid: number } = NOBODY): MailplaneProcess {
  const child = spawn(process.execPath, [BIN, 'run', '--config', env.configFile, '--log-format', 'json', '--recheck', '0'], {
    cwd: env.dir,
    uid: user.uid,
    gid: user.gid,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new MailplaneProcess(child, env);
}

/** A CLI command, as root (the default: the test's own user) or as another user. */
export function cliAs(args: string[], user?: { uid: number; gid: number }): Promise<CliResult> {
  return mailplane(args, { cwd: '/', ...(user ? { user } : {}) });
}
