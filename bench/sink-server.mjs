// A reference point, not a competitor: the same bare smtp-server as the baseline, but it stores
// nothing (it reads each message and answers 250). The gap between it and the baseline is what
// durable storage costs; what is left is the library's own per-connection cost.
// Usage: node bench/sink-server.mjs PORT [--count]
// With --count (the far end of a relay) it prints its running count after every message.
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const port = Number(process.argv[2]);
const counting = process.argv.includes('--count');
let received = 0;

// the library's hard-coded 100 ms early-talker delay, removed (as in the baseline)
SMTPConnection.prototype.init = function init() {
  this._setListeners(() => this.connectionReady());
};

const server = new SMTPServer({
  disableReverseLookup: true,
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  onData(stream, _session, done) {
    stream.on('data', () => {});
    stream.on('end', () => {
      if (counting) process.stdout.write(`${++received}\n`);
      done();
    });
  },
});
server.on('error', () => {});
server.listen(port, '127.0.0.1', () => process.stdout.write(`sink listening on ${port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
