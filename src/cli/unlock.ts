// `mailplane unlock ADDRESS|--all`: lifts AUTH lockouts on the running server. Lockouts live in
// the server's memory, so the request goes to it the way queue requests do.
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { lockOwner } from '../store/lock.js';
import { resolveDataDir, viaServer } from './queue.js';
import { UsageError, type Command } from './command.js';

export const unlockCommand: Command = {
  name: 'unlock',
  summary: 'lift the AUTH lockout of a client address (or all) on the running server',
  usage: `Usage: mailplane unlock ADDRESS
       mailplane unlock --all

A client address with too many failed AUTH attempts is locked out for
smtp.auth.lockoutDuration: AUTH from it is refused, and so are its connections to
submission listeners (mail to local users on mx listeners goes on). This lifts the
lockout at once; /status lists the lockouts in force.

The running server is found through the data dir of the config (--config FILE,
default ./mailserver.yaml) or --data-dir DIR.

Options:
  --all              lift every lockout
  --config FILE      config file to read storage.dataDir from
  --data-dir DIR     the data directory, instead of --config
  -h, --help         show this help`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { all: { type: 'boolean', default: false }, config: { type: 'string' }, 'data-dir': { type: 'string' } },
    });
    const [address, extra] = positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
    if (values.all === (address !== undefined)) throw new UsageError('give one client ADDRESS or --all');
    if (address !== undefined && !isIP(address)) throw new UsageError(`'${address}' is not an IP address`);
    const dataDir = await resolveDataDir(values['data-dir'], values.config);
    if (dataDir === null) return 1;
    if ((await lockOwner(dataDir)) === null) {
      process.stderr.write(`mailplane unlock: no server is running on ${dataDir}; lockouts live only in a running server, so there is nothing to lift\n`);
      return 1;
    }
    const result = await viaServer(join(dataDir, 'queue'), { op: 'unlock', address: address ?? null });
    (result.ok ? process.stdout : process.stderr).write(`${result.message}\n`);
    return result.ok ? 0 : 1;
  },
};
