/**
 * The fast lane: hot `/upscale` hits and their 304s answered before Express, at close to the cost
 * of a bare `node:http` server (bench/RESULTS.md). Express and its router cost about seven bare
 * answers per hit; an image CDN origin lives on hits.
 *
 * It answers only what the full path has already validated and served: an entry is remembered
 * when Express answers a cacheable 200 for a URL, keyed by that URL exactly as sent (so its
 * signature was verified for exactly these bytes) and, when the format was negotiated, by the
 * exact `Accept` header too. Entries are immutable (variant keys are content addresses), so
 * nothing invalidates them; placeholders, fallbacks and expiring answers are never remembered.
 * Everything it cannot prove (another method, an unseen URL or Accept, oversize headers) goes to
 * Express unchanged. Headers, logs and metrics are the full path's.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logger.js';
import type { MetricsRecorder } from '../metrics.js';
import type { UpscaleResult } from '../pipeline/index.js';
import type { Drain } from './drain.js';
import { CLIENT_REQUEST_ID } from './edge.js';
import { IMMUTABLE, matchesEtag } from './headers.js';

export interface FastLaneOptions {
  /** Bytes of answers kept (an LRU); they are the same buffers the memory tier holds. */
  maxBytes: number;
  /** `MAX_HEADER_BYTES`: larger requests go to Express, which refuses them. */
  maxHeaderBytes: number;
  /** The per-request line, as the full path writes it (`createAccessLogger`). */
  accessLog: Logger;
  metrics?: MetricsRecorder;
  drain?: Drain;
}

interface Answer {
  etag: string;
  engine: string;
  body: Buffer;
  /** Every header of the 200 but the per-request ones (X-Request-Id, Connection). */
  headers: OutgoingHttpHeaders;
  /** The 304's headers. */
  notModified: OutgoingHttpHeaders;
}

/** A URL whose answer depends on `Accept`: look again with it. */
const BY_ACCEPT = Symbol('by accept');
type Entry = Answer | typeof BY_ACCEPT;

const ROUTE = '/upscale/:hash';
const ENTRY_OVERHEAD_BYTES = 1024;

/** The security headers every image answer carries (headers.ts, without the CSP). */
const IMAGE_SECURITY = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'cross-origin',
} as const;

export interface FastLane {
  /** Answers the request and returns true, or returns false and leaves it to Express. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Called by the full path after a 200 it may remember: the URL as sent, and its `Accept`. */
  remember(url: string, accept: string | undefined, result: UpscaleResult): void;
  /** Answers remembered, and requests answered here (200s and 304s). */
  stats(): { entries: number; answered: number };
}

export function createFastLane(options: FastLaneOptions): FastLane {
  const { accessLog, metrics } = options;
  const memo = new LRUCache<string, Entry>({
    maxSize: Math.max(1, options.maxBytes),
    sizeCalculation: (entry) => (entry === BY_ACCEPT ? 64 : entry.body.length + ENTRY_OVERHEAD_BYTES),
  });

  const keyOf = (url: string, accept: string | undefined) => `${url}\n${accept ?? ''}`;
  let answered = 0;

  function lookup(req: IncomingMessage): Answer | undefined {
    const url = req.url as string;
    const entry = memo.get(url);
    if (entry === BY_ACCEPT) {
      const negotiated = memo.get(keyOf(url, req.headers.accept));
      return negotiated === BY_ACCEPT ? undefined : negotiated;
    }
    return entry;
  }

  function headerBytes(req: IncomingMessage): number {
    let total = 0;
    for (const part of req.rawHeaders) total += part.length + 2;
    return total;
  }

  return {
    stats: () => ({ entries: memo.size, answered }),

    handle(req, res) {
      if ((req.method !== 'GET' && req.method !== 'HEAD') || !req.url?.startsWith('/upscale/')) return false;
      const answer = lookup(req);
      if (!answer || headerBytes(req) > options.maxHeaderBytes) return false;
      const started = process.hrtime.bigint();
      const sent = req.headers['x-request-id'];
      const requestId = typeof sent === 'string' && CLIENT_REQUEST_ID.test(sent) ? sent : randomUUID();
      const revalidated = matchesEtag(req.headers['if-none-match'], answer.etag);
      const status = revalidated ? 304 : 200;
      res.writeHead(status, {
        ...(revalidated ? answer.notModified : answer.headers),
        'x-request-id': requestId,
        ...(options.drain?.draining ? { connection: 'close' } : {}),
      });
      res.end(revalidated || req.method === 'HEAD' ? undefined : answer.body);
      answered += 1;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (revalidated) metrics?.revalidated();
      else metrics?.served({ cache: 'HIT', tier: 'memory', engine: answer.engine });
      metrics?.request(ROUTE, req.method, status, seconds);
      accessLog.info(
        {
          reqId: requestId,
          method: req.method,
          url: (req.url as string).split('?')[0],
          status,
          cache: revalidated ? 'HIT; revalidated' : 'HIT; tier=memory',
          ms: Math.round(seconds * 1e4) / 10,
        },
        'request completed',
      );
      return true;
    },

    remember(url, accept, result) {
      // Only the immutable, final answers of the primary path.
      if (result.placeholder || result.draft || result.fallback || result.maxAgeSeconds !== undefined) return;
      const etag = `"${result.etag}"`;
      const shared: OutgoingHttpHeaders = {
        ...IMAGE_SECURITY,
        etag,
        'cache-control': IMMUTABLE,
        ...(result.vary ? { vary: 'Accept' } : {}),
      };
      const answer: Answer = {
        etag,
        engine: result.engine,
        body: result.data,
        headers: {
          ...shared,
          'content-type': result.contentType,
          'content-length': String(result.data.length),
          'x-upscale-status': 'final',
          'x-cache': 'HIT; tier=memory',
          'x-upscale-engine': result.engine,
          ...(result.ignored.length > 0 ? { 'x-upscale-ignored': result.ignored.join(', ') } : {}),
          'server-timing': 'cache;desc="memory"',
        },
        notModified: { ...shared, 'x-cache': 'HIT; revalidated' },
      };
      if (result.vary) {
        memo.set(url, BY_ACCEPT);
        memo.set(keyOf(url, accept), answer);
      } else {
        memo.set(url, answer);
      }
    },
  };
}
