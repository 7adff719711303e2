/**
 * The jobs API without HTTP: submit work (one item or a batch), quote it (`dry_run`), read its
 * status, wait for it, fetch its result. The same work is one job: its id is the master key, so a
 * second submission, from anyone, joins the first (and the pipeline's single-flight and cache make
 * it one upstream call). A job runs its master in its lane, then renders the variants it asked
 * for, then tells its webhooks once.
 */
import type { CacheEntry } from '../cache/types.js';
import { CdnError } from '../errors.js';
import type { Logger } from '../logger.js';
import { InvalidParamError, parseUpscaleRequest, type ParseOptions, type UpscaleRequest } from '../params/index.js';
import type { Pipeline } from '../pipeline/index.js';
import { SourceNotFoundError, type SourceInfo } from '../sources/index.js';
import { JobNotFoundError, JobNotReadyError } from './errors.js';
import { parseJobItem, type JobItem } from './spec.js';
import type { JobStore } from './store.js';
import type { JobQuote, JobRecord, JobView, VariantFields } from './types.js';
import { jobView } from './view.js';
import type { WebhookDelivery, WebhookSender } from './webhook.js';

export interface JobsOptions {
  pipeline: Pipeline;
  store: JobStore;
  sources: { head(hash: string): Promise<SourceInfo | undefined> };
  /** Fetches an origin URL into the source store (SSRF-guarded). */
  registerUrl: (url: string) => Promise<{ info: SourceInfo }>;
  parse: ParseOptions;
  /** First key of `SIGNING_KEY`: variant URLs are signed with it. */
  signingKey?: string;
  webhooks?: WebhookSender;
  /** `UPSTREAM_PRICE_USD`, for quotes. */
  pricePerCallUsd?: number;
  /** `JOBS_MAX_BATCH`. */
  maxBatch: number;
  logger: Logger;
  now?: () => number;
}

/** What one submission may do beyond joining work: `admitNew` is asked before it starts new engine work. */
export interface SubmitOptions {
  admitNew?: () => Promise<void>;
}

/** One item of a batch: its job, or the problem that item alone had. */
export type BatchItem = { index: number; status: number; job: JobView } | { index: number; status: number; problem: CdnError };


export function createJobs(options: JobsOptions) {
  const { pipeline, store, logger } = options;
  const now = options.now ?? Date.now;
  /** Jobs being worked on in this process, by id. */
  const running = new Map<string, Promise<void>>();
  /** Where each job's absolute URLs point (the submitter's view of this server). */
  const bases = new Map<string, string>();
  const waiters = new Map<string, (() => void)[]>();
  /** Deliveries under way (`<id> <url>`): a job is told once, however often it settles. */
  const delivering = new Set<string>();

  /** The request a record stands for, rebuilt as its URL would be parsed. */
  function requestOf(record: Pick<JobRecord, 'source' | 'params' | 'preset'>, fields: VariantFields = {}): UpscaleRequest {
    const query = new URLSearchParams();
    if (record.preset !== undefined) query.append('preset', record.preset);
    for (const [key, value] of Object.entries({ ...record.params, ...fields })) query.append(key, String(value));
    return parseUpscaleRequest(record.source, query, options.parse);
  }

  function statusOf(record: JobRecord): Pick<JobView, 'status' | 'queue'> {
    if (record.state !== 'ACTIVE') return { status: record.state };
    const state = pipeline.masterState(record.id);
    if (state?.state === 'queued' && state.position !== undefined) {
      const { concurrency } = pipeline.stats().limiter;
      const estimate = Math.ceil(Math.ceil(state.position / concurrency) * pipeline.meanEngineSeconds());
      return { status: 'QUEUED', queue: { position: state.position, lane: record.lane, estimated_wait_seconds: estimate } };
    }
    return { status: state?.state === 'running' || running.has(record.id) ? 'PROCESSING' : 'QUEUED' };
  }

  function view(record: JobRecord, base = bases.get(record.id) ?? ''): JobView {
    return jobView(record, { base, ...(options.signingKey ? { signingKey: options.signingKey } : {}), live: statusOf(record) });
  }

  async function save(record: JobRecord): Promise<void> {
    record.updatedAt = now();
    await store.put(record);
  }

  /** Tells every webhook not told yet; each delivery's state is saved on the job as it goes. */
  function notify(record: JobRecord): void {
    const sender = options.webhooks;
    if (!sender) return;
    record.webhooks.forEach((delivery, i) => {
      const key = `${record.id} ${delivery.url}`;
      if (delivery.status !== 'pending' || delivering.has(key)) return;
      delivering.add(key);
      void sender
        .send(delivery.url, view(record), async (update: WebhookDelivery) => {
          record.webhooks[i] = update;
          await save(record).catch((error: unknown) => logger.warn({ err: error, id: record.id }, 'could not save a webhook delivery'));
        })
        .finally(() => delivering.delete(key));
    });
  }

  function settle(record: JobRecord): void {
    for (const wake of waiters.get(record.id)?.splice(0) ?? []) wake();
    notify(record);
  }

  /** Makes the master in the job's lane, then its variants; records the outcome. */
  function run(record: JobRecord): Promise<void> {
    const existing = running.get(record.id);
    if (existing) return existing;
    const work = (async () => {
      try {
        const master = await pipeline.master(requestOf(record), record.lane);
        const attrs = master.entry.meta.attrs ?? {};
        record.metrics =
          master.tier === 'engine'
            ? { inference_time: Number(attrs.seconds ?? 0), cost: typeof attrs.cost === 'number' ? attrs.cost : null, cached: false }
            : { inference_time: 0, cost: 0, cached: true };
        for (const fields of record.variants) {
          const request = requestOf(record, fields);
          // `format=auto` depends on each browser's Accept: nothing to make ahead of it.
          if (request.output.format === 'auto') continue;
          await pipeline.upscale(await pipeline.prepare(request, undefined), { lane: record.lane });
        }
        record.state = 'COMPLETED';
        record.completedAt = now();
        delete record.error;
      } catch (error) {
        const known = error instanceof CdnError ? error : undefined;
        record.state = 'FAILED';
        record.completedAt = now();
        record.error = known
          ? { code: known.code, status: known.status, detail: known.detail }
          : { code: 'INTERNAL', status: 500, detail: 'the job failed unexpectedly; the log has the cause' };
        if (!known) logger.error({ err: error, id: record.id }, 'job failed unexpectedly');
      }
      await save(record).catch((error: unknown) => logger.error({ err: error, id: record.id }, 'could not save a finished job'));
      logger.info({ id: record.id, state: record.state, code: record.error?.code }, 'job finished');
      settle(record);
    })().finally(() => running.delete(record.id));
    running.set(record.id, work);
    return work;
  }

  /** The source hash of an item: as given, or fetched from its origin URL. */
  async function sourceOf(item: JobItem): Promise<string> {
    if (typeof item.source !== 'string') return (await options.registerUrl(item.source.url)).info.hash;
    if (!(await options.sources.head(item.source))) {
      throw new SourceNotFoundError({ param: 'source', detail: `no source with hash ${item.source}; upload it with POST /sources` });
    }
    return item.source;
  }

  /** One item: validated, its source known, joined to its job (created or restarted as needed). */
  async function submitOne(raw: unknown, base: string, submitOptions: SubmitOptions = {}): Promise<{ view: JobView; status: number }> {
    const item = parseJobItem(raw, options.parse);
    const source = await sourceOf(item);
    const request = requestOf({ source, params: item.params, ...(item.preset !== undefined ? { preset: item.preset } : {}) });
    const id = pipeline.masterKeyOf(request);
    // Checked before anything is kept: the output of a job must fit, as for /upscale.
    await pipeline.prepare(request, undefined);
    bases.set(id, base);
    const at = now();
    let record = store.get(id);
    let restart = false;
    if (!record) {
      record = {
        id,
        engine: pipeline.engine.id,
        source,
        params: item.params,
        ...(item.preset !== undefined ? { preset: item.preset } : {}),
        variants: [],
        webhooks: [],
        lane: item.lane,
        state: 'ACTIVE',
        createdAt: at,
        updatedAt: at,
      };
      restart = true;
    } else if (record.state === 'FAILED' && record.error?.status !== 422) {
      // A failure of the moment (the upstream down, a timeout) is worth another try; a rejection
      // of the payload is remembered by the pipeline and would only fail again.
      record.state = 'ACTIVE';
      delete record.error;
      restart = true;
    }
    for (const fields of item.variants) {
      const known = record.variants.some((v) => JSON.stringify(v) === JSON.stringify(fields));
      if (!known) {
        record.variants.push(fields);
        // A new variant of a finished job is a conversion of its stored master.
        if (record.state === 'COMPLETED') restart = true;
      }
    }
    if (item.lane === 'jobs' && record.lane === 'warm') record.lane = 'jobs';
    if (item.webhook && !record.webhooks.some((w) => w.url === item.webhook)) {
      record.webhooks.push({ url: item.webhook, status: 'pending', attempts: 0 });
    }
    if (restart && submitOptions.admitNew) {
      // A client's miss rate counts work that will reach the engine, not joins or cached masters.
      const quote = await pipeline.quote(request);
      if (!quote.cached && !quote.inFlight && !quote.rejected) await submitOptions.admitNew();
    }
    if (restart) record.state = 'ACTIVE';
    await save(record);
    if (record.state === 'ACTIVE') void run(record);
    else notify(record);
    return { view: view(record), status: record.state === 'COMPLETED' ? 200 : 202 };
  }

  return {
    /** One job (a CdnError for a bad one). */
    submit: submitOne,

    /** A batch: each item answered on its own; only the batch's size can refuse it whole. */
    async submitMany(raws: unknown[], base: string): Promise<BatchItem[]> {
      checkBatch(raws.length, options.maxBatch);
      return Promise.all(
        raws.map(async (raw, index): Promise<BatchItem> => {
          try {
            const { view: job, status } = await submitOne(raw, base);
            return { index, status, job };
          } catch (error) {
            if (!(error instanceof CdnError)) throw error;
            return { index, status: error.status, problem: error };
          }
        }),
      );
    },

    /**
     * What submitting would cost, with no work: per item, whether its master is cached, the
     * engine, and the upstream calls (duplicates in the batch count once) at the configured price.
     */
    async quote(raws: unknown[]): Promise<{ items: (({ index: number; status: number } & JobQuote) | Extract<BatchItem, { problem: CdnError }>)[]; total: { upstream_calls: number; cost_usd: number | null } }> {
      checkBatch(raws.length, options.maxBatch);
      const price = options.pricePerCallUsd;
      const seen = new Map<string, number>();
      const items = [];
      for (const [index, raw] of raws.entries()) {
        try {
          const item = parseJobItem(raw, options.parse);
          if (typeof item.source !== 'string') {
            // Its hash is known only once its bytes are: counted as new work, nothing fetched.
            const calls = pipeline.engine.paid ? 1 : 0;
            items.push({ index, status: 200, id: '', cached: false, engine: pipeline.engine.id, upstream_calls: calls, cost_usd: price === undefined ? null : calls * price, note: 'an origin URL is not fetched in a dry run: counted as not cached' });
            continue;
          }
          const source = await sourceOf(item);
          const request = requestOf({ source, params: item.params, ...(item.preset !== undefined ? { preset: item.preset } : {}) });
          await pipeline.prepare(request, undefined);
          const q = await pipeline.quote(request);
          const first = seen.get(q.masterKey);
          if (first === undefined) seen.set(q.masterKey, index);
          const note = first !== undefined ? undefined : q.rejected ? 'the upstream rejected this payload recently: it would fail without a call' : q.inFlight ? 'already being made' : undefined;
          const calls = first !== undefined || q.cached || q.rejected || q.inFlight || !q.paid ? 0 : 1;
          items.push({
            index,
            status: 200,
            id: q.masterKey,
            cached: q.cached,
            engine: q.engine,
            upstream_calls: calls,
            cost_usd: price === undefined ? null : calls * price,
            ...(first !== undefined ? { duplicate_of: first } : {}),
            ...(note ? { note } : {}),
          });
        } catch (error) {
          if (!(error instanceof CdnError)) throw error;
          items.push({ index, status: error.status, problem: error });
        }
      }
      const upstream = items.reduce((sum, i) => sum + ('upstream_calls' in i ? i.upstream_calls : 0), 0);
      return { items, total: { upstream_calls: upstream, cost_usd: price === undefined ? null : upstream * price } };
    },

    /** The job as the API shows it; `base` makes its URLs absolute. */
    get(id: string, base?: string): JobView {
      const record = store.get(id);
      if (!record) throw new JobNotFoundError({ param: 'id', detail: `no job ${id}` });
      return view(record, base ?? bases.get(id) ?? '');
    },

    /** Resolves with the job once it is COMPLETED or FAILED. */
    async wait(id: string, base?: string): Promise<JobView> {
      const record = store.get(id);
      if (!record) throw new JobNotFoundError({ param: 'id', detail: `no job ${id}` });
      if (record.state === 'ACTIVE') {
        await new Promise<void>((resolve) => waiters.set(id, [...(waiters.get(id) ?? []), resolve]));
      }
      return view(record, base ?? bases.get(id) ?? '');
    },

    /** The master of a completed job (from the cache alone when its record has been pruned). */
    async result(id: string): Promise<CacheEntry> {
      const record = store.get(id);
      if (!record) {
        const stored = await pipeline.storedMaster(id);
        if (stored) return stored;
        throw new JobNotFoundError({ param: 'id', detail: `no job ${id}` });
      }
      if (record.state === 'FAILED' && record.error) {
        throw new JobNotReadyError({ detail: `the job failed: ${record.error.detail}` });
      }
      const { status } = statusOf(record);
      if (record.state !== 'COMPLETED') {
        throw new JobNotReadyError({ detail: `the job is ${status}; poll its status_url`, retryAfterSeconds: Math.max(1, Math.ceil(pipeline.meanEngineSeconds() / 3)) });
      }
      return (await pipeline.master(requestOf(record), record.lane)).entry;
    },

    /** One output of a job, made now if need be (a conversion of its master). */
    async render(id: string, fields: VariantFields) {
      const record = store.get(id);
      if (!record) throw new JobNotFoundError({ param: 'id', detail: `no job ${id}` });
      const request = requestOf(record, fields);
      return pipeline.upscale(await pipeline.prepare(request, undefined), { lane: record.lane });
    },

    /** The record itself (the gateway reads its metrics). */
    record: (id: string): JobRecord | undefined => store.get(id),

    /** Whether a master with this id is stored, record or not. */
    stored: (id: string): Promise<boolean> => pipeline.hasMaster(id),

    /** At start: every job that was not finished runs again (journaled upstream work resumes). */
    resumeAll(): number {
      const records = store.all();
      const active = records.filter((r) => r.state === 'ACTIVE');
      for (const record of active) void run(record);
      // Finished jobs whose webhooks a shutdown interrupted are told now.
      for (const record of records) if (record.state !== 'ACTIVE') notify(record);
      return active.length;
    },

    /** Jobs this process is working on (for shutdown and tests). */
    async settled(): Promise<void> {
      while (running.size > 0) await Promise.all(running.values());
    },
  };
}

export type Jobs = ReturnType<typeof createJobs>;

/** An empty batch, or one over `JOBS_MAX_BATCH`: the one refusal of a batch as a whole. */
function checkBatch(length: number, max: number): void {
  if (length > 0 && length <= max) return;
  throw new InvalidParamError({
    param: 'body',
    allowed: `an array of 1 to ${max} jobs (JOBS_MAX_BATCH)`,
    detail: length === 0 ? 'the batch is empty' : `the batch holds ${length} jobs; at most ${max} (JOBS_MAX_BATCH)`,
  });
}
