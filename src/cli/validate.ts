// `mailplane validate FILE…`: what operators run in CI before a config reaches a server.
import { parseArgs } from 'node:util';
import { formatIssue, sortIssues, type ConfigIssue } from '../config/issues.js';
import { loadConfigFile } from '../config/load.js';
import { UsageError, type Command } from './command.js';

export const validateCommand: Command = {
  name: 'validate',
  summary: 'check config files against the schema and the semantic rules',
  usage: `Usage: mailplane validate [--format text|json] FILE...

Checks each FILE (YAML, normally mailserver.yaml) and prints "FILE: ok" or every
error and warning as FILE:LINE:COL: path: message. Warnings do not fail validation.
Referenced files (certificates, users file, secret files) are read and checked too.

Options:
  --format text|json   output format (default text); json is for CI bots
  -h, --help           show this help

Exit status: 0 all valid, 1 some file invalid, 2 usage error or unreadable file.`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { format: { type: 'string', default: 'text' } },
    });
    if (values.format !== 'text' && values.format !== 'json') throw new UsageError(`--format must be text or json, not '${values.format}'`);
    if (positionals.length === 0) throw new UsageError('no FILE given');
    let exit = 0;
    const results = [];
    for (const file of positionals) {
      const r = await loadConfigFile(file);
      if (r.unreadable) exit = 2;
      else if (r.errors.length && exit === 0) exit = 1;
      results.push({ file, valid: r.errors.length === 0, errors: r.errors, warnings: r.warnings });
    }
    if (values.format === 'json') {
      const strip = (i: ConfigIssue) => ({ code: i.code, severity: i.severity, file: i.file, line: i.line, col: i.col, path: i.path, message: i.message });
      const out = { valid: exit === 0, files: results.map((r) => ({ ...r, errors: r.errors.map(strip), warnings: r.warnings.map(strip) })) };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return exit;
    }
    for (const r of results) {
      const all = sortIssues([...r.errors, ...r.warnings]);
      for (const i of all) process.stdout.write(`${formatIssue(i)}\n`);
      const w = r.warnings.length ? ` (${r.warnings.length} warning${r.warnings.length === 1 ? '' : 's'})` : '';
      if (r.valid) process.stdout.write(`${r.file}: ok${w}\n`);
      else
        process.stdout.write(
          `${r.file}: invalid: ${r.errors.length} error${r.errors.length === 1 ? '' : 's'}${r.warnings.length ? `, ${r.warnings.length} warning${r.warnings.length === 1 ? '' : 's'}` : ''}\n`,
        );
    }
    return exit;
  },
};
