/**
 * One `/upscale` request, end to end, without HTTP: keys → variant cache → master cache →
 * single-flight → limiter → engine → durable store → transform → variant store.
 *
 * Two single-flights: on the variant key (N identical requests make one encode) and on the master
 * key (N requests for different formats of one payload make one engine call). Neither is tied to
 * a request's lifetime: a client that gives up (or times out) leaves the work running, and its
 * result lands in the cache for the next request.
 */
import type { Logger } from 'pino';
import type { CacheEntry } from '../cache/types.js';
import { CdnError } from '../errors.js';
import type { Engine, EngineResult, SourceImage } from '../engines/types.js';
import { PARAMS, masterKey, variantKey, type UpscaleRequest } from '../params/index.js';
import { SourceNotFoundError, type SourceInfo } from '../sources/index.js';
import { decodes, planOutput, renderVariant, variantSpec, type OutputPlan } from '../transform/index.js';
import { OutputTooLargeError, RememberedRejectionError, UpscaleTimeoutError } from './errors.js';
import type { Limiter } from './limiter.js';
import { SingleFlight } from '../single-flight.js';
import type { PipelineCache, PipelineSources, PreparedUpscale, UpscaleResult } from './types.js';

export interface PipelineOptions {
  engine: Engine;
  limiter: Limiter;
  cache: PipelineCache;
  sources: PipelineSources;
  logger: Logger;
  /** Longest one call waits before `UpscaleTimeoutError` (the work goes on). */
  requestTimeoutMs: number;
  /** How long an upstream rejection is remembered. */
  failedTtlSeconds: number;
  /** Largest master, in pixels. */
  outputMaxPixels: number;
  avifEffort: number;
  /**
   * Served when the primary engine is out of credits, refused, or down past its retries: the
   * result is cached for `ttlSeconds` only, so the real one replaces it once the upstream is back.
   */
  fallback?: { engine: Engine; limiter: Limiter; ttlSeconds: number; when: (error: unknown) => boolean };
  now?: () => number;
}

interface MasterOutcome {
  entry: CacheEntry;
  /** The tier that had it, or `engine` when it was made now. */
  tier: string;
  engineMs?: number;
}

const MS = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** Errors that are a property of the payload, not of the moment: paying again gives the same. */
const isRejection = (error: unknown) => error instanceof CdnError && error.status === 422;

export function createPipeline(options: PipelineOptions) {
  const { engine, limiter, cache, sources, logger } = options;
  const now = options.now ?? Date.now;
  const masters = new SingleFlight<MasterOutcome>();
  const variants = new SingleFlight<UpscaleResult>();
  /** Engine calls made, by engine id: what a paid engine bills. */
  const engineCalls: Record<string, number> = {};

  async function loadSource(hash: string, param: string): Promise<SourceImage> {
    const image = await sources.get(hash);
    if (!image) throw sourceNotFound(hash, param);
    return image;
  }

  /** The master: from cache, or made once by the engine under the limiter and stored durably. */
  function getMaster(key: string, request: UpscaleRequest, eng: Engine, lim: Limiter): Promise<MasterOutcome> {
    return masters.run(key, async () => {
      const cached = await cache.get(`master:${key}`);
      if (cached) return { entry: cached.entry, tier: cached.tier };
      const failure = await cache.get(`failure:${key}`);
      if (failure) {
        throw new RememberedRejectionError({
          detail: String(failure.entry.meta.attrs?.detail ?? 'the upstream rejected this payload'),
        });
      }
      const source = await loadSource(request.source, 'hash');
      const mask = request.clarity.mask ? await loadSource(request.clarity.mask, 'mask') : undefined;
      const started = process.hrtime.bigint();
      let result: EngineResult;
      try {
        result = await lim.run((gate) => {
          engineCalls[eng.id] = (engineCalls[eng.id] ?? 0) + 1;
          return eng.upscale({ masterKey: key, source, params: request.clarity, ...(mask ? { mask } : {}) }, { gate });
        });
      } catch (error) {
        if (isRejection(error) && options.failedTtlSeconds > 0) {
          await cache
            .set(`failure:${key}`, {
              data: Buffer.alloc(0),
              meta: {
                kind: 'failure',
                contentType: 'application/octet-stream',
                expiresAt: now() + options.failedTtlSeconds * 1000,
                attrs: { detail: (error as CdnError).detail },
              },
            })
            .catch((e: unknown) => logger.warn({ err: e }, 'could not remember an upstream rejection'));
        }
        throw error;
      }
      const entry: CacheEntry = {
        data: result.data,
        meta: {
          kind: 'master',
          contentType: 'image/png',
          width: result.width,
          height: result.height,
          paid: result.paid,
          attrs: { engine: result.engine },
        },
      };
      // Durable first: a paid master is on disk before anyone is told it exists.
      await cache.set(`master:${key}`, entry);
      await result.onStored?.().catch((e: unknown) => logger.warn({ err: e }, 'engine could not settle a stored job'));
      logger.info(
        { masterKey: key, engine: result.engine, ms: Math.round(MS(started)), cost: result.cost, width: result.width, height: result.height },
        'master stored',
      );
      return { entry, tier: 'engine', engineMs: MS(started) };
    }).promise;
  }

  async function produce(
    request: UpscaleRequest,
    plan: OutputPlan,
    eng: Engine,
    lim: Limiter,
    ttlSeconds?: number,
  ): Promise<UpscaleResult> {
    const mKey = masterKey(request.source, eng.id, request.clarity);
    const vKey = variantKey(mKey, variantSpec(plan));
    const ignored = request.given.filter((name) => isClarity(name) && !eng.honors.has(name));
    const base = { etag: vKey, vary: plan.vary, engine: eng.id, ignored };
    const { promise } = variants.run(vKey, async () => {
      const hit = await cache.get(`variant:${vKey}`);
      if (hit) {
        return { ...base, ...fromEntry(hit.entry), cache: 'HIT', tier: hit.tier, timings: {} } satisfies UpscaleResult;
      }
      const master = await getMaster(mKey, request, eng, lim);
      const started = process.hrtime.bigint();
      let rendered;
      try {
        rendered = await renderVariant(master.entry.data, plan, { avifEffort: options.avifEffort });
      } catch (error) {
        // A master that does not decode is not worth keeping: the next request makes it again.
        // One that decodes stays, whatever the encoder said: it may have been paid for.
        if (!(await decodes(master.entry.data))) {
          logger.error({ masterKey: mKey }, 'cached master does not decode: dropped');
          await cache.delete(`master:${mKey}`);
        }
        throw error;
      }
      const transformMs = MS(started);
      const entry: CacheEntry = {
        data: rendered.data,
        meta: {
          kind: 'variant',
          contentType: rendered.contentType,
          width: rendered.width,
          height: rendered.height,
          attrs: { engine: String(master.entry.meta.attrs?.engine ?? eng.id) },
          ...(ttlSeconds !== undefined ? { expiresAt: now() + ttlSeconds * 1000 } : {}),
        },
      };
      // Variants are cheap to redo: storing one must not fail the response. A TTL of 0 (a
      // fallback that must not be cached) stores nothing.
      if (ttlSeconds !== 0) {
        await cache.set(`variant:${vKey}`, entry).catch((e: unknown) => logger.warn({ err: e }, 'could not store a variant'));
      }
      return {
        ...base,
        ...fromEntry(entry),
        cache: master.tier === 'engine' ? 'MISS' : 'HIT',
        tier: master.tier === 'engine' ? 'engine' : `${master.tier}+transform`,
        timings: { ...(master.engineMs !== undefined ? { engineMs: master.engineMs } : {}), transformMs },
      } satisfies UpscaleResult;
    });
    return promise;
  }

  /**
   * Validates the request against its source and resolves the output plan and the ETag a full
   * answer from the primary engine would carry, from keys alone: no cache read, no image work, so a
   * revalidation (`If-None-Match`) is answered here.
   */
  async function prepare(request: UpscaleRequest, accept: string | undefined): Promise<PreparedUpscale> {
    const info = await sources.head(request.source);
    if (!info) throw sourceNotFound(request.source, 'hash');
    checkOutputSize(info, request, options.outputMaxPixels);
    const plan = planOutput(request.output, accept, info.hasAlpha);
    const etag = variantKey(masterKey(request.source, engine.id, request.clarity), variantSpec(plan));
    return { request, plan, etag, vary: plan.vary };
  }

  async function upscale({ request, plan }: PreparedUpscale): Promise<UpscaleResult> {
    const work = produce(request, plan, engine, limiter).catch(async (error: unknown) => {
      const fb = options.fallback;
      if (!fb || !fb.when(error)) throw error;
      logger.warn({ err: error, engine: fb.engine.id }, 'primary engine unavailable: serving the fallback engine');
      const result = await produce(request, plan, fb.engine, fb.limiter, fb.ttlSeconds);
      return { ...result, fallback: true, maxAgeSeconds: fb.ttlSeconds };
    });
    return deadline(work, options.requestTimeoutMs);
  }

  return {
    prepare,
    upscale,
    engine,
    stats: () => ({
      limiter: limiter.stats(),
      mastersInFlight: masters.size,
      variantsInFlight: variants.size,
      engineCalls: { ...engineCalls },
    }),
    async close() {
      await engine.close();
      await options.fallback?.engine.close();
    },
  };
}

export type Pipeline = ReturnType<typeof createPipeline>;

function sourceNotFound(hash: string, param: string): SourceNotFoundError {
  return new SourceNotFoundError({ param, detail: `no source with ${param} ${hash}; upload it with POST /sources` });
}

function fromEntry(entry: CacheEntry) {
  return {
    data: entry.data,
    contentType: entry.meta.contentType,
    width: entry.meta.width ?? 0,
    height: entry.meta.height ?? 0,
  };
}

const CLARITY_FIELDS = new Set(Object.entries(PARAMS).filter(([, spec]) => spec.group === 'clarity').map(([name]) => name));
const isClarity = (name: string) => CLARITY_FIELDS.has(name);

/** The master is source × scale² (after the optional downscaling); refuse what would not fit. */
function checkOutputSize(info: SourceInfo, request: UpscaleRequest, maxPixels: number) {
  const { scale_factor: scale, downscaling, downscaling_resolution: edge } = request.clarity;
  const shrink = downscaling ? Math.min(1, edge / Math.max(info.width, info.height)) : 1;
  const pixels = Math.round(info.width * shrink * scale) * Math.round(info.height * shrink * scale);
  if (pixels > maxPixels) {
    throw new OutputTooLargeError({
      param: 'scale_factor',
      allowed: `a scale that keeps the result within ${maxPixels} pixels (OUTPUT_MAX_PIXELS)`,
      detail: `a ${info.width}×${info.height} source at scale ${scale} would be ${pixels} pixels; the limit is ${maxPixels}. Lower scale_factor or set downscaling=true`,
    });
  }
}

/** Waits at most `ms`; the work itself is not cancelled. */
function deadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const retryAfterSeconds = Math.max(1, Math.ceil(ms / 4000));
      reject(
        new UpscaleTimeoutError({
          detail: `the upscale is still running after ${ms} ms; it will be cached when done: retry in ${retryAfterSeconds} s`,
          retryAfterSeconds,
        }),
      );
    }, ms);
  });
  // The request may have given up: the work must not become an unhandled rejection.
  work.catch(() => undefined);
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
