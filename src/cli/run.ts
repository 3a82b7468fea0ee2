// `mailplane run`: load, apply, serve; reload on file changes, SIGHUP and POST /-/reload;
// drain on SIGTERM/SIGINT.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile, loadConfigText } from '../config/load.js';
import { ensureDevCertificate, QUICKSTART_LOGIN, QUICKSTART_YAML } from '../config/quickstart.js';
import { createLogger, type Level } from '../ops/logger.js';
import { Metrics } from '../ops/metrics.js';
import { Controller, StartupError, type ConfigProvider } from '../reconcile/controller.js';
import { ConfigWatcher } from '../reconcile/watch.js';
import { AuthLimiter, ClientConnections } from '../smtp/limits.js';
import { SendRateLimiter } from '../smtp/send-rate.js';
import { SharedLimits } from '../cluster/shared-limits.js';
import { SpamFilter } from '../filter/spam-filter.js';
import { MailLog } from '../ops/mail-log.js';
import { UsageError, type Command } from './command.js';

export const runCommand: Command = {
  name: 'run',
  summary: 'serve SMTP as the config says, and keep converging to it',
  usage: `Usage: mailplane run [--config FILE] [--log-level LEVEL] [--log-format json|text]

Serves the config and reloads it whenever the file (or a file it references) changes,
on SIGHUP, and on POST /-/reload. An invalid file never stops service: the last good
config keeps running. SIGTERM/SIGINT stop accepting and let sessions finish (within
smtp.drainGrace); a second signal exits at once.

Without --config, ./mailserver.yaml is used; when it does not exist, an embedded
quick-start config serves on 127.0.0.1 (mx 2525, submission 2587, submissions 2465,
ops 9465) with data in ./data and a generated development certificate.

Options:
  --config FILE        the config file (default ./mailserver.yaml)
  --log-level LEVEL    debug, info (default), warn or error
  --log-format FORMAT  json (default when stderr is not a terminal) or text
  --recheck SECONDS    periodic hash check of the config and referenced files (default 60, 0 = off)
  --no-watch           do not watch files; reload only on SIGHUP, POST /-/reload and --recheck
  -h, --help           show this help`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        'log-format': { type: 'string' },
        recheck: { type: 'string', default: '60' },
        'no-watch': { type: 'boolean', default: false },
      },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const level = values['log-level'] as Level;
    if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new UsageError('--log-level must be debug, info, warn or error');
    const format = values['log-format'];
    if (format !== undefined && format !== 'json' && format !== 'text') throw new UsageError('--log-format must be json or text');
    const recheck = Number(values.recheck);
    if (!Number.isFinite(recheck) || recheck < 0) throw new UsageError('--recheck must be a number of seconds');
    const log = createLogger({ level, json: format === undefined ? undefined : format === 'json' });

    // `npm start` runs in the package folder; INIT_CWD is where the operator typed it.
    const fromNpmStart = process.env.npm_lifecycle_event === 'start' && process.env.INIT_CWD;
    const cwd = fromNpmStart ? process.env.INIT_CWD! : process.cwd();
    let provider: ConfigProvider;
    let quickstart = false;
    if (values.config === undefined && !existsSync(resolve(cwd, 'mailserver.yaml'))) {
      quickstart = true;
      if (ensureDevCertificate(cwd)) log.info('made a development certificate', { path: resolve(cwd, 'data/tls/dev.crt') });
      provider = { path: '(embedded quick start)', load: () => loadConfigText('(embedded quick start)', QUICKSTART_YAML, { baseDir: cwd, forRun: true }) };
    } else {
      const file = resolve(cwd, values.config ?? 'mailserver.yaml');
      provider = { path: file, load: () => loadConfigFile(file, { forRun: true }) };
    }

    const metrics = new Metrics();
    // set below: the hand-off ends the process the way SIGTERM does
    let leave: (reason: string) => void = () => {};
    const controller = new Controller(provider, {
      log,
      metrics,
      limits: new SharedLimits({ auth: new AuthLimiter(), rate: new SendRateLimiter(), clients: new ClientConnections() }, metrics, log),
      mailLog: new MailLog(log),
      spamFilter: new SpamFilter(metrics, log),
      leave: (reason) => leave(reason),
    });
    let watcher: ConfigWatcher | null = null;
    const reconcile = async (reason: string) => {
      await controller.reconcile(reason);
      // whatever the outcome: a file the latest load could not read is watched until it comes back
      const w = controller.watchList();
      if (watcher) await watcher.update(w.files, w.unread);
    };

    // Signals are handled from the first moment, start-up included.
    let stopRequested: ((signal: string) => void) | null = null;
    let stopping = false;
    let stopped = null as Promise<void> | null; // set by the signal handler
    const stop = (signal: string) => {
      if (stopping) {
        log.warn('second signal, exiting at once', { signal });
        process.exit(1);
      }
      stopping = true;
      const grace = controller.applied?.state.smtp.drainGraceMs ?? 30_000;
      log.info('stopping: no new connections, letting sessions finish', { signal, graceMs: grace });
      stopped = (async () => {
        await watcher?.close();
        await controller.shutdown(grace);
        log.info('stopped');
      })();
      stopRequested?.(signal);
    };
    leave = (reason) => {
      if (!stopping) stop(reason);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void (controller.applied ? reconcile('SIGHUP') : undefined));

    try {
      await controller.start();
    } catch (e) {
      if (e instanceof StartupError) {
        process.stderr.write(`mailplane: cannot start: ${e.result.outcome === 'invalid' ? 'the config is invalid' : 'applying the config failed'}\n`);
        for (const line of e.result.errors) process.stderr.write(`${line}\n`);
        await controller.shutdown(0);
        return 1;
      }
      throw e;
    }
    if (stopping) {
      await stopped;
      return 0;
    }
    const gen = controller.applied!;
    log.info('mailplane serving', {
      config: provider.path,
      generation: gen.number,
      listeners: [...gen.listeners.values()].map((l) => `${l.name}=${l.spec.address ?? '*'}:${l.spec.port}/${l.spec.tls}`),
      ops: `${gen.state.observability.host}:${controller.opsPort}`,
      dataDir: gen.state.storage.dataDir,
    });
    if (quickstart) {
      process.stderr.write(
        `\nmailplane quick start (development only; listeners on 127.0.0.1):\n` +
          `  submission 2587 (STARTTLS) / 2465 (TLS), login ${QUICKSTART_LOGIN.user} / ${QUICKSTART_LOGIN.password}, address ${QUICKSTART_LOGIN.address}\n` +
          `  mx 2525, mail lands in ./data/mail/${QUICKSTART_LOGIN.user}/new\n` +
          `  status http://127.0.0.1:${controller.opsPort}/status, metrics /metrics\n` +
          `  write ./mailserver.yaml (see examples/) to run your own config\n\n`,
      );
    } else {
      watcher = new ConfigWatcher((reason) => void reconcile(reason), log, { debounceMs: 50, recheckMs: recheck * 1000, events: !values['no-watch'] });
      const w = controller.watchList();
      await watcher.update(w.files, w.unread);
    }
    if (stopping) {
      await stopped;
      return 0;
    }
    return new Promise<number>((done) => {
      stopRequested = () => void stopped!.then(() => done(0));
    });
  },
};
