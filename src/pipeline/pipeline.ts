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
import sharp from 'sharp';
import type { CacheEntry } from '../cache/types.js';
import { CdnError } from '../errors.js';
import type { Engine, EngineResult, SourceImage } from '../engines/types.js';
import { PARAMS, masterKey, variantKey, type UpscaleRequest } from '../params/index.js';
import { SourceNotFoundError, type SourceInfo } from '../sources/index.js';
import { decodes, planOutput, renderVariant, variantSpec, type OutputPlan, type RenderedVariant } from '../transform/index.js';
import { MasterUnreadableError, OutputTooLargeError, RememberedRejectionError, UpscaleTimeoutError } from './errors.js';
import type { Lane, Limiter } from './limiter.js';
import type { MasterQueue } from '../queue/types.js';
import { SingleFlight } from '../single-flight.js';
import type { PipelineCache, PipelineObserver, PipelineSources, PreparedUpscale, UpscaleResult } from './types.js';

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
   * A visitor's new AVIF variant is first encoded at this effort and answered as a draft while
   * the `avifEffort` one is made behind it (AVIF at sharp's default effort takes seconds). Equal
   * to `avifEffort` (or absent): no drafts.
   */
  avifDraftEffort?: number;
  /**
   * Served when the primary engine is out of credits, refused, or down past its retries: the
   * result is cached for `ttlSeconds` only, so the real one replaces it once the upstream is back.
   */
  fallback?: { engine: Engine; limiter: Limiter; ttlSeconds: number; when: (error: unknown) => boolean };
  /**
   * Stand-ins for a visitor's cold miss (`PLACEHOLDER`, `PLACEHOLDER_AFTER_MS`); `local` is the
   * embedded engine beside a paid one (absent: the primary is local, and `local` means lanczos).
   */
  placeholder?: { kind: Placeholder; afterMs: number; local?: { engine: Engine; limiter: Limiter } };
  /**
   * Cluster mode: masters are made by whichever worker takes the job (BullMQ), under the
   * cluster's budget; this instance waits, then reads the master from the shared tiers.
   */
  queue?: MasterQueue;
  /** Told about joins, engine calls and limiter waits (metrics). */
  observer?: PipelineObserver;
  now?: () => number;
}

/** What one `upscale` call may do beyond reading the cache. */
export interface UpscaleOptions {
  /**
   * Called right before this request would start new engine work (a master in no cache and in no
   * flight); throwing refuses the request with that error (a client's miss rate). Requests that
   * join work already running, and hits, are never asked.
   */
  admitMiss?: () => void | Promise<void>;
  /** Who is asking, for the limiter's priority: default `visitor`. */
  lane?: Lane;
}

type Placeholder = 'local' | 'lanczos' | 'none';

/**
 * A refusal that belongs to the request that started a flight (its own admission, or a HEAD that
 * may not start work): a joiner of that flight must not inherit it, and starts the work itself.
 */
class OwnRefusal extends Error {}
/** The answer needs an engine run, and this call may not start one. */
class NotCached extends OwnRefusal {}
/** `admitMiss` refused; the cause is what the client is told. */
class NotAdmitted extends OwnRefusal {}

interface ProduceOptions {
  engine: Engine;
  limiter: Limiter;
  /** Variant TTL (the fallback's); 0 stores nothing. */
  ttlSeconds?: number;
  /** False for HEAD: answer from the cache (transform included) or throw `NotCached`. */
  engineAllowed: boolean;
  admitMiss?: UpscaleOptions['admitMiss'];
  lane: Lane;
  /** A slow AVIF encode may be answered with a draft first (visitors' GETs only). */
  drafts?: boolean;
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
  const observer = options.observer ?? {};
  const encoder = { avifEffort: options.avifEffort };
  const now = options.now ?? Date.now;
  const masters = new SingleFlight<MasterOutcome>();
  const variants = new SingleFlight<UpscaleResult>();
  /** Full-effort encodes made behind a draft: one per variant at a time. */
  const finals = new SingleFlight<void>();
  /** Engine calls made, by engine id: what a paid engine bills. */
  const engineCalls: Record<string, number> = {};
  /** Successful primary-engine calls and their total seconds: the basis of wait estimates. */
  const made = { count: 0, seconds: 0 };

  async function loadSource(hash: string, param: string): Promise<SourceImage> {
    const image = await sources.get(hash);
    if (!image) throw sourceNotFound(hash, param);
    return image;
  }

  /** A rendered variant as a cache entry: the engine that made its master, and the fallback's TTL. */
  function variantEntry(rendered: RenderedVariant, masterEntry: CacheEntry, engineId: string, ttlSeconds: number | undefined): CacheEntry {
    return {
      data: rendered.data,
      meta: {
        kind: 'variant',
        contentType: rendered.contentType,
        width: rendered.width,
        height: rendered.height,
        attrs: { engine: String(masterEntry.meta.attrs?.engine ?? engineId) },
        ...(ttlSeconds !== undefined ? { expiresAt: now() + ttlSeconds * 1000 } : {}),
      },
    };
  }

  /**
   * Cluster mode: the job goes to the queue (joining the same master's job from any instance);
   * once a worker has stored the master, it is read from the shared tiers (Redis, the object
   * store). A rejection the worker met is remembered there by the worker.
   */
  async function viaQueue(queue: MasterQueue, key: string, request: UpscaleRequest, lane: Lane): Promise<MasterOutcome> {
    const started = process.hrtime.bigint();
    // The source must be known here too: an unknown one is this instance's 404, not a job.
    if (!(await sources.head(request.source))) throw sourceNotFound(request.source, 'hash');
    await queue.make({ masterKey: key, source: request.source, params: request.clarity, lane });
    const made = await cache.get(`master:${key}`);
    if (!made) {
      throw new MasterUnreadableError({
        detail: 'a worker made this image, but it is not readable from this instance (larger than REDIS_MAX_VALUE_BYTES without MASTER_STORE=s3?)',
        retryAfterSeconds: 5,
      });
    }
    return { entry: made.entry, tier: 'engine', engineMs: MS(started) };
  }

  /** Joins identical work in flight, or starts it; a joiner never inherits the starter's `OwnRefusal`. */
  async function shared<T>(flight: SingleFlight<T>, kind: 'variant' | 'master', key: string, work: () => Promise<T>): Promise<T> {
    for (;;) {
      const { promise, joined } = flight.run(key, work);
      if (joined) observer.joined?.(kind);
      try {
        return await promise;
      } catch (error) {
        if (joined && error instanceof OwnRefusal) continue;
        throw error;
      }
    }
  }

  /** The master: from cache, or made once by the engine under the limiter and stored durably. */
  function getMaster(key: string, request: UpscaleRequest, how: ProduceOptions): Promise<MasterOutcome> {
    const { engine: eng, limiter: lim } = how;
    if (!how.engineAllowed && masters.has(key)) return Promise.reject(new NotCached());
    // Joining work queued in a lower lane lifts it to ours: a visitor never waits behind warming.
    lim.promote(key, how.lane);
    return shared(masters, 'master', key, async () => {
      const cached = await cache.get(`master:${key}`);
      if (cached) return { entry: cached.entry, tier: cached.tier };
      const failure = await cache.get(`failure:${key}`);
      if (failure) {
        throw new RememberedRejectionError({
          detail: String(failure.entry.meta.attrs?.detail ?? 'the upstream rejected this payload'),
        });
      }
      if (!how.engineAllowed) throw new NotCached();
      if (how.admitMiss) {
        try {
          await how.admitMiss();
        } catch (error) {
          throw new NotAdmitted('miss refused', { cause: error });
        }
      }
      if (options.queue && eng === engine) return viaQueue(options.queue, key, request, how.lane);
      const source = await loadSource(request.source, 'hash');
      // Only an engine that acts on the mask needs it (the local engine does not).
      const mask = request.clarity.mask && eng.honors.has('mask') ? await loadSource(request.clarity.mask, 'mask') : undefined;
      const queued = process.hrtime.bigint();
      let started = queued;
      let result: EngineResult;
      try {
        result = await lim.run(
          (gate) => {
            started = process.hrtime.bigint();
            observer.limiterWait?.(MS(queued) / 1000, how.lane);
            engineCalls[eng.id] = (engineCalls[eng.id] ?? 0) + 1;
            return eng.upscale({ masterKey: key, source, params: request.clarity, ...(mask ? { mask } : {}) }, { gate });
          },
          { lane: how.lane, id: key },
        );
      } catch (error) {
        observer.engineCall?.({ engine: eng.id, outcome: error instanceof CdnError ? error.code : 'ERROR', seconds: MS(started) / 1000 });
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
      if (eng === engine) {
        made.count += 1;
        made.seconds += MS(started) / 1000;
      }
      observer.engineCall?.({
        engine: eng.id,
        outcome: 'OK',
        seconds: MS(started) / 1000,
        ...(result.cost !== undefined ? { cost: result.cost } : {}),
      });
      const entry: CacheEntry = {
        data: result.data,
        meta: {
          kind: 'master',
          contentType: 'image/png',
          width: result.width,
          height: result.height,
          paid: result.paid,
          // What making it took and cost, for whoever reports on it later (the gateway's metrics).
          attrs: {
            engine: result.engine,
            seconds: Math.round(MS(started)) / 1000,
            ...(result.cost !== undefined ? { cost: result.cost } : {}),
          },
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
    });
  }

  async function produce(request: UpscaleRequest, plan: OutputPlan, how: ProduceOptions): Promise<UpscaleResult> {
    const { engine: eng, ttlSeconds } = how;
    const mKey = masterKey(request.source, eng.id, request.clarity, eng.honors);
    const vKey = variantKey(mKey, variantSpec(plan, encoder));
    const base = { etag: vKey, vary: plan.vary, engine: eng.id, ignored: ignoredBy(request, eng) };
    // A HEAD does not wait on work it may not start, nor on a GET's: it answers from what is stored.
    if (!how.engineAllowed && variants.has(vKey)) throw new NotCached();
    // A request joining a variant whose master waits in a lower lane lifts it too.
    how.limiter.promote(mKey, how.lane);
    return shared(variants, 'variant', vKey, async () => {
      const hit = await cache.get(`variant:${vKey}`);
      if (hit) {
        return { ...base, ...fromEntry(hit.entry), cache: 'HIT', tier: hit.tier, timings: {} } satisfies UpscaleResult;
      }
      const master = await getMaster(mKey, request, how);
      const started = process.hrtime.bigint();
      const draftEffort = options.avifDraftEffort;
      if (how.drafts && plan.format === 'avif' && draftEffort !== undefined && draftEffort < options.avifEffort) {
        // A fast first answer now, the better one after: the full-effort encode runs behind it,
        // stored under the real key; the draft is no-store and never carries the real ETag.
        const draft = await renderVariant(master.entry.data, plan, { avifEffort: draftEffort });
        void finals
          .run(vKey, async () => {
            const final = await renderVariant(master.entry.data, plan, { avifEffort: options.avifEffort });
            await cache.set(`variant:${vKey}`, variantEntry(final, master.entry, eng.id, ttlSeconds));
            logger.info({ variantKey: vKey, bytes: final.data.length, draftBytes: draft.data.length }, 'full-effort AVIF stored behind its draft');
          })
          .promise.catch((e: unknown) => logger.warn({ err: e, masterKey: mKey }, 'could not make the full-effort AVIF behind a draft'));
        return {
          ...base,
          ...fromEntry(variantEntry(draft, master.entry, eng.id, ttlSeconds)),
          cache: master.tier === 'engine' ? 'MISS' : 'HIT',
          tier: master.tier === 'engine' ? 'engine' : `${master.tier}+transform`,
          timings: { ...(master.engineMs !== undefined ? { engineMs: master.engineMs } : {}), transformMs: MS(started) },
          draft: true,
        } satisfies UpscaleResult;
      }
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
      const entry = variantEntry(rendered, master.entry, eng.id, ttlSeconds);
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
    const etag = variantKey(masterKey(request.source, engine.id, request.clarity, engine.honors), variantSpec(plan, encoder));
    return { request, plan, etag, vary: plan.vary, ignored: ignoredBy(request, engine) };
  }

  /**
   * The full answer: from the cache, or made (once, under the limiter) and stored. A visitor's
   * miss still waiting for an engine after `PLACEHOLDER_AFTER_MS` gets a stand-in instead (see
   * `standIn`); the real work goes on and the next request finds it.
   */
  async function upscale(prepared: PreparedUpscale, upscaleOptions: UpscaleOptions = {}): Promise<UpscaleResult> {
    const { request, plan } = prepared;
    const lane = upscaleOptions.lane ?? 'visitor';
    const primary = { engine, limiter, engineAllowed: true, ...upscaleOptions, lane, drafts: lane === 'visitor' };
    const work = produce(request, plan, primary).catch(async (error: unknown) => {
      if (error instanceof NotAdmitted) throw error.cause;
      const fb = options.fallback;
      if (!fb || !fb.when(error)) throw error;
      logger.warn({ err: error, engine: fb.engine.id }, 'primary engine unavailable: serving the fallback engine');
      const fallback = { engine: fb.engine, limiter: fb.limiter, ttlSeconds: fb.ttlSeconds, engineAllowed: true, lane: primary.lane };
      const result = await produce(request, plan, fallback);
      return { ...result, fallback: true, maxAgeSeconds: fb.ttlSeconds };
    });
    const kind = request.output.placeholder ?? options.placeholder?.kind ?? 'none';
    if (kind === 'none' || primary.lane !== 'visitor' || !options.placeholder) return deadline(work, options.requestTimeoutMs);

    const waited = await settledWithin(work, options.placeholder.afterMs);
    if (waited) return waited.result;
    // Still running, but only an engine run earns a stand-in: a slow conversion is worth the wait.
    if (!masters.has(masterKeyOf(request))) return deadline(work, options.requestTimeoutMs);
    const standing = standIn(kind, prepared).catch((error: unknown) => {
      logger.warn({ err: error }, 'placeholder failed: waiting for the real image');
      return work;
    });
    // Whichever is first: the real image may land while the stand-in is made.
    return deadline(Promise.race([work, standing]), options.requestTimeoutMs);
  }

  /**
   * A stand-in of the requested size and format, never stored under the real key: `lanczos`
   * resizes the source to the master's size; `local` runs the embedded ESRGAN (its own master, an
   * honest local result that a later `local` placeholder reuses).
   */
  async function standIn(kind: Exclude<Placeholder, 'none'>, { request, plan }: PreparedUpscale): Promise<UpscaleResult> {
    const local = options.placeholder?.local;
    if (kind === 'local' && local) {
      const result = await produce(request, plan, { engine: local.engine, limiter: local.limiter, engineAllowed: true, lane: 'visitor' });
      return { ...result, placeholder: true };
    }
    const started = process.hrtime.bigint();
    const source = await loadSource(request.source, 'hash');
    const { scale_factor: scale, downscaling, downscaling_resolution: edge } = request.clarity;
    const shrink = downscaling ? Math.min(1, edge / Math.max(source.width, source.height)) : 1;
    // `rotate()` first: EXIF orientation is applied, as the engines and the output stage do.
    const upsized = await sharp(source.data, { limitInputPixels: false })
      .rotate()
      .resize({ width: Math.round(source.width * shrink * scale), height: Math.round(source.height * shrink * scale), fit: 'fill', kernel: 'lanczos3' })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const rendered = await renderVariant(upsized, plan, { avifEffort: options.avifEffort });
    return {
      ...fromEntry({ data: rendered.data, meta: { kind: 'variant', contentType: rendered.contentType, width: rendered.width, height: rendered.height } }),
      etag: '',
      vary: plan.vary,
      cache: 'MISS',
      tier: 'placeholder',
      engine: 'lanczos',
      ignored: ignoredBy(request, engine),
      timings: { transformMs: MS(started) },
      placeholder: true,
    };
  }

  /**
   * What a HEAD may know without paid work: the answer when the variant or its master is stored
   * (a conversion may run: it costs no upstream call), undefined when only an engine could make it.
   * A remembered upstream rejection is thrown as for a GET.
   */
  async function peek({ request, plan }: PreparedUpscale): Promise<UpscaleResult | undefined> {
    try {
      return await produce(request, plan, { engine, limiter, engineAllowed: false, lane: 'visitor' });
    } catch (error) {
      if (error instanceof NotCached) return undefined;
      throw error;
    }
  }

  /** The primary engine's master key for a request. */
  const masterKeyOf = (request: UpscaleRequest) => masterKey(request.source, engine.id, request.clarity, engine.honors);

  /**
   * The master alone (the jobs API): from the cache, or made once in `lane`. No fallback: a job
   * reports the primary engine's failure in its own words.
   */
  async function master(request: UpscaleRequest, lane: Lane): Promise<{ entry: CacheEntry; tier: string }> {
    const outcome = await getMaster(masterKeyOf(request), request, { engine, limiter, engineAllowed: true, lane });
    return { entry: outcome.entry, tier: outcome.tier };
  }

  /** A stored master by its key alone (a job whose record is gone but whose image is not). */
  async function storedMaster(key: string): Promise<CacheEntry | undefined> {
    return (await cache.get(`master:${key}`))?.entry;
  }

  /** Whether a master is waiting for a limiter slot or being made, and its place in line. */
  function masterState(key: string): { state: 'queued' | 'running'; position?: number } | undefined {
    const clustered = options.queue?.state(key);
    if (clustered) return clustered;
    const state = limiter.state(key);
    if (!state) return masters.has(key) ? { state: 'running' } : undefined;
    const position = limiter.position(key);
    return { state, ...(position !== undefined ? { position } : {}) };
  }

  /**
   * What a request would cost, without any work: whether its master is stored, being made, or a
   * remembered rejection, and the engine that would make it.
   */
  async function quote(request: UpscaleRequest) {
    const key = masterKeyOf(request);
    const [cached, rejected] = await Promise.all([cache.has(`master:${key}`), cache.has(`failure:${key}`)]);
    return { masterKey: key, engine: engine.id, paid: engine.paid, cached, rejected, inFlight: masters.has(key) };
  }

  /** Seconds one engine call takes, as measured so far (a guess before the first). */
  const meanEngineSeconds = () => (made.count > 0 ? made.seconds / made.count : engine.paid ? 18 : 2);

  /**
   * Resumes every job the engine journaled before a restart, now rather than on the next request
   * for it: the upstream finished (or is finishing) work that was paid for. In the jobs lane.
   */
  async function resume(): Promise<number> {
    const pending = (await engine.journaled?.()) ?? [];
    for (const job of pending) {
      const request: UpscaleRequest = {
        source: job.source,
        clarity: job.params,
        output: { format: 'auto', fit: 'inside' },
        given: [],
      };
      getMaster(job.masterKey, request, { engine, limiter, engineAllowed: true, lane: 'jobs' }).then(
        () => logger.info({ masterKey: job.masterKey }, 'journaled job resumed at start'),
        (error: unknown) => logger.warn({ err: error, masterKey: job.masterKey }, 'journaled job could not be resumed'),
      );
    }
    return pending.length;
  }

  return {
    prepare,
    upscale,
    peek,
    master,
    storedMaster,
    hasMaster: (key: string) => cache.has(`master:${key}`),
    masterKeyOf,
    masterState,
    quote,
    meanEngineSeconds,
    resume,
    engine,
    stats: () => ({
      limiter: limiter.stats(),
      mastersInFlight: masters.size,
      variantsInFlight: variants.size,
      engineCalls: { ...engineCalls },
    }),
    async close() {
      await engine.close();
      // The embedded engine may serve both the fallback and placeholders: closed once.
      const spare = new Set([options.fallback?.engine, options.placeholder?.local?.engine].filter((e) => e !== undefined));
      for (const e of spare) await e.close();
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

/** Clarity fields the request set (itself or through a preset) that `eng` does not act on. */
const ignoredBy = (request: UpscaleRequest, eng: Engine) =>
  request.given.filter((name) => CLARITY_FIELDS.has(name) && !eng.honors.has(name));

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

/** The outcome of `work` if it settles within `ms` (a rejection is thrown), else undefined. */
async function settledWithin<T>(work: Promise<T>, ms: number): Promise<{ result: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([work.then((result) => ({ result })), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits at most `ms` (then a 504 `UPSCALE_PENDING` with Retry-After); the work itself is not cancelled. */
export function deadline<T>(work: Promise<T>, ms: number): Promise<T> {
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
