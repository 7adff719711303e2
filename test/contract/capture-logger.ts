/**
 * A real pino logger (same redaction as production) writing into memory, so tests assert what an
 * operator would read: the level and message of a line, and that a secret never appears.
 */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger.js';

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface CapturedLogger {
  logger: Logger;
  lines(): LogLine[];
  /** Every line at `level` (pino numbers: 30 info, 40 warn, 50 error) whose message contains `text`. */
  find(text: string, level?: number): LogLine[];
  /** Everything written, raw, for "never contains" assertions. */
  text(): string;
}

export const INFO = 30;
export const WARN = 40;
export const ERROR = 50;

export function captureLogger(level = 'debug'): CapturedLogger {
  let raw = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw += String(chunk);
      done();
    },
  });
  const logger = createLogger(level, sink);
  const lines = () =>
    raw
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as LogLine);
  return {
    logger,
    lines,
    find: (text, lvl) => lines().filter((l) => l.msg.includes(text) && (lvl === undefined || l.level === lvl)),
    text: () => raw,
  };
}
