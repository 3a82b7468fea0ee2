// Shared tail of the generators: write the file, or with --check fail when it is stale.
import { readFileSync, writeFileSync } from 'node:fs';

export function writeOrCheck(out: URL, content: string, label: string): void {
  let current = '';
  try {
    current = readFileSync(out, 'utf8');
  } catch {}
  if (process.argv.includes('--check')) {
    if (current !== content) {
      console.error(`${label} is stale: run \`npm run generate\` and commit the result`);
      process.exit(1);
    }
    console.log(`${label}: up to date`);
  } else if (current !== content) {
    writeFileSync(out, content);
    console.log(`wrote ${label}`);
  }
}
