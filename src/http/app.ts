/**
 * The HTTP surface: the edge (ids, logs, caps, security headers), one module per route family,
 * the wrong-method and not-found answers, and the one error handler. Every decision about images,
 * keys or engines is the pipeline's.
 */
import express, { type Express } from 'express';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { ParseOptions } from '../params/index.js';
import type { Pipeline } from '../pipeline/index.js';
import type { MissLimiter } from '../security/index.js';
import type { SourceInfo, SourceStore } from '../sources/index.js';
import type { Drain } from './drain.js';
import type { FastLane } from './fast-lane.js';
import { lengthCaps, otherMethods, requestEdge } from './edge.js';
import { errorHandler, RequestError } from './errors.js';
import { readinessRoute, type ReadinessCheck } from './health.js';
import type { Jobs } from '../jobs/index.js';
import { mountGatewayRoutes, type GatewayOptions } from './gateway.js';
import { mountJobRoutes } from './jobs.js';
import { mountPlayground, type PlaygroundOptions } from './playground.js';
import { mountSourceRoutes } from './sources.js';
import { mountUpscaleRoutes } from './upscale.js';

export interface AppOptions {
  pipeline: Pipeline;
  sources: SourceStore;
  logger: Logger;
  /** The per-request line's logger; `logger` when absent. */
  accessLog?: Logger;
  limits: { sourceMaxBytes: number; maxUrlLength: number; maxQueryLength: number; maxHeaderBytes: number };
  /** When set, `POST /sources` requires `Authorization: Bearer <token>`. */
  adminToken?: string;
  /** When set, upscale URLs need a valid `sig`. */
  signingKeys?: readonly string[];
  /** Presets and `ONLY_PRESETS`. */
  parse?: ParseOptions;
  /** Fetches an origin URL into the source store (SSRF-guarded). */
  registerUrl: (url: string) => Promise<{ info: SourceInfo; created: boolean }>;
  /** Whether `GET /upscale/url/…` is on (an allow-list or signing). */
  urlRoute: boolean;
  missLimiter?: MissLimiter;
  /** Express `trust proxy`: whose X-Forwarded-For names the client. */
  trustProxy?: boolean | number | string[];
  readiness?: ReadinessCheck[];
  metrics?: Metrics;
  /** The playground page at `GET /`; absent: off. */
  playground?: PlaygroundOptions;
  /** The Segmind-compatible gateway (`/v1`, `/v2`); absent: off. */
  gateway?: Omit<GatewayOptions, 'jobs' | 'sources' | 'registerUrl' | 'logger' | 'missLimiter' | 'publicBaseUrl'>;
  /** The jobs API; absent: no /jobs routes. */
  jobs?: { service: Jobs; maxBatch: number; publicBaseUrl?: string };
  /** Shutdown: answers in flight and after it close their connection. */
  drain?: Drain;
  /** Hot hits answered before Express (fed by the upscale routes). */
  fastLane?: FastLane;
}

export function createApp(options: AppOptions): Express {
  const { pipeline, sources, logger, metrics, limits } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', options.trustProxy ?? false);

  app.use(requestEdge({ accessLog: options.accessLog ?? logger, ...(metrics ? { metrics } : {}), ...(options.drain ? { drain: options.drain } : {}) }));
  app.use(lengthCaps(limits));

  app.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });
  app.get('/readyz', readinessRoute(options.readiness ?? []));
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      const { contentType, body } = await metrics.render();
      res.setHeader('Cache-Control', 'no-store');
      res.type(contentType).send(body);
    });
  }

  mountSourceRoutes(app, {
    sources,
    sourceMaxBytes: limits.sourceMaxBytes,
    registerUrl: options.registerUrl,
    ...(options.adminToken ? { adminToken: options.adminToken } : {}),
  });
  mountUpscaleRoutes(app, {
    pipeline,
    parse: options.parse ?? {},
    ...(options.signingKeys ? { signingKeys: options.signingKeys } : {}),
    ...(options.missLimiter ? { missLimiter: options.missLimiter } : {}),
    ...(metrics ? { metrics } : {}),
    ...(options.urlRoute ? { resolveUrl: async (url: string) => (await options.registerUrl(url)).info.hash } : {}),
    ...(options.fastLane ? { fastLane: options.fastLane } : {}),
  });

  if (options.jobs) {
    mountJobRoutes(app, {
      jobs: options.jobs.service,
      signing: Boolean(options.signingKeys?.length),
      // A batch of JOBS_MAX_BATCH jobs, each with room for long prompts and a few variants.
      maxBodyBytes: options.jobs.maxBatch * 16 * 1024,
      ...(options.adminToken ? { adminToken: options.adminToken } : {}),
      ...(options.jobs.publicBaseUrl ? { publicBaseUrl: options.jobs.publicBaseUrl } : {}),
    });
    app.all('/jobs', otherMethods('POST'));
    app.all('/jobs/:id', otherMethods('GET, HEAD'));
    app.all('/jobs/:id/result', otherMethods('GET, HEAD'));
    if (options.gateway) {
      mountGatewayRoutes(app, {
        ...options.gateway,
        jobs: options.jobs.service,
        sources,
        registerUrl: options.registerUrl,
        logger,
        ...(options.missLimiter ? { missLimiter: options.missLimiter } : {}),
        ...(options.jobs.publicBaseUrl ? { publicBaseUrl: options.jobs.publicBaseUrl } : {}),
      });
    }
  }

  if (options.playground) {
    mountPlayground(app, options.playground);
    app.all('/', otherMethods('GET, HEAD'));
  }

  // Known routes asked with another method: 405 with Allow (OPTIONS: 204 with Allow).
  app.all('/sources', otherMethods('POST'));
  app.all('/sources/:hash', otherMethods('GET, HEAD'));
  app.all('/upscale/url/:encoded', otherMethods('GET, HEAD'));
  app.all('/upscale/:hash', otherMethods('GET, HEAD'));
  for (const path of ['/healthz', '/readyz', ...(metrics ? ['/metrics'] : [])]) app.all(path, otherMethods('GET, HEAD'));

  app.use((req, _res, next) => {
    next(
      new RequestError(404, 'NOT_FOUND', 'Not found', {
        detail: `no route for ${req.method} ${req.path}; see GET /upscale/:hash, POST /sources, GET /sources/:hash, POST /jobs, GET /jobs/:id`,
      }),
    );
  });
  app.use(errorHandler(logger, { sourceMaxBytes: limits.sourceMaxBytes }));
  return app;
}
