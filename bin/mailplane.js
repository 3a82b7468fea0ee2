#!/usr/bin/env node
// The installed `mailplane` command: runs the compiled CLI (built by `npm run build`,
// which `npm ci` runs through the prepare script).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('mailplane: dist/ is missing; run `npm run build` (npm ci does it for you)\n');
  process.exit(2);
}
const { main } = await import(entry.href);
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Whatever still holds the event loop (a slow client socket, a timer) must not keep a
    // stopped server alive: give stdio a moment to flush, then exit.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err) => {
    process.stderr.write(`mailplane: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
