// Structured logs: JSON lines when stderr is not a terminal, short readable lines when it is.
import { writeSync } from 'node:fs';
// Callers pass fields, never secrets; the Secret type prints as [redacted] if one slips in.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  json?: boolean;
  write?: (line: string) => void;
  now?: () => Date;
}

// Lines written in one burst (a busy event-loop turn) leave in one write; exit flushes the rest.
let buffered: string[] = [];
let scheduled = false;
function flushStderr(): void {
  scheduled = false;
  if (!buffered.length) return;
  const out = buffered.join('');
  buffered = [];
  process.stderr.write(out);
}
process.on('exit', () => {
  if (buffered.length) writeSync(2, buffered.join(''));
  buffered = [];
});
function bufferedStderr(line: string): void {
  buffered.push(line);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushStderr);
  }
}

export function createLogger(opts: LoggerOptions = {}, bound: Fields = {}): Logger {
  const min = ORDER[opts.level ?? 'info'];
  const json = opts.json ?? !process.stderr.isTTY;
  const write = opts.write ?? bufferedStderr;
  const now = opts.now ?? (() => new Date());
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (ORDER[level] < min) return;
    const all = { ...bound, ...fields };
    if (json) {
      write(`${JSON.stringify({ time: now().toISOString(), level, msg, ...all }, replacer)}\n`);
    } else {
      const extra = Object.entries(all)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"]/.test(v) ? v : JSON.stringify(v, replacer)}`)
        .join(' ');
      write(`${textTime(now())} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? `  ${extra}` : ''}\n`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger(opts, { ...bound, ...f }),
  };
}

/** "2026-11-29 14:03:07.512Z": the date and the time (UTC, as the JSON lines), for people. */
function textTime(d: Date): string {
  return d.toISOString().replace('T', ' ');
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { message: value.message, code: (value as NodeJS.ErrnoException).code };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** A logger that drops everything (tests, library internals). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
