/**
 * `GET/HEAD /upscale/:hash` and `GET/HEAD /upscale/url/:encoded`: the signature, then the query,
 * then the pipeline; results become headers. A HEAD never starts paid work: it answers from the
 * cache (a conversion of a cached master included) or says MISS without running an engine.
 */
import type { Request, RequestHandler, Response, Router } from 'express';
import type { MetricsRecorder } from '../metrics.js';
import { parseUpscaleRequest, type ParseOptions } from '../params/index.js';
import type { Pipeline, UpscaleResult } from '../pipeline/index.js';
import type { MissLimiter } from '../security/index.js';
import { verifyPath } from '../security/index.js';
import { RequestError } from './errors.js';
import type { FastLane } from './fast-lane.js';
import { asImage, IMMUTABLE, matchesEtag, rawQuery } from './headers.js';

export interface UpscaleRoutesOptions {
  pipeline: Pipeline;
  parse: ParseOptions;
  /** With keys, every URL needs a valid `sig` (403 before any other work). */
  signingKeys?: readonly string[];
  missLimiter?: MissLimiter;
  metrics?: MetricsRecorder;
  /** `GET /upscale/url/…`: resolves an origin URL to a source hash; undefined when the route is off. */
  resolveUrl?: (url: string) => Promise<string>;
  /** Remembers what was served, so the next identical request is answered before Express. */
  fastLane?: Pick<FastLane, 'remember'>;
}

/** 403 unless the URL, as sent, carries a valid `sig` for one of the keys. */
export function requireSignature(keys: readonly string[] | undefined): RequestHandler {
  return (req, _res, next) => {
    if (!keys || keys.length === 0) return next();
    const check = verifyPath(req.originalUrl, keys);
    if (check === 'valid') return next();
    const allowed = 'sig = base64url(HMAC-SHA256(key, path + "?" + query without sig)); see `clarity-cdn sign`';
    throw check === 'missing'
      ? new RequestError(403, 'SIGNATURE_REQUIRED', 'Signature required', {
          param: 'sig',
          allowed,
          detail: 'this server only serves signed URLs: the sig parameter is missing',
        })
      : new RequestError(403, 'INVALID_SIGNATURE', 'Invalid signature', {
          param: 'sig',
          allowed,
          detail: 'the sig parameter does not match this URL (was it changed after signing, or signed with another key?)',
        });
  };
}

/** base64url of an http(s) URL → the URL; a 400 naming the path segment otherwise. */
export function decodeOriginUrl(encoded: string): string {
  const url = /^[A-Za-z0-9_-]+={0,2}$/.test(encoded) ? Buffer.from(encoded, 'base64url').toString('utf8') : '';
  if (!/^https?:\/\/[^\s]+$/i.test(url)) {
    throw new RequestError(400, 'INVALID_PARAM', 'Invalid parameter', {
      param: 'url',
      allowed: 'the base64url encoding of an absolute http(s) URL',
      detail: 'the path must end in the base64url encoding of an http(s) URL, e.g. /upscale/url/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw',
    });
  }
  return url;
}

function writeResult(res: Response, result: UpscaleResult, head: boolean): void {
  asImage(res);
  res.setHeader('Content-Type', result.contentType);
  res.setHeader('Content-Length', String(result.data.length));
  if (result.placeholder || result.draft) {
    // A stand-in: no validator and no-store, so no cache in front keeps it as the real image.
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Upscale-Status', 'pending');
  } else {
    res.setHeader('ETag', `"${result.etag}"`);
    res.setHeader('Cache-Control', result.maxAgeSeconds !== undefined ? `public, max-age=${result.maxAgeSeconds}` : IMMUTABLE);
    res.setHeader('X-Upscale-Status', 'final');
  }
  res.setHeader('X-Cache', result.cache === 'HIT' ? `HIT; tier=${result.tier}` : 'MISS');
  res.setHeader('X-Upscale-Engine', result.fallback ? `${result.engine}; fallback` : result.placeholder ? `${result.engine}; placeholder` : result.engine);
  if (result.ignored.length > 0) res.setHeader('X-Upscale-Ignored', result.ignored.join(', '));
  const timing = [
    result.timings.engineMs !== undefined ? `engine;dur=${result.timings.engineMs.toFixed(1)}` : undefined,
    result.timings.transformMs !== undefined ? `transform;dur=${result.timings.transformMs.toFixed(1)}` : undefined,
    `cache;desc="${result.cache === 'HIT' ? result.tier : 'miss'}"`,
  ].filter(Boolean);
  res.setHeader('Server-Timing', timing.join(', '));
  res.status(200).end(head ? undefined : result.data);
}

export function mountUpscaleRoutes(router: Router, options: UpscaleRoutesOptions): void {
  const { pipeline, metrics, missLimiter } = options;
  const signed = requireSignature(options.signingKeys);

  async function serve(req: Request, res: Response, hash: string): Promise<void> {
    const request = parseUpscaleRequest(hash, rawQuery(req), options.parse);
    const prepared = await pipeline.prepare(request, req.get('accept'));
    if (prepared.vary) res.setHeader('Vary', 'Accept');
    const etag = `"${prepared.etag}"`;
    if (matchesEtag(req.get('if-none-match'), etag)) {
      asImage(res);
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', IMMUTABLE);
      res.setHeader('X-Cache', 'HIT; revalidated');
      metrics?.revalidated();
      return void res.status(304).end();
    }
    const head = req.method === 'HEAD';
    const client = req.ip ?? req.socket.remoteAddress ?? 'unknown';
    const result = head
      ? await pipeline.peek(prepared)
      : await pipeline.upscale(prepared, missLimiter ? { admitMiss: () => missLimiter.admit(client) } : {});
    if (!result) {
      // HEAD of a payload nobody has made: what is known, without paying to learn the rest.
      asImage(res);
      res.setHeader('Content-Type', prepared.plan.contentType);
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('X-Cache', 'MISS');
      res.setHeader('X-Upscale-Engine', pipeline.engine.id);
      if (prepared.ignored.length > 0) res.setHeader('X-Upscale-Ignored', prepared.ignored.join(', '));
      metrics?.served({ cache: 'MISS', tier: 'head', engine: pipeline.engine.id });
      return void res.status(200).end();
    }
    metrics?.served(result);
    writeResult(res, result, head);
    options.fastLane?.remember(req.originalUrl, req.get('accept'), result);
  }

  router.get('/upscale/url/:encoded', signed, async (req, res) => {
    if (!options.resolveUrl) {
      throw new RequestError(404, 'NOT_FOUND', 'Not found', {
        detail: 'origin URLs are off on this server: they need SOURCE_ALLOWED_HOSTS or SIGNING_KEY; register the image with POST /sources instead',
      });
    }
    const hash = await options.resolveUrl(decodeOriginUrl(String(req.params.encoded)));
    await serve(req, res, hash);
  });
  router.get('/upscale/:hash', signed, async (req, res) => serve(req, res, String(req.params.hash)));
}
