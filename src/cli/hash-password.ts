// `mailplane hash-password`: a password from stdin (no echo on a terminal) → a hash for passwordHash.
import { parseArgs } from 'node:util';
import { hashPassword, type NewHashScheme } from '../accounts/passwords.js';
import { UsageError, type Command } from './command.js';

const SCHEMES: readonly NewHashScheme[] = ['argon2id', 'bcrypt', 'sha512-crypt'];

export const hashPasswordCommand: Command = {
  name: 'hash-password',
  summary: 'read a password from stdin and print a hash for passwordHash',
  usage: `Usage: mailplane hash-password [--scheme argon2id|bcrypt|sha512-crypt]

Reads a password from standard input and prints its hash, ready for
accounts.local.users[].passwordHash or a usersFile line. On a terminal the
password is asked for twice and not echoed; otherwise the first line of
standard input is used.

Options:
  --scheme NAME   argon2id (default), bcrypt ($2y$, cost 12) or sha512-crypt ($6$)
  -h, --help      show this help`,
  async run(argv) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { scheme: { type: 'string', default: 'argon2id' } } });
    if (positionals.length) throw new UsageError('hash-password takes no arguments; the password is read from standard input');
    const scheme = values.scheme as NewHashScheme;
    if (!SCHEMES.includes(scheme)) throw new UsageError(`--scheme must be one of ${SCHEMES.join(', ')}`);
    let password: string;
    if (process.stdin.isTTY) {
      password = await readHidden('Password: ');
      const again = await readHidden('Repeat password: ');
      if (again !== password) {
        process.stderr.write('mailplane: the passwords do not match\n');
        return 1;
      }
    } else {
      password = (await readAll()).split(/\r?\n/)[0] ?? '';
    }
    if (!password) {
      process.stderr.write('mailplane: empty password refused\n');
      return 1;
    }
    process.stdout.write(`${await hashPassword(password, scheme)}\n`);
    return 0;
  },
};

async function readAll(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads one line from the terminal without echo. */
function readHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const finish = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new Error('interrupted'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
