/**
 * The upstream's own wire protocol (`../shared/UPSTREAM.md`), so code written for Segmind (its SDK
 * with `base_url` pointed here, or plain HTTP) gets de-duplication, the cache and the journal by
 * changing one setting: `POST /v1/clarity-upscaler` (the image bytes), `POST /v2/clarity-upscaler`
 * (submit), `GET /v2/requests/:id[/status]` (poll, result). One job model with `/jobs`: a request
 * id is a job id (with the output format, when it is not PNG), so two clients sending the same
 * payload poll the same job, and a payload that means the same work as an `/upscale` URL is the
 * same master and the same upstream call.
 *
 * Errors use the upstream's `{"error": "…"}` envelope, because its clients parse that.
 */
import { createHash } from 'node:crypto';
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response, type Router } from 'express';
import { CdnError } from '../errors.js';
import type { Jobs, JobView } from '../jobs/index.js';
import type { Logger } from '../logger.js';
import { InvalidParamError } from '../params/index.js';
import { deadline } from '../pipeline/index.js';
import type { MissLimiter } from '../security/index.js';
import type { SourceInfo, SourceStore } from '../sources/index.js';
import { asImage, IMMUTABLE, sameSecret } from './headers.js';

export interface GatewayOptions {
  jobs: Jobs;
  sources: Pick<SourceStore, 'put'>;
  registerUrl: (url: string) => Promise<{ info: SourceInfo }>;
  /** `GATEWAY_API_KEYS`; empty with `open`: no key needed. */
  keys: readonly string[];
  open: boolean;
  publicBaseUrl?: string;
  /** The JSON body's limit: an image and a mask in base64. */
  maxBodyBytes: number;
  /** `REQUEST_TIMEOUT_MS`: the longest a v1 call waits. */
  requestTimeoutMs: number;
  missLimiter?: MissLimiter;
  logger: Logger;
}

export const MODEL = 'clarity-upscaler';
/** `output_format` → our output format, and the suffix of request ids that are not PNG. */
const OUTPUT_FORMATS: Record<string, 'png' | 'jpeg' | 'webp'> = { png: 'png', jpg: 'jpeg', jpeg: 'jpeg', webp: 'webp' };
const REQUEST_ID = /^([0-9a-f]{64})(?:-(jpeg|webp))?$/;

/** The upstream's envelope for every gateway error. */
class GatewayError extends CdnError {
  readonly code: string;
  readonly title = 'Gateway error';
  constructor(
    readonly status: number,
    detail: string,
    code = 'GATEWAY_ERROR',
  ) {
    super({ detail });
    this.code = code;
  }
}

const notFound = (id: string) => new GatewayError(404, `Request ${id} not found`, 'NOT_FOUND');

function parseRequestId(raw: string): { id: string; format: 'png' | 'jpeg' | 'webp'; requestId: string } {
  const match = REQUEST_ID.exec(raw);
  if (!match) throw notFound(raw.slice(0, 100));
  return { id: match[1] as string, format: (match[2] as 'jpeg' | 'webp' | undefined) ?? 'png', requestId: raw };
}

const requestIdOf = (jobId: string, format: string) => (format === 'png' ? jobId : `${jobId}-${format}`);

export function mountGatewayRoutes(router: Router, options: GatewayOptions): void {
  const { jobs } = options;
  const gateway = express.Router();
  const base = (req: Request) => options.publicBaseUrl?.replace(/\/+$/, '') ?? `${req.protocol}://${req.get('host') ?? 'localhost'}`;

  /** The caller's key, checked against every configured key in constant time. */
  const authenticate: RequestHandler = (req, res, next) => {
    if (options.keys.length === 0) return next();
    const given = req.get('x-api-key');
    if (!given) throw new GatewayError(401, 'Missing API key: send it in the x-api-key header', 'UNAUTHORIZED');
    let ok = false;
    for (const key of options.keys) ok = sameSecret(given, key) || ok;
    if (!ok) throw new GatewayError(401, 'Invalid API key', 'UNAUTHORIZED');
    // Only a digest stays with the request: per-key miss rates, never the key itself.
    res.locals.client = `key:${createHash('sha256').update(given).digest('hex').slice(0, 16)}`;
    next();
  };

  /** An `image`/`mask` value: an http(s) URL (fetched), a data URI or raw base64: a source hash. */
  async function sourceOf(field: string, value: unknown): Promise<string> {
    if (typeof value !== 'string' || value === '') {
      throw new InvalidParamError({ param: field, allowed: 'an http(s) image URL, base64, or a data URI', detail: `${field} must be an image URL, base64 or a data URI` });
    }
    if (/^https?:\/\//i.test(value)) return (await options.registerUrl(value)).info.hash;
    const data = /^data:[^,]*;base64,/i.exec(value) ? value.slice(value.indexOf(',') + 1) : value;
    const compact = data.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(compact)) {
      throw new InvalidParamError({ param: field, allowed: 'an http(s) image URL, base64, or a data URI', detail: `${field} is neither an http(s) URL nor base64` });
    }
    return (await options.sources.put(Buffer.from(compact, compact.includes('-') || compact.includes('_') ? 'base64url' : 'base64'))).info.hash;
  }

  /** The body as a job of the jobs API, with the upstream's defaults (scale_factor 1). */
  async function jobOf(body: unknown): Promise<{ job: Record<string, unknown>; format: 'png' | 'jpeg' | 'webp' }> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new InvalidParamError({ param: 'body', allowed: 'a JSON object', detail: 'the body must be a JSON object of the model\'s parameters' });
    }
    const { image, mask, output_format: outputFormat = 'png', ...params } = body as Record<string, unknown>;
    if (image === undefined) throw new InvalidParamError({ param: 'image', allowed: 'an http(s) image URL, base64, or a data URI', detail: 'image is required' });
    const format = typeof outputFormat === 'string' ? OUTPUT_FORMATS[outputFormat.toLowerCase()] : undefined;
    if (!format) throw new InvalidParamError({ param: 'output_format', allowed: 'png, jpg, webp', detail: 'output_format must be one of png, jpg, webp' });
    const source = await sourceOf('image', image);
    if (mask !== undefined && mask !== null && mask !== '') params.mask = await sourceOf('mask', mask);
    // The upstream's default where it differs from the query's: a payload without scale_factor
    // means 1 here, so it is the same work as `/upscale?scale=1`.
    if (params.scale_factor === undefined) params.scale_factor = 1;
    return { job: { source, params, variants: [{ format }] }, format };
  }

  /** Submits a job; a client's miss rate (per key) counts only work that will reach the engine. */
  async function submit(req: Request, res: Response) {
    const { job, format } = await jobOf(req.body);
    const limiter = options.missLimiter;
    const client = String(res.locals.client ?? req.ip ?? 'unknown');
    const { view } = await jobs.submit(job, base(req), limiter ? { admitNew: () => limiter.admit(client) } : {});
    return { view, format, requestId: requestIdOf(view.id, format) };
  }

  const metricsOf = (view: JobView) => {
    const m = jobs.record(view.id)?.metrics;
    if (!m) return {};
    return m.cached ? { inference_time: 0, cost: 0, cache: 'HIT' } : { inference_time: m.inference_time, ...(m.cost !== null ? { cost: m.cost } : {}) };
  };

  gateway.post(
    ['/v1/:model', '/v2/:model'],
    (req, _res, next) => {
      if (req.params.model !== MODEL) {
        throw new GatewayError(404, `Model ${String(req.params.model).slice(0, 100)} not found: this gateway serves only ${MODEL}`, 'NOT_FOUND');
      }
      next();
    },
    authenticate,
    express.json({ limit: options.maxBodyBytes, type: () => true }),
    async (req, res) => {
      const { view, format, requestId } = await submit(req, res);
      const root = base(req);
      if (req.path.startsWith('/v2/')) {
        const statusUrl = `${root}/v2/requests/${requestId}/status`;
        return void res.status(200).json({
          request_id: requestId,
          status: view.status === 'COMPLETED' || view.status === 'FAILED' ? view.status : 'QUEUED',
          poll_url: statusUrl,
          status_url: statusUrl,
          response_url: `${root}/v2/requests/${requestId}`,
        });
      }
      // v1: the answer is the image, once the job is done (REQUEST_TIMEOUT_MS at most).
      const done = await deadline(jobs.wait(view.id, root), options.requestTimeoutMs);
      if (done.status === 'FAILED') {
        const record = jobs.record(view.id);
        throw new GatewayError(record?.error?.status ?? 422, done.error ?? 'the job failed', done.code);
      }
      const image = await jobs.render(view.id, { format });
      const metrics = metricsOf(done);
      asImage(res);
      res.setHeader('Content-Type', image.contentType);
      res.setHeader('x-request-id', requestId);
      res.setHeader('x-cost', String('cost' in metrics ? metrics.cost : 0));
      res.setHeader('x-generation-time', String(metrics.inference_time ?? 0));
      res.setHeader('x-cache', 'cache' in metrics ? 'HIT' : 'MISS');
      res.status(200).end(image.data);
    },
  );

  /** The job of a request id, or a bare stored master (its record pruned), or a 404. */
  async function lookup(raw: string) {
    const { id, format, requestId } = parseRequestId(raw);
    const record = jobs.record(id);
    if (record) return { id, format, requestId, view: jobs.get(id) };
    if (await jobs.stored(id)) return { id, format, requestId, view: undefined };
    throw notFound(raw);
  }

  gateway.get('/v2/requests/:id/status', authenticate, async (req, res) => {
    const { requestId, view } = await lookup(String(req.params.id));
    res.setHeader('Cache-Control', 'no-store');
    const status = view?.status ?? 'COMPLETED';
    if (status === 'FAILED') {
      return void res.status(422).json({ status, error: view?.error ?? 'the job failed', metrics: {}, request_id: requestId });
    }
    res.json({ status, request_id: requestId, metrics: {} });
  });

  gateway.get('/v2/requests/:id', authenticate, async (req, res) => {
    const { requestId, view } = await lookup(String(req.params.id));
    res.setHeader('Cache-Control', 'no-store');
    const status = view?.status ?? 'COMPLETED';
    if (status === 'FAILED') {
      return void res.status(422).json({ status, error: view?.error ?? 'the job failed', metrics: {}, output: null, request_id: requestId });
    }
    res.json({
      status,
      error: null,
      metrics: view ? metricsOf(view) : { inference_time: 0, cost: 0, cache: 'HIT' },
      output: status === 'COMPLETED' ? `${base(req)}/v2/requests/${requestId}/output` : null,
    });
  });

  // The result's image, as the upstream's `output` URL: no key needed to download it.
  gateway.get('/v2/requests/:id/output', async (req, res) => {
    const { id, format, requestId, view } = await lookup(String(req.params.id));
    let image: { data: Buffer; contentType: string };
    if (view) {
      if (view.status !== 'COMPLETED') throw new GatewayError(409, `Request ${requestId} is ${view.status}`, 'JOB_NOT_READY');
      image = await jobs.render(id, { format });
    } else if (format === 'png') {
      const master = await jobs.result(id);
      image = { data: master.data, contentType: master.meta.contentType };
    } else {
      throw notFound(requestId);
    }
    asImage(res);
    res.setHeader('Content-Type', image.contentType);
    res.setHeader('Content-Length', String(image.data.length));
    res.setHeader('Cache-Control', IMMUTABLE);
    res.setHeader('ETag', `"${requestId}"`);
    res.end(image.data);
  });

  const envelope: ErrorRequestHandler = (error: unknown, req, res, next) => {
    if (res.headersSent) return next(error);
    const known = error instanceof CdnError ? error : asFrameworkError(error, options.maxBodyBytes);
    if (!known) {
      options.logger.error({ err: error, url: req.originalUrl.split('?')[0] }, 'unexpected gateway error');
      return void res.status(500).json({ error: 'Internal error; it has been logged' });
    }
    if (known.status >= 500) options.logger.error({ err: error, code: known.code }, known.detail);
    else options.logger.info({ code: known.code, status: known.status }, known.detail);
    if (known.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(known.retryAfterSeconds));
    res.setHeader('Cache-Control', 'no-store');
    const field = known instanceof InvalidParamError && known.allowed ? ` (allowed: ${known.allowed})` : '';
    res.status(known.status).json({ error: `${known.detail}${field}` });
  };
  gateway.use(envelope);
  router.use(gateway);
}

/** Body-parser failures in the upstream's words. */
function asFrameworkError(error: unknown, limit: number): CdnError | undefined {
  const { type } = (error ?? {}) as { type?: string };
  if (type === 'entity.too.large') return new GatewayError(413, `the body is larger than ${limit} bytes`, 'BODY_TOO_LARGE');
  if (type === 'entity.parse.failed') return new GatewayError(400, 'the body is not valid JSON', 'INVALID_PARAM');
  return undefined;
}
