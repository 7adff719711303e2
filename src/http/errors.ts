/**
 * The one place errors become responses: a `CdnError` is an RFC 9457 problem+json with its own
 * status; anything else is a generic 500 that says nothing of its cause. Logged once, here, by
 * class: 4xx at info without a stack, 5xx at error with `err`.
 */
import type { ErrorRequestHandler, Request, Response } from 'express';
import { CdnError } from '../errors.js';
import type { Logger } from '../logger.js';
import { requestContext } from '../request-context.js';
import { SourceTooLargeError } from '../sources/index.js';
import { InvalidParamError } from '../params/index.js';

export class RequestError extends CdnError {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  constructor(status: number, code: string, title: string, options: ConstructorParameters<typeof CdnError>[0]) {
    super(options);
    this.status = status;
    this.code = code;
    this.title = title;
  }
}

/** Body-parser and Express errors that carry their own HTTP meaning. */
function fromFramework(error: unknown, req: Request, limitBytes: number): CdnError | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { type, status, limit, message } = error as { type?: string; status?: number; limit?: number; message?: string };
  const encoding = (req.get('content-encoding') ?? 'identity').toLowerCase();
  if (type === 'entity.too.large') {
    const max = typeof limit === 'number' ? limit : limitBytes;
    if (max !== limitBytes) {
      // The JSON body's own limit (POST /sources {"url"}), not the image one.
      return new RequestError(413, 'BODY_TOO_LARGE', 'Request body too large', {
        param: 'body',
        allowed: `a JSON body of at most ${max} bytes`,
        detail: `the JSON body is larger than ${max} bytes; it holds a URL, not an image`,
      });
    }
    return new SourceTooLargeError({
      detail: `the body is larger than ${limitBytes} bytes (SOURCE_MAX_BYTES)`,
      allowed: `at most ${limitBytes} bytes`,
    });
  }
  if (type === 'encoding.unsupported') {
    return new RequestError(415, 'UNSUPPORTED_ENCODING', 'Unsupported content encoding', {
      param: 'Content-Encoding',
      allowed: 'identity, gzip, deflate, br',
      detail: 'the body\'s Content-Encoding is not supported: send it uncompressed (images are compressed already)',
    });
  }
  if (type === 'entity.parse.failed' || type === 'charset.unsupported') {
    return new InvalidParamError({ param: 'body', detail: 'the request body could not be read: expected valid JSON' });
  }
  if (type === 'request.aborted') return undefined;
  if (status === 400 && typeof message === 'string' && message.startsWith('Failed to decode param')) {
    // Express could not percent-decode a path parameter.
    const param = req.path.startsWith('/upscale/url/') ? 'url' : 'hash';
    return new InvalidParamError({ param, allowed: 'valid percent-encoding', detail: `the path's ${param} is not valid percent-encoding` });
  }
  if (status === 400 && encoding !== 'identity') {
    // A body that does not decode as its Content-Encoding says (zlib or brotli refused it).
    return new InvalidParamError({
      param: 'Content-Encoding',
      allowed: 'a body compressed as its Content-Encoding says, or none',
      detail: `the body does not decode as ${encoding}, its Content-Encoding`,
    });
  }
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new RequestError(status, 'BAD_REQUEST', 'Bad request', { detail: 'the request could not be processed' });
  }
  return undefined;
}

/** The RFC 9457 body of `error` (also an item of a batch answer). */
export function problemBody(error: CdnError, instance?: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    type: error.type,
    title: error.title,
    status: error.status,
    code: error.code,
    detail: error.detail,
  };
  if (error.param !== undefined) body.param = error.param;
  if (error.allowed !== undefined) body.allowed = error.allowed;
  if (instance) body.instance = instance;
  const requestId = requestContext.getStore()?.requestId;
  if (requestId) body.request_id = requestId;
  return body;
}

export function sendProblem(res: Response, error: CdnError, instance?: string): void {
  const body = problemBody(error, instance);
  if (error.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(error.retryAfterSeconds));
  // An invalid URL stays invalid: let caches keep the 400. Everything else may change (a 404
  // source may be uploaded, a 403 signed): caching those would poison a CDN in front of us.
  res.setHeader('Cache-Control', error.status === 400 ? 'public, max-age=3600' : 'no-store');
  res.removeHeader('ETag');
  res.removeHeader('Content-Length');
  res.removeHeader('Content-Disposition');
  res.status(error.status).type('application/problem+json').send(JSON.stringify(body));
}

export function errorHandler(logger: Logger, options: { sourceMaxBytes: number }): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) return next(error);
    const known = error instanceof CdnError ? error : fromFramework(error, req, options.sourceMaxBytes);
    const instance = req.originalUrl.split('?')[0];
    if (known) {
      const line = { code: known.code, status: known.status, method: req.method, url: instance };
      if (known.status >= 500) logger.error({ ...line, err: error }, known.detail);
      else logger.info(line, known.detail);
      sendProblem(res, known, instance);
      return;
    }
    logger.error({ err: error, method: req.method, url: instance }, 'unexpected error');
    sendProblem(
      res,
      new RequestError(500, 'INTERNAL', 'Internal error', { detail: 'an unexpected error occurred; it has been logged' }),
      instance,
    );
  };
}
