// A relay that answers slowly: the far end of the "big queue after a restart" row. Every reply
// after the greeting waits DELAY ms, and each connection's message is read at no more than RATE
// bytes a second (the socket is not read meanwhile, so the sender's writes back up, as with a
// relay on a slow link). It stores nothing and prints its running count after every message.
// Usage: node bench/slow-relay.mjs PORT DELAY_MS RATE_BYTES_PER_S
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const port = Number(process.argv[2]);
const delay = Number(process.argv[3] ?? 500);
const rate = Number(process.argv[4] ?? 2_000_000);
let received = 0;

// the library's hard-coded 100 ms early-talker delay, removed (as in the sink)
SMTPConnection.prototype.init = function init() {
  this._setListeners(() => this.connectionReady());
};

const later = (fn) => setTimeout(fn, delay);

const server = new SMTPServer({
  disableReverseLookup: true,
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  size: 100_000_000,
  onConnect: (_session, done) => done(),
  onMailFrom: (_address, _session, done) => later(done),
  onRcptTo: (_address, _session, done) => later(done),
  onData(stream, _session, done) {
    const start = Date.now();
    let bytes = 0;
    stream.on('data', (chunk) => {
      bytes += chunk.length;
      // ahead of the rate: stop reading until the clock catches up
      const due = start + (bytes / rate) * 1000;
      const wait = due - Date.now();
      if (wait > 5) {
        stream.pause();
        setTimeout(() => stream.resume(), wait);
      }
    });
    stream.on('end', () =>
      later(() => {
        process.stdout.write(`${++received}\n`);
        done();
      }),
    );
  },
});
server.on('error', () => {});
server.listen(port, '127.0.0.1', () => process.stdout.write(`slow relay listening on ${port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
