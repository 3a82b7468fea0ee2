// Entry point of the `mailplane` command: dispatches to one command per module.
import { readFileSync } from 'node:fs';
import { UsageError, type Command } from './command.js';
import { dkimCommand } from './dkim.js';
import { dnsCommand } from './dns.js';
import { hashPasswordCommand } from './hash-password.js';
import { planCommand } from './plan.js';
import { queueCommand } from './queue.js';
import { runCommand } from './run.js';
import { unlockCommand } from './unlock.js';
import { validateCommand } from './validate.js';

const COMMANDS: readonly Command[] = [runCommand, validateCommand, planCommand, queueCommand, unlockCommand, hashPasswordCommand, dkimCommand, dnsCommand];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `mailplane ${version()}: a mail server declared in one file and reconciled live

Usage: mailplane COMMAND [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run "mailplane COMMAND --help" for a command's options.
`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(help());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`mailplane: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    const err = e as Error & { code?: string };
    if (e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`mailplane ${cmd.name}: ${err.message}\n\n${cmd.usage}\n`);
      return cmd.usageExitCode ?? 2;
    }
    // an expected failure of the system (a file that may not be read, a full disk): one line, no stack
    if (typeof err.code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string') {
      process.stderr.write(`mailplane ${cmd.name}: ${err.message}\n`);
      return 1;
    }
    throw e;
  }
}
