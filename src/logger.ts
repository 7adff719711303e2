/**
 * pino, with every place a secret could surface redacted: the API key, auth headers, Redis URLs
 * (which may carry a password). Logged object first, then message; errors under `err`.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { requestContext } from './request-context.js';

export type { Logger };

export const REDACT_PATHS = [
  'apiKey',
  '*.apiKey',
  'SEGMIND_API_KEY',
  '*.SEGMIND_API_KEY',
  'REDIS_URL',
  '*.REDIS_URL',
  'SIGNING_KEY',
  '*.SIGNING_KEY',
  'ADMIN_TOKEN',
  '*.ADMIN_TOKEN',
  'headers["x-api-key"]',
  'headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.authorization',
  '*.headers["x-api-key"]',
  '*.headers.authorization',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // Every line written while serving a request names it (see request-context.ts).
      mixin: () => {
        const context = requestContext.getStore();
        return context ? { reqId: context.requestId } : {};
      },
    },
    destination,
  );
}

/**
 * The per-request "request completed" line, on the same stream and level as `logger` but without
 * its redaction and mixin: that line holds only fields written here (method, path without query,
 * status, cache, time, request id), and redaction's wildcard paths cost about 10 µs a line, more
 * than the whole fast-lane answer (bench/RESULTS.md).
 */
export function createAccessLogger(logger: Logger): Logger {
  const stream = (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym];
  return pino({ level: logger.level }, stream);
}
