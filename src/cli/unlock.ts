// `mailplane unlock ADDRESS|--all`: lifts AUTH lockouts on the running server. Lockouts live in
// the server's memory (and, with cluster.redis, in Redis for every replica), so the request goes
// to it the way queue requests do; the server lifts them in Redis too. With no server running on
// the data dir but cluster.redis in the config, they are lifted in Redis directly.
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SharedLimits } from '../cluster/shared-limits.js';
import type { RedisState } from '../config/desired-state.js';
import { loadConfigFile } from '../config/load.js';
import { silentLogger } from '../ops/logger.js';
import { Metrics } from '../ops/metrics.js';
import { AuthLimiter, ClientConnections } from '../smtp/limits.js';
import { SendRateLimiter } from '../smtp/send-rate.js';
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
lockout at once; /status lists the lockouts in force. With cluster.redis the lockout
is lifted for every replica (in Redis), also when no server runs here.

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
      const redis = values['data-dir'] ? null : await redisOf(values.config);
      if (redis) return inRedis(redis, address ?? null);
      process.stderr.write(`mailplane unlock: no server is running on ${dataDir}; lockouts live only in a running server, so there is nothing to lift\n`);
      return 1;
    }
    const result = await viaServer(join(dataDir, 'queue'), { op: 'unlock', address: address ?? null });
    (result.ok ? process.stdout : process.stderr).write(`${result.message}\n`);
    return result.ok ? 0 : 1;
  },
};

/** cluster.redis of the config, or null. */
async function redisOf(config: string | undefined): Promise<RedisState | null> {
  const r = await loadConfigFile(resolve(config ?? 'mailserver.yaml'));
  return r.state?.cluster.redis ?? null;
}

/** Lifts lockouts in Redis directly (no server runs here): every replica sees it at its next decision. */
async function inRedis(spec: RedisState, address: string | null): Promise<number> {
  const limits = new SharedLimits({ auth: new AuthLimiter(), rate: new SendRateLimiter(), clients: new ClientConnections() }, new Metrics(), silentLogger);
  limits.configure(spec);
  try {
    const deadline = Date.now() + 5000;
    while (!(limits.status() as { redis: { up: boolean } }).redis.up) {
      if (Date.now() > deadline) {
        process.stderr.write('mailplane unlock: no server is running here and Redis (cluster.redis) does not answer: nothing was lifted\n');
        return 1;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const n = await limits.unlock(address);
    if (address === null) process.stdout.write(`lifted ${n} lockout${n === 1 ? '' : 's'} in Redis\n`);
    else if (n) process.stdout.write(`lifted the lockout of ${address} in Redis\n`);
    else process.stderr.write(`${address} is not locked out\n`);
    return address === null || n ? 0 : 1;
  } catch (e) {
    process.stderr.write(`mailplane unlock: ${(e as Error).message}\n`);
    return 1;
  } finally {
    await limits.close();
  }
}
