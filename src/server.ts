/**
 * Composition root: builds every part from the validated config and passes it in. The only place
 * that knows which implementation stands behind each interface.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { once } from 'node:events';
import sharp from 'sharp';
import { resolveEngine, type Config } from './config.js';
import { createLogger, type Logger } from './logger.js';
import {
  createDiskTier,
  createMemoryTier,
  createRedisTier,
  createTieredCache,
  type CacheTier,
} from './cache/index.js';
import { createLocalEngine } from './engines/local/index.js';
import {
  createCompositeJournal,
  createDiskJournal,
  createSegmindEngine,
  UpstreamAuthError,
  UpstreamUnavailableError,
} from './engines/segmind/index.js';
import type { Engine } from './engines/types.js';
import { createApp, type ReadinessCheck } from './http/index.js';
import { createLimiter, createPipeline, type Limiter } from './pipeline/index.js';
import { createFileDailyCounter } from './pipeline/daily-counter.js';
import { createTierJournal } from './pipeline/tier-journal.js';
import { createSourceStore } from './sources/index.js';
import { createMetrics } from './metrics.js';

export interface BuiltServer {
  app: ReturnType<typeof createApp>;
  pipeline: ReturnType<typeof createPipeline>;
  logger: Logger;
  config: Config;
  /** Starts listening on `PORT`/`HOST` (or the given port); resolves with the bound port. */
  listen(port?: number): Promise<{ server: Server; port: number }>;
  close(): Promise<void>;
}

export interface BuildOptions {
  logger?: Logger;
}

function localEngine(config: Config, logger: Logger): Engine {
  return createLocalEngine({
    model: config.LOCAL_MODEL,
    workers: config.LOCAL_WORKERS,
    tileSize: config.LOCAL_TILE_SIZE,
    tileOverlap: config.LOCAL_TILE_OVERLAP,
    logger,
  });
}

export async function buildServer(config: Config, options: BuildOptions = {}): Promise<BuiltServer> {
  const logger = options.logger ?? createLogger(config.LOG_LEVEL);
  // One image uses one libvips thread by default on glibc; two roughly halves AVIF time (PERFORMANCE.md).
  sharp.concurrency(2);
  await mkdir(config.CACHE_DIR, { recursive: true });

  const redis = config.REDIS_URL
    ? createRedisTier({
        url: config.REDIS_URL,
        prefix: config.REDIS_PREFIX,
        masterTtlSeconds: config.REDIS_MASTER_TTL_SECONDS,
        variantTtlSeconds: config.REDIS_VARIANT_TTL_SECONDS,
        maxValueBytes: config.REDIS_MAX_VALUE_BYTES,
        timeoutMs: config.REDIS_TIMEOUT_MS,
        logger,
      })
    : undefined;
  const disk = createDiskTier({ dir: join(config.CACHE_DIR, 'cache'), maxBytes: config.CACHE_DISK_MAX_BYTES, logger });
  const tiers: CacheTier[] = [createMemoryTier({ maxBytes: config.CACHE_MEMORY_MAX_BYTES }), ...(redis ? [redis] : []), disk];
  const cache = createTieredCache(tiers, logger);
  const sources = createSourceStore({
    dir: config.CACHE_DIR,
    maxBytes: config.SOURCE_MAX_BYTES,
    maxPixels: config.SOURCE_MAX_PIXELS,
    ...(redis ? { shared: redis } : {}),
    logger,
  });

  const engineName = resolveEngine(config);
  const limiter: Limiter = createLimiter({
    concurrency: config.UPSTREAM_CONCURRENCY,
    perMinute: config.UPSTREAM_RPM,
    ...(engineName === 'segmind' && config.UPSTREAM_DAILY_LIMIT !== undefined
      ? { daily: { limit: config.UPSTREAM_DAILY_LIMIT, counter: createFileDailyCounter(join(config.CACHE_DIR, 'usage')) } }
      : {}),
  });
  const engine =
    engineName === 'segmind'
      ? createSegmindEngine({
          apiKey: config.SEGMIND_API_KEY as string,
          baseUrl: config.SEGMIND_BASE_URL,
          mode: config.SEGMIND_MODE,
          pollIntervalMs: config.SEGMIND_POLL_INTERVAL_MS,
          timeoutMs: config.UPSTREAM_TIMEOUT_MS,
          retries: config.UPSTREAM_RETRIES,
          imageDelivery: config.SEGMIND_IMAGE_DELIVERY,
          ...(config.PUBLIC_BASE_URL ? { publicBaseUrl: config.PUBLIC_BASE_URL } : {}),
          // Disk is the durable journal; Redis lets another instance resume a job.
          journal: createCompositeJournal([
            createDiskJournal(join(config.CACHE_DIR, 'journal')),
            ...(redis ? [createTierJournal(redis)] : []),
          ]),
          logger,
        })
      : localEngine(config, logger);

  const fallback =
    engineName === 'segmind' && config.UPSTREAM_FALLBACK === 'local'
      ? {
          engine: localEngine(config, logger),
          limiter: createLimiter({ concurrency: config.LOCAL_WORKERS, perMinute: 100_000 }),
          ttlSeconds: config.FALLBACK_TTL_SECONDS,
          when: (error: unknown) => error instanceof UpstreamAuthError || error instanceof UpstreamUnavailableError,
        }
      : undefined;

  const pipeline = createPipeline({
    engine,
    limiter,
    cache,
    sources,
    logger,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    failedTtlSeconds: config.FAILED_TTL_SECONDS,
    outputMaxPixels: config.OUTPUT_MAX_PIXELS,
    avifEffort: config.AVIF_EFFORT,
    ...(fallback ? { fallback } : {}),
  });

  const readiness: ReadinessCheck[] = [
    {
      name: 'disk',
      critical: true,
      async check() {
        await mkdir(config.CACHE_DIR, { recursive: true });
        return { ok: true };
      },
    },
    { name: 'engine', critical: true, check: async () => ({ ok: true, detail: engine.id }) },
  ];
  if (redis) {
    readiness.push({
      name: 'redis',
      critical: false,
      async check() {
        const status = redis.status();
        return { ok: status.state === 'up', detail: status.state + (status.lastError ? `: ${status.lastError}` : '') };
      },
    });
  }
  const metrics = createMetrics(pipeline, disk);

  const app = createApp({
    pipeline,
    sources,
    logger,
    sourceMaxBytes: config.SOURCE_MAX_BYTES,
    ...(config.ADMIN_TOKEN ? { adminToken: config.ADMIN_TOKEN } : {}),
    readiness,
    metrics: () => metrics.render(),
  });

  let server: Server | undefined;
  return {
    app,
    pipeline,
    logger,
    config,
    async listen(port = config.PORT) {
      server = app.listen(port, config.HOST);
      await once(server, 'listening');
      const bound = (server.address() as { port: number }).port;
      logger.info({ port: bound, host: config.HOST, engine: engine.id, redis: Boolean(redis) }, 'clarity-cdn listening');
      return { server, port: bound };
    },
    async close() {
      if (server) {
        const closing = once(server, 'close');
        server.close();
        server.closeAllConnections();
        await closing;
      }
      await pipeline.close();
      await Promise.all(tiers.map((t) => t.close?.()));
    },
  };
}
