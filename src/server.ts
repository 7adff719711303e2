/**
 * Composition root: builds every part from the validated config and passes it in. The only place
 * that knows which implementation stands behind each interface.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { LookupFunction } from 'node:net';
import { once } from 'node:events';
import sharp from 'sharp';
import { resolveEngine, type Config } from './config.js';
import { CdnError } from './errors.js';
import { createAccessLogger, createLogger, type Logger } from './logger.js';
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
import { answerClientError, createApp, createDrain, createFastLane, type FastLane, type ReadinessCheck } from './http/index.js';
import { loadPresetsFile } from './params/index.js';
import { createLimiter, createPipeline, type Limiter } from './pipeline/index.js';
import { createFileDailyCounter } from './pipeline/daily-counter.js';
import { createTierJournal } from './pipeline/tier-journal.js';
import { createRedisDailyCounter } from './pipeline/daily-counter.js';
import { createPassThroughLimiter, type PipelineOptions } from './pipeline/index.js';
import { createBullQueue } from './queue/bullmq.js';
import { createBullWorker, type BullWorker } from './queue/worker.js';
import { Redis } from 'ioredis';
import { createGuardedAgent, createMissLimiter } from './security/index.js';
import { createOriginFetcher, createOriginSources, createSourceStore, type SourceInfo, type SourceStore } from './sources/index.js';
import { createJobs, createWebhookSender, openJobStore, type Jobs } from './jobs/index.js';
import { createMetrics } from './metrics.js';

export interface BuiltServer {
  /**
   * The request listener: the fast lane for hot hits, Express for everything else. What tests
   * hand to supertest and what `listen` serves.
   */
  app: RequestListener;
  pipeline: ReturnType<typeof createPipeline>;
  /** The jobs API without HTTP (the CLI's in-process mode). */
  jobs: Jobs;
  /** The source store (the CLI registers files through it in-process). */
  sources: SourceStore;
  /** Hot hits answered before Express. */
  fastLane: FastLane;
  logger: Logger;
  config: Config;
  /** Starts listening on `PORT`/`HOST` (or the given port); resolves with the bound port. */
  listen(port?: number): Promise<{ server: Server; port: number }>;
  /**
   * Stops accepting, lets requests in flight finish for up to `graceMs` (default
   * `SHUTDOWN_GRACE_MS`), then closes the remaining connections, the engines and the tiers.
   * Upstream jobs stay journaled and resume after a restart.
   */
  close(graceMs?: number): Promise<void>;
}

export interface BuildOptions {
  logger?: Logger;
  /** Name resolution for origin fetches (tests map names to loopback); `dns.lookup` by default. */
  sourceLookup?: LookupFunction;
}

/** Journaled jobs' sources, read at most every few seconds: eviction asks once per candidate. */
function journaledSources(list: () => Promise<{ sources?: string[] }[]>): (hash: string) => Promise<boolean> {
  let snapshot: { at: number; hashes: Promise<Set<string>> } | undefined;
  return async (hash) => {
    if (!snapshot || Date.now() - snapshot.at > 5000) {
      const hashes = list().then((entries) => new Set(entries.flatMap((e) => e.sources ?? [])));
      snapshot = { at: Date.now(), hashes };
    }
    return (await snapshot.hashes).has(hash);
  };
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

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
  const presets = config.PRESETS_FILE ? await loadPresetsFile(config.PRESETS_FILE) : undefined;
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
  const engineName = resolveEngine(config);
  const diskJournal = createDiskJournal(join(config.CACHE_DIR, 'journal'));
  const sources = createSourceStore({
    dir: config.CACHE_DIR,
    maxBytes: config.SOURCE_MAX_BYTES,
    maxPixels: config.SOURCE_MAX_PIXELS,
    diskMaxBytes: config.SOURCE_DISK_MAX_BYTES,
    isPinned: journaledSources(() => diskJournal.list()),
    ...(redis ? { shared: redis } : {}),
    logger,
  });

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
          journal: createCompositeJournal([diskJournal, ...(redis ? [createTierJournal(redis)] : [])]),
          logger,
        })
      : localEngine(config, logger);

  // With the paid engine, the embedded one stands by: for UPSTREAM_FALLBACK=local and for
  // placeholder=local. Its workers start only if it is used.
  const embedded =
    engineName === 'segmind'
      ? { engine: localEngine(config, logger), limiter: createLimiter({ concurrency: config.LOCAL_WORKERS, perMinute: 100_000 }) }
      : undefined;
  const fallback =
    embedded && config.UPSTREAM_FALLBACK === 'local'
      ? {
          ...embedded,
          ttlSeconds: config.FALLBACK_TTL_SECONDS,
          when: (error: unknown) => error instanceof UpstreamAuthError || error instanceof UpstreamUnavailableError,
        }
      : undefined;

  const metrics = createMetrics({
    pipelineStats: () => pipeline.stats(),
    fastLaneStats: () => fastLane.stats(),
    disk,
    sources,
    ...(config.UPSTREAM_PRICE_USD !== undefined ? { pricePerCallUsd: config.UPSTREAM_PRICE_USD } : {}),
  });
  const common = {
    observer: metrics.observer,
    engine,
    cache,
    sources,
    logger,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    failedTtlSeconds: config.FAILED_TTL_SECONDS,
    outputMaxPixels: config.OUTPUT_MAX_PIXELS,
    avifEffort: config.AVIF_EFFORT,
    avifDraftEffort: config.AVIF_DRAFT_EFFORT,
  };
  // Cluster mode: masters are made through one BullMQ queue for every instance (its budget, its
  // priorities, its stalled-job recovery); this instance waits for them, and may also work.
  const cluster = config.CLUSTER_MODE === 'bullmq' ? buildCluster(config, common, logger) : undefined;
  const pipeline = createPipeline({
    ...common,
    limiter,
    ...(fallback ? { fallback } : {}),
    ...(cluster ? { queue: cluster.queue } : {}),
    placeholder: { kind: config.PLACEHOLDER, afterMs: config.PLACEHOLDER_AFTER_MS, ...(embedded ? { local: embedded } : {}) },
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
  if (cluster) {
    readiness.push({
      name: 'queue',
      critical: false,
      async check() {
        const stats = await cluster.queue.stats();
        return { ok: stats.workers > 0, detail: `${stats.workers} workers, ${stats.waiting} waiting, ${stats.active} active` };
      },
    });
  }
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

  // Origin fetches connect only to public addresses (unless SOURCE_ALLOW_PRIVATE), checked on the
  // address actually connected to, on every redirect hop.
  const originAgent = createGuardedAgent({
    allowPrivate: config.SOURCE_ALLOW_PRIVATE,
    ...(options.sourceLookup ? { lookup: options.sourceLookup } : {}),
  });
  const originSources = createOriginSources({
    fetcher: createOriginFetcher({
      dispatcher: originAgent,
      ...(config.SOURCE_ALLOWED_HOSTS ? { allowedHosts: config.SOURCE_ALLOWED_HOSTS } : {}),
      maxBytes: config.SOURCE_MAX_BYTES,
      timeoutMs: config.SOURCE_FETCH_TIMEOUT_MS,
    }),
    store: sources,
    ttlSeconds: config.SOURCE_URL_TTL_SECONDS,
    logger,
  });
  async function registerUrl(url: string): Promise<{ info: SourceInfo; created: boolean }> {
    try {
      const resolved = await originSources.resolve(url);
      metrics.sourceFetch(resolved.cached ? 'cached' : 'fetched');
      return resolved;
    } catch (error) {
      metrics.sourceFetch(error instanceof CdnError ? error.code : 'ERROR');
      throw error;
    }
  }

  const webhooks = createWebhookSender({
    dispatcher: originAgent,
    ...(config.SIGNING_KEY ? { signingKey: config.SIGNING_KEY[0] as string } : {}),
    logger,
  });
  const jobStore = await openJobStore({ dir: join(config.CACHE_DIR, 'jobs'), retentionMs: config.JOBS_RETENTION_SECONDS * 1000, logger });
  const jobs = createJobs({
    pipeline,
    store: jobStore,
    sources,
    registerUrl,
    parse: { ...(presets ? { presets } : {}), onlyPresets: config.ONLY_PRESETS },
    ...(config.SIGNING_KEY ? { signingKey: config.SIGNING_KEY[0] as string } : {}),
    webhooks,
    ...(config.UPSTREAM_PRICE_USD !== undefined ? { pricePerCallUsd: config.UPSTREAM_PRICE_USD } : {}),
    maxBatch: config.JOBS_MAX_BATCH,
    logger,
  });
  // Paid work left unfinished by the last process resumes now, not on the next request for it.
  await jobStore.prune();
  const resumed = { journal: await pipeline.resume(), jobs: jobs.resumeAll() };
  if (resumed.journal + resumed.jobs > 0) logger.info(resumed, 'resuming unfinished work');
  const pruning = setInterval(() => void jobStore.prune().catch((error: unknown) => logger.warn({ err: error }, 'job pruning failed')), 3_600_000);
  pruning.unref();

  const drain = createDrain();
  // A quarter of the memory tier's budget: mostly the same buffers, kept for the hottest URLs.
  const accessLog = createAccessLogger(logger);
  const fastLane = createFastLane({
    maxBytes: Math.floor(config.CACHE_MEMORY_MAX_BYTES / 4),
    maxHeaderBytes: config.MAX_HEADER_BYTES,
    accessLog,
    metrics,
    drain,
  });
  const express = createApp({
    pipeline,
    sources,
    logger,
    accessLog,
    limits: {
      sourceMaxBytes: config.SOURCE_MAX_BYTES,
      maxUrlLength: config.MAX_URL_LENGTH,
      maxQueryLength: config.MAX_QUERY_LENGTH,
      maxHeaderBytes: config.MAX_HEADER_BYTES,
    },
    ...(config.ADMIN_TOKEN ? { adminToken: config.ADMIN_TOKEN } : {}),
    ...(config.SIGNING_KEY ? { signingKeys: config.SIGNING_KEY } : {}),
    parse: { ...(presets ? { presets } : {}), onlyPresets: config.ONLY_PRESETS },
    registerUrl,
    urlRoute: Boolean(config.SOURCE_ALLOWED_HOSTS || config.SIGNING_KEY),
    ...(config.CLIENT_MISS_RPM ? { missLimiter: createMissLimiter({ perMinute: config.CLIENT_MISS_RPM }) } : {}),
    trustProxy: config.TRUST_PROXY,
    readiness,
    metrics,
    drain,
    fastLane,
    jobs: { service: jobs, maxBatch: config.JOBS_MAX_BATCH, ...(config.PUBLIC_BASE_URL ? { publicBaseUrl: config.PUBLIC_BASE_URL } : {}) },
    ...(config.PLAYGROUND
      ? {
          playground: {
            engine,
            presets: [...(presets?.keys() ?? [])],
            onlyPresets: config.ONLY_PRESETS,
            ...(config.ADMIN_TOKEN ? { adminToken: config.ADMIN_TOKEN } : {}),
            signing: Boolean(config.SIGNING_KEY),
            urlRoute: Boolean(config.SOURCE_ALLOWED_HOSTS || config.SIGNING_KEY),
            recentSources: (limit: number) => sources.recent(limit),
            sourceInfo: (hash: string) => sources.head(hash),
          },
        }
      : {}),
    ...(config.GATEWAY_API_KEYS || config.GATEWAY_OPEN
      ? {
          gateway: {
            keys: config.GATEWAY_API_KEYS ?? [],
            open: config.GATEWAY_OPEN,
            // An image and a mask in base64 (4/3 of the bytes), and the other fields.
            maxBodyBytes: Math.ceil((config.SOURCE_MAX_BYTES * 8) / 3) + 64 * 1024,
            requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
          },
        }
      : {}),
  });

  const app: RequestListener = (req, res) => {
    if (!fastLane.handle(req, res)) express(req, res);
  };

  let server: Server | undefined;
  let closing: Promise<void> | undefined;
  return {
    app,
    pipeline,
    jobs,
    sources,
    fastLane,
    logger,
    config,
    async listen(port = config.PORT) {
      // The request line's method and version, and its CRLF, on top of the two caps.
      const maxHeadBytes = config.MAX_URL_LENGTH + config.MAX_HEADER_BYTES + 32;
      const listening = createServer(
        {
          // Node's own cap on the whole head sits just above ours (URL + headers), so the app,
          // which can tell them apart, answers 414 or 431 first.
          maxHeaderSize: maxHeadBytes,
          headersTimeout: config.HTTP_HEADERS_TIMEOUT_MS,
          requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
          // How often those two timeouts are checked; Node's 30 s default would let a slow client
          // hold a socket well past a short headers timeout.
          connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(config.HTTP_HEADERS_TIMEOUT_MS / 4))),
        },
        app,
      );
      listening.on('clientError', (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket) =>
        answerClientError(error, socket, { maxHeadBytes, maxUrlLength: config.MAX_URL_LENGTH }),
      );
      listening.listen(port, config.HOST);
      try {
        await once(listening, 'listening');
      } catch (error) {
        throw listenError(error as NodeJS.ErrnoException, port, config.HOST);
      }
      server = listening;
      // Said when serving starts, not when a CLI command builds the parts in-process.
      if (engineName === 'segmind' && !config.SIGNING_KEY) {
        logger.warn(
          'SIGNING_KEY is not set while the paid segmind engine is on: anyone who knows a source hash can start paid upscales. Set SIGNING_KEY, or at least UPSTREAM_DAILY_LIMIT and CLIENT_MISS_RPM (README: Running in production)',
        );
      }
      if (!config.ADMIN_TOKEN && !LOOPBACK_HOSTS.has(config.HOST)) {
        logger.warn(
          { host: config.HOST },
          'ADMIN_TOKEN is not set and HOST is not loopback: anyone who reaches this server can upload sources (POST /sources). Set ADMIN_TOKEN',
        );
      }
      const bound = (listening.address() as { port: number }).port;
      logger.info({ port: bound, host: config.HOST, engine: engine.id, redis: Boolean(redis) }, 'clarity-cdn listening');
      return { server: listening, port: bound };
    },
    close(graceMs = config.SHUTDOWN_GRACE_MS) {
      closing ??= (async () => {
        drain.start();
        if (server) {
          const closed = once(server, 'close');
          // Stops accepting and closes idle keep-alive sockets; busy ones close after their answer.
          server.close();
          server.closeIdleConnections();
          let timer: NodeJS.Timeout | undefined;
          const grace = new Promise<void>((resolve) => {
            timer = setTimeout(resolve, graceMs);
          });
          await Promise.race([closed, grace]);
          clearTimeout(timer);
          server.closeAllConnections();
          await closed;
        }
        clearInterval(pruning);
        await webhooks.close();
        await cluster?.close();
        await pipeline.close();
        await originAgent.close();
        await sources.close();
        await Promise.all(tiers.map((t) => t.close?.()));
      })();
      return closing;
    },
  };
}

/** A listen failure an operator can act on: one line naming the variable. */
function listenError(error: NodeJS.ErrnoException, port: number, host: string): Error {
  if (error.code === 'EADDRINUSE') {
    return new StartupError(`port ${port} on ${host} is already in use (PORT=${port}): stop the other process or choose another PORT`);
  }
  if (error.code === 'EACCES') {
    return new StartupError(`port ${port} on ${host} needs privileges this process lacks (PORT=${port}): choose a port above 1023`);
  }
  if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') {
    return new StartupError(`cannot listen on ${host} (HOST=${host}): no such local address`);
  }
  return error;
}

/** A start-up failure whose message is the whole story (no stack trace). */
export class StartupError extends Error {
  override name = 'StartupError';
}

/**
 * The queue every instance shares, and (unless `CLUSTER_WORKER=false`) a worker: its own pipeline
 * runs the engine directly, since BullMQ is the limiter (slots, rate, lanes, 429 pauses), and
 * spends the cluster's daily budget, counted in Redis.
 */
function buildCluster(config: Config, common: Omit<PipelineOptions, 'limiter'>, logger: Logger) {
  const redisUrl = config.REDIS_URL as string;
  const queue = createBullQueue({
    redisUrl,
    prefix: config.REDIS_PREFIX,
    isStored: (masterKey) => common.cache.has(`master:${masterKey}`),
    logger,
  });
  let worker: BullWorker | undefined;
  let counter: Redis | undefined;
  if (config.CLUSTER_WORKER) {
    counter = new Redis(redisUrl, { maxRetriesPerRequest: 2, lazyConnect: false });
    counter.on('error', (error: Error) => logger.warn({ err: error }, 'cluster daily counter: redis error'));
    const daily =
      resolveEngine(config) === 'segmind' && config.UPSTREAM_DAILY_LIMIT !== undefined
        ? { limit: config.UPSTREAM_DAILY_LIMIT, counter: createRedisDailyCounter(counter, config.REDIS_PREFIX) }
        : undefined;
    const working = createPipeline({
      ...common,
      limiter: createPassThroughLimiter({ ...(daily ? { daily } : {}), pause: (ms) => worker?.pause(ms) }),
    });
    worker = createBullWorker({
      redisUrl,
      prefix: config.REDIS_PREFIX,
      concurrency: config.UPSTREAM_CONCURRENCY,
      perMinute: config.UPSTREAM_RPM,
      make: async (job) => {
        await working.master({ source: job.source, clarity: job.params, output: { format: 'auto', fit: 'inside' }, given: [] }, job.lane);
      },
      logger,
    });
  }
  return {
    queue,
    async close() {
      await worker?.close();
      await queue.close();
      counter?.disconnect();
    },
  };
}
