/**
 * `POST /sources` (raw bytes, a multipart form with one file, or JSON `{"url": …}`) and
 * `GET/HEAD /sources/:hash`. Every refusal is its own 4xx: an empty body, an unreadable encoding,
 * an oversize or non-image upload, a URL the SSRF guard will not fetch.
 */
import type { IncomingMessage } from 'node:http';
import express, { type RequestHandler, type Router } from 'express';
import { InvalidParamError, parseSourceHash } from '../params/index.js';
import { SourceNotFoundError, type SourceInfo, type SourceStore } from '../sources/index.js';
import { RequestError } from './errors.js';
import { asImage, IMMUTABLE, matchesEtag, sameSecret } from './headers.js';
import { readMultipartFile } from './multipart.js';

export interface SourceRoutesOptions {
  sources: SourceStore;
  sourceMaxBytes: number;
  /** When set, `POST /sources` requires `Authorization: Bearer <token>`. */
  adminToken?: string;
  /** Fetches an origin URL into the store (SSRF-guarded). */
  registerUrl: (url: string) => Promise<{ info: SourceInfo; created: boolean }>;
}

const mediaType = (req: IncomingMessage) => (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
const isJson = (req: IncomingMessage) => mediaType(req) === 'application/json';
const isMultipart = (req: IncomingMessage) => mediaType(req) === 'multipart/form-data';

/** 401 unless `Authorization: Bearer <token>`; a no-op without a token. */
export function requireAdmin(token: string | undefined, what: string): RequestHandler {
  return (req, _res, next) => {
    if (token && !sameSecret(req.get('authorization') ?? '', `Bearer ${token}`)) {
      throw new RequestError(401, 'UNAUTHORIZED', 'Unauthorized', {
        detail: `${what} requires Authorization: Bearer <ADMIN_TOKEN>`,
      });
    }
    next();
  };
}

function urlOf(body: unknown): string {
  const url = (body as { url?: unknown } | null)?.url;
  if (typeof url !== 'string' || url === '') {
    throw new InvalidParamError({
      param: 'url',
      allowed: 'an absolute http(s) URL',
      detail: 'a JSON body registers an image by URL: send {"url": "https://…"}; to upload bytes use Content-Type: image/*',
    });
  }
  return url;
}

export function mountSourceRoutes(router: Router, options: SourceRoutesOptions): void {
  const { sources, sourceMaxBytes } = options;

  router.post(
    '/sources',
    requireAdmin(options.adminToken, 'POST /sources'),
    express.json({ limit: '16kb', type: isJson }),
    // Any other content type but multipart: curl's --data-binary says form-urlencoded; sharp
    // decides what is an image.
    express.raw({ type: (req) => !isJson(req) && !isMultipart(req), limit: sourceMaxBytes }),
    async (req, res) => {
      let registered: { info: SourceInfo; created: boolean };
      if (isJson(req)) {
        registered = await options.registerUrl(urlOf(req.body));
      } else {
        const body = isMultipart(req)
          ? await readMultipartFile(req, sourceMaxBytes)
          : Buffer.isBuffer(req.body)
            ? req.body
            : Buffer.alloc(0);
        if (body.length === 0) {
          throw new RequestError(415, 'EMPTY_BODY', 'Empty body', {
            allowed: 'image bytes (Content-Type: image/*), a multipart form with one file, or JSON {"url": "…"}',
            detail: 'the request body is empty: send the image bytes, e.g. curl --data-binary @photo.jpg or curl -F file=@photo.jpg',
          });
        }
        registered = await sources.put(body);
      }
      const { info, created } = registered;
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

  router.get('/sources/:hash', async (req, res) => {
    const hash = parseSourceHash(String(req.params.hash));
    const notFound = () => new SourceNotFoundError({ param: 'hash', detail: `no source with hash ${hash}` });
    const info = await sources.head(hash);
    if (!info) throw notFound();
    const etag = `"${hash}"`;
    asImage(res);
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', IMMUTABLE);
    if (matchesEtag(req.get('if-none-match'), etag)) return void res.status(304).end();
    res.setHeader('Content-Type', info.contentType);
    res.setHeader('Content-Length', String(info.bytes));
    // Only a GET owes the bytes; HEAD and 304 are answered from the info alone.
    if (req.method === 'HEAD') return void res.end();
    const image = await sources.get(hash);
    if (!image) {
      // Known, but its bytes were dropped by SOURCE_DISK_MAX_BYTES (upscales already made still serve).
      throw new SourceNotFoundError({ param: 'hash', detail: `the bytes of source ${hash} are no longer stored (SOURCE_DISK_MAX_BYTES); upload it again` });
    }
    res.end(image.data);
  });
}
