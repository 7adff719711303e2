/**
 * The HTTP surface: routes, headers, and nothing else. Every decision about images, keys or
 * engines is the pipeline's; this file maps requests to calls and results to headers.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Express, type Request, type Response } from 'express';
import type { Logger } from '../logger.js';
import type { Pipeline } from '../pipeline/index.js';
import { parseSourceHash, parseUpscaleRequest } from '../params/index.js';
import { SourceNotFoundError, type SourceStore } from '../sources/index.js';
import { errorHandler, RequestError } from './errors.js';
import { readinessRoute, type ReadinessCheck } from './health.js';

export interface AppOptions {
  pipeline: Pipeline;
  sources: SourceStore;
  logger: Logger;
  sourceMaxBytes: number;
  /** When set, `POST /sources` requires `Authorization: Bearer <token>`. */
  adminToken?: string;
  readiness?: ReadinessCheck[];
  /** Prometheus exposition, when metrics are on. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

const IMMUTABLE = 'public, max-age=31536000, immutable';

/** Constant-time comparison, so response timing does not reveal how much of a token matched. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function rawQuery(req: Request): URLSearchParams {
  const at = req.originalUrl.indexOf('?');
  return new URLSearchParams(at === -1 ? '' : req.originalUrl.slice(at + 1));
}

/** `If-None-Match` matches a strong ETag (weak comparison is fine for GET, RFC 9110 13.1.2). */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

export function createApp(options: AppOptions): Express {
  const { pipeline, sources, logger } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  // One line per request, at the edge, with what the client saw.
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      logger.info(
        {
          method: req.method,
          url: req.originalUrl.split('?')[0],
          status: res.statusCode,
          cache: res.getHeader('X-Cache'),
          ms: Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10,
        },
        'request completed',
      );
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });
  app.get('/readyz', readinessRoute(options.readiness ?? []));
  if (options.metrics) {
    const metrics = options.metrics;
    app.get('/metrics', async (_req, res) => {
      const { contentType, body } = await metrics();
      res.setHeader('Cache-Control', 'no-store');
      res.type(contentType).send(body);
    });
  }

  app.post(
    '/sources',
    (req, _res, next) => {
      if (options.adminToken && !sameSecret(req.get('authorization') ?? '', `Bearer ${options.adminToken}`)) {
        throw new RequestError(401, 'UNAUTHORIZED', 'Unauthorized', {
          detail: 'POST /sources requires Authorization: Bearer <ADMIN_TOKEN>',
        });
      }
      if (req.is('application/json')) {
        throw new RequestError(415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type', {
          detail: 'registering a source by URL is not supported yet: send the image bytes as the body (Content-Type: image/*)',
          allowed: 'image/jpeg, image/png, image/webp, image/avif, image/gif, image/tiff',
        });
      }
      next();
    },
    // Any content type: curl's --data-binary says form-urlencoded; sharp decides what is an image.
    express.raw({ type: () => true, limit: options.sourceMaxBytes }),
    async (req: Request, res: Response) => {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const { info, created } = await sources.put(body);
      res.setHeader('Location', `/sources/${info.hash}`);
      res.setHeader('Cache-Control', 'no-store');
      res.status(created ? 201 : 200).json({
        hash: info.hash,
        width: info.width,
        height: info.height,
        format: info.format,
        bytes: info.bytes,
      });
    },
  );

  app.get('/sources/:hash', async (req, res) => {
    const hash = parseSourceHash(String(req.params.hash));
    const notFound = () => new SourceNotFoundError({ param: 'hash', detail: `no source with hash ${hash}` });
    const info = await sources.head(hash);
    if (!info) throw notFound();
    const etag = `"${hash}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', IMMUTABLE);
    if (matches(req.get('if-none-match'), etag)) return void res.status(304).end();
    res.setHeader('Content-Type', info.contentType);
    res.setHeader('Content-Length', String(info.bytes));
    // Only a GET owes the bytes; HEAD and 304 are answered from the info alone.
    if (req.method === 'HEAD') return void res.end();
    const image = await sources.get(hash);
    if (!image) throw notFound();
    res.end(image.data);
  });


  app.get('/upscale/:hash', async (req, res) => {
    const request = parseUpscaleRequest(String(req.params.hash), rawQuery(req));
    const accept = req.get('accept');
    const prepared = await pipeline.prepare(request, accept);
    if (prepared.vary) res.setHeader('Vary', 'Accept');
    if (matches(req.get('if-none-match'), `"${prepared.etag}"`)) {
      res.setHeader('ETag', `"${prepared.etag}"`);
      res.setHeader('Cache-Control', IMMUTABLE);
      res.setHeader('X-Cache', 'HIT; revalidated');
      return void res.status(304).end();
    }
    const result = await pipeline.upscale(prepared);
    res.setHeader('Content-Type', result.contentType);
    res.setHeader('Content-Length', String(result.data.length));
    res.setHeader('ETag', `"${result.etag}"`);
    res.setHeader(
      'Cache-Control',
      result.maxAgeSeconds !== undefined ? `public, max-age=${result.maxAgeSeconds}` : IMMUTABLE,
    );
    res.setHeader('X-Cache', result.cache === 'HIT' ? `HIT; tier=${result.tier}` : 'MISS');
    res.setHeader('X-Upscale-Engine', result.fallback ? `${result.engine}; fallback` : result.engine);
    if (result.ignored.length > 0) res.setHeader('X-Upscale-Ignored', result.ignored.join(', '));
    const timing = [
      result.timings.engineMs !== undefined ? `engine;dur=${result.timings.engineMs.toFixed(1)}` : undefined,
      result.timings.transformMs !== undefined ? `transform;dur=${result.timings.transformMs.toFixed(1)}` : undefined,
      `cache;desc="${result.cache === 'HIT' ? result.tier : 'miss'}"`,
    ].filter(Boolean);
    res.setHeader('Server-Timing', timing.join(', '));
    res.status(200).end(req.method === 'HEAD' ? undefined : result.data);
  });

  app.use((req, _res, next) => {
    next(
      new RequestError(404, 'NOT_FOUND', 'Not found', {
        detail: `no route for ${req.method} ${req.path}; see GET /upscale/:hash, POST /sources, GET /sources/:hash`,
      }),
    );
  });
  app.use(errorHandler(logger, { sourceMaxBytes: options.sourceMaxBytes }));
  return app;
}
