/**
 * What every request passes first: its id, its one log line and metrics, the security headers,
 * and the length caps. Also the answers for a known route asked with the wrong method.
 */
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from '../logger.js';
import type { MetricsRecorder } from '../metrics.js';
import type { Drain } from './drain.js';
import { requestContext } from '../request-context.js';
import { RequestError } from './errors.js';
import { setSecurityHeaders } from './headers.js';

/** An id a client or proxy may choose: short, printable, nothing a log could be forged with. */
export const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export interface EdgeOptions {
  /** Where the "request completed" line goes (see `createAccessLogger`). */
  accessLog: Logger;
  metrics?: MetricsRecorder;
  /** Shutdown: answers in flight and after it close their connection. */
  drain?: Drain;
}

/**
 * `X-Request-Id` (kept when the client sent a sane one, generated otherwise) on the response, in
 * every log line written while serving it (request-context.ts) and in every problem+json; then
 * one "request completed" line and the request metrics when it finishes.
 */
export function requestEdge(options: EdgeOptions): RequestHandler {
  const { accessLog, metrics } = options;
  return (req, res, next) => {
    const sent = req.get('x-request-id');
    const requestId = sent && CLIENT_REQUEST_ID.test(sent) ? sent : randomUUID();
    const started = process.hrtime.bigint();
    res.setHeader('X-Request-Id', requestId);
    setSecurityHeaders(res);
    options.drain?.track(res);
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = (req.route as { path?: string } | undefined)?.path ?? 'unmatched';
      metrics?.request(route, req.method, res.statusCode, seconds);
      accessLog.info(
        {
          reqId: requestId,
          method: req.method,
          url: req.originalUrl.split('?')[0],
          status: res.statusCode,
          cache: res.getHeader('X-Cache'),
          ms: Math.round(seconds * 1e4) / 10,
        },
        'request completed',
      );
    });
    requestContext.run({ requestId }, next);
  };
}

/**
 * 414 past `MAX_URL_LENGTH` (path and query) or `MAX_QUERY_LENGTH`, 431 past `MAX_HEADER_BYTES`,
 * before any parsing. (Node refuses a head past both caps together itself: client-error.ts.)
 */
export function lengthCaps(limits: { maxUrlLength: number; maxQueryLength: number; maxHeaderBytes: number }): RequestHandler {
  return (req, _res, next) => {
    let headerBytes = 0;
    // Each header as written: name, ": ", value, CRLF.
    for (const part of req.rawHeaders) headerBytes += part.length + 2;
    if (headerBytes > limits.maxHeaderBytes) {
      throw new RequestError(431, 'HEADERS_TOO_LARGE', 'Request header fields too large', {
        param: 'MAX_HEADER_BYTES',
        allowed: `at most ${limits.maxHeaderBytes} bytes of headers`,
        detail: `the request headers take ${headerBytes} bytes; this server accepts at most ${limits.maxHeaderBytes} (MAX_HEADER_BYTES)`,
      });
    }
    const url = req.originalUrl;
    const at = url.indexOf('?');
    const queryLength = at === -1 ? 0 : url.length - at - 1;
    if (url.length > limits.maxUrlLength) {
      throw new RequestError(414, 'URI_TOO_LONG', 'URI too long', {
        param: 'MAX_URL_LENGTH',
        allowed: `at most ${limits.maxUrlLength} characters of path and query`,
        detail: `the URL is ${url.length} characters; this server accepts at most ${limits.maxUrlLength} (MAX_URL_LENGTH)`,
      });
    }
    if (queryLength > limits.maxQueryLength) {
      throw new RequestError(414, 'URI_TOO_LONG', 'URI too long', {
        param: 'MAX_QUERY_LENGTH',
        allowed: `at most ${limits.maxQueryLength} characters of query`,
        detail: `the query string is ${queryLength} characters; this server accepts at most ${limits.maxQueryLength} (MAX_QUERY_LENGTH); long prompts belong in a preset`,
      });
    }
    next();
  };
}

/**
 * For a known route asked with another method: `OPTIONS` is answered 204 with `Allow`, anything
 * else 405 with `Allow` and a problem naming the methods.
 */
export function otherMethods(allow: string): RequestHandler {
  return (req, res) => {
    res.setHeader('Allow', allow);
    if (req.method === 'OPTIONS') return void res.status(204).end();
    throw new RequestError(405, 'METHOD_NOT_ALLOWED', 'Method not allowed', {
      allowed: allow,
      detail: `${req.method} is not allowed on ${req.path}; use ${allow}`,
    });
  };
}
