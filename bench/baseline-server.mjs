// The baseline the benchmark compares mailplane with: a bare smtp-server on loopback that
// writes each message to its own file and fsyncs it before answering 250 (smtp-server's
// 100 ms pre-greeting delay and reverse-DNS lookup removed, as the library allows at best).
// Usage: node bench/baseline-server.mjs PORT DIR
import { mkdirSync } from 'node:fs';
import fs from 'node:fs';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const [port, dir] = [Number(process.argv[2]), process.argv[3]];
mkdirSync(dir, { recursive: true });

// the library's hard-coded 100 ms early-talker delay, removed
SMTPConnection.prototype.init = function init() {
  this._setListeners(() => this.connectionReady());
};

let n = 0;
const cb = (f, ...a) => new Promise((res, rej) => f(...a, (e, v) => (e ? rej(e) : res(v))));
const server = new SMTPServer({
  disableReverseLookup: true,
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  async onData(stream, _session, done) {
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const path = join(dir, `${process.pid}.${n++}`);
    try {
      const fd = await cb(fs.open, path, 'wx');
      await cb(fs.writev, fd, chunks);
      await cb(fs.fdatasync, fd);
      await cb(fs.close, fd);
      done();
    } catch (e) {
      done(Object.assign(new Error('451 storage'), { responseCode: 451 }));
    }
  },
});
server.on('error', () => {});
server.listen(port, '127.0.0.1', () => process.stdout.write(`baseline listening on ${port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
