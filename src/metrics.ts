/**
 * Prometheus exposition with a registry per server instance (tests run several in one process).
 * Events (requests, joins, engine calls, fetches) are counted as they happen through the small
 * recorder below; levels (limiter slots, disk bytes) are read from their owners on scrape.
 *
 * What a cache operator watches: answers by tier (the hit ratio), single-flight joins, engine
 * calls, latency and failures by outcome, what the upstream charged and what hits saved, how long
 * masters wait for the limiter, and origin fetches by outcome.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DiskStats } from './cache/index.js';
import type { Pipeline, PipelineObserver, UpscaleResult } from './pipeline/index.js';

export interface MetricsOptions {
  /** Answers given before Express (read on scrape; set once the fast lane exists). */
  fastLaneStats?: () => { entries: number; answered: number };
  /** Read on scrape; a function so the pipeline can be built after (it takes `observer`). */
  pipelineStats: () => ReturnType<Pipeline['stats']>;
  disk?: { stats(): DiskStats };
  sources?: { stats(): { bytes: number; entries: number; maxBytes?: number } };
  /** Price of one upstream call (USD) for the savings counter; unset: the mean reported cost. */
  pricePerCallUsd?: number;
}

/** What the HTTP layer and the pipeline report. */
export interface MetricsRecorder {
  /** One finished HTTP request. `route` is the matched pattern (`/upscale/:hash`), never the raw path. */
  request(route: string, method: string, status: number, seconds: number): void;
  /** One image answer (GET or HEAD): where it came from. */
  served(result: Pick<UpscaleResult, 'cache' | 'tier' | 'engine'>): void;
  /** A 304 answered from the keys alone. */
  revalidated(): void;
  /** One origin fetch (or mapping lookup) for a URL source: `fetched`, `cached`, `not_modified`, or an error code. */
  sourceFetch(outcome: string): void;
  /** For the pipeline's `observer` option. */
  readonly observer: PipelineObserver;
}

export interface Metrics extends MetricsRecorder {
  readonly registry: Registry;
  render(): Promise<{ contentType: string; body: string }>;
}

/** Engines whose calls cost money: everything but the local one. */
const isPaidEngine = (engine: string) => !engine.startsWith('local');

export function createMetrics(options: MetricsOptions): Metrics {
  const { pipelineStats, disk, sources } = options;
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });

  const requests = new Counter({
    name: 'clarity_http_requests_total',
    help: 'HTTP requests by matched route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers,
  });
  const durations = new Histogram({
    name: 'clarity_http_request_duration_seconds',
    help: 'HTTP request duration by matched route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 30, 120],
    registers,
  });
  const answers = new Counter({
    name: 'clarity_upscale_answers_total',
    help: 'Image answers by cache outcome and tier (memory, redis, disk, <tier>+transform, engine, revalidated)',
    labelNames: ['cache', 'tier'] as const,
    registers,
  });
  const joins = new Counter({
    name: 'clarity_singleflight_joins_total',
    help: 'Requests that joined identical work in flight instead of starting it',
    labelNames: ['kind'] as const,
    registers,
  });
  const engineCalls = new Counter({
    name: 'clarity_engine_calls_total',
    help: 'Finished engine calls by engine and outcome (OK or the error code); each a billable job for a paid engine',
    labelNames: ['engine', 'outcome'] as const,
    registers,
  });
  const engineSeconds = new Histogram({
    name: 'clarity_engine_duration_seconds',
    help: 'Engine call duration (upstream queue and inference, or local inference)',
    labelNames: ['engine', 'outcome'] as const,
    buckets: [0.5, 1, 2, 5, 10, 20, 40, 80, 160, 600],
    registers,
  });
  const cost = new Counter({
    name: 'clarity_upstream_cost_usd_total',
    help: 'What the upstream reported charging (USD)',
    labelNames: ['engine'] as const,
    registers,
  });
  const savedCalls = new Counter({
    name: 'clarity_upstream_saved_calls_total',
    help: 'Answers of a paid engine served from the cache: upstream calls not paid for',
    registers,
  });
  const savedUsd = new Counter({
    name: 'clarity_upstream_saved_usd_total',
    help: 'What cache hits saved (USD): saved calls at UPSTREAM_PRICE_USD, or at the mean reported cost',
    registers,
  });
  const limiterWait = new Histogram({
    name: 'clarity_limiter_wait_seconds',
    help: 'Time a master waited for a limiter slot, by lane (visitor, jobs, warm)',
    labelNames: ['lane'] as const,
    buckets: [0.001, 0.01, 0.1, 1, 5, 20, 60, 300],
    registers,
  });
  const fetches = new Counter({
    name: 'clarity_source_fetches_total',
    help: 'Origin URL sources by outcome: fetched, not_modified, cached (mapping within its TTL), or an error code',
    labelNames: ['outcome'] as const,
    registers,
  });

  gauge('clarity_limiter_active', 'Engine jobs in flight', () => pipelineStats().limiter.active);
  gauge('clarity_fast_lane_entries', 'Hot answers remembered by the fast lane', () => options.fastLaneStats?.().entries ?? 0);
  new Counter({
    name: 'clarity_fast_lane_answers_total',
    help: 'Requests answered by the fast lane, before Express (hot hits and their 304s)',
    registers,
    collect() {
      this.reset();
      this.inc(options.fastLaneStats?.().answered ?? 0);
    },
  });
  gauge('clarity_limiter_pending', 'Engine jobs waiting for a slot', () => pipelineStats().limiter.pending);
  new Gauge({
    name: 'clarity_limiter_lane_pending',
    help: 'Engine jobs waiting for a slot, by lane (visitor before jobs before warm)',
    labelNames: ['lane'] as const,
    registers,
    collect() {
      for (const [lane, waiting] of Object.entries(pipelineStats().limiter.pendingByLane)) this.set({ lane }, waiting);
    },
  });
  gauge('clarity_limiter_window_submissions', 'Submissions in the current 60 s window', () => pipelineStats().limiter.windowCount);
  gauge('clarity_masters_in_flight', 'Distinct masters being made', () => pipelineStats().mastersInFlight);
  if (disk) {
    new Gauge({
      name: 'clarity_disk_bytes',
      help: 'Bytes in the disk tier, by entry kind',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        for (const [kind, { bytes }] of Object.entries(disk.stats().byKind)) {
          // Sources live in the source store, reported below; the tier itself holds none.
          if (kind !== 'source') this.set({ kind }, bytes);
        }
        if (sources) this.set({ kind: 'source' }, sources.stats().bytes);
      },
    });
    gauge('clarity_disk_max_bytes', 'CACHE_DISK_MAX_BYTES', () => disk.stats().maxBytes);
    gauge('clarity_disk_pinned_bytes', 'Disk bytes eviction may never take (paid masters, jobs)', () => disk.stats().pinnedBytes);
  }
  if (sources) {
    gauge('clarity_source_entries', 'Source images with their bytes on disk', () => sources.stats().entries);
    gauge('clarity_source_max_bytes', 'SOURCE_DISK_MAX_BYTES', () => sources.stats().maxBytes ?? 0);
  }

  let reportedUsd = 0;
  let reportedCalls = 0;
  const pricePerCall = () => options.pricePerCallUsd ?? (reportedCalls > 0 ? reportedUsd / reportedCalls : 0);

  return {
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    request(route, method, status, seconds) {
      requests.inc({ route, method, status: String(status) });
      durations.observe({ route }, seconds);
    },
    served(result) {
      answers.inc({ cache: result.cache, tier: result.tier });
      if (result.cache === 'HIT' && isPaidEngine(result.engine)) {
        savedCalls.inc();
        savedUsd.inc(pricePerCall());
      }
    },
    revalidated() {
      answers.inc({ cache: 'HIT', tier: 'revalidated' });
    },
    sourceFetch(outcome) {
      fetches.inc({ outcome });
    },
    observer: {
      joined: (kind) => joins.inc({ kind }),
      limiterWait: (seconds, lane) => limiterWait.observe({ lane }, seconds),
      engineCall(call) {
        engineCalls.inc({ engine: call.engine, outcome: call.outcome });
        engineSeconds.observe({ engine: call.engine, outcome: call.outcome }, call.seconds);
        if (call.cost !== undefined) {
          cost.inc({ engine: call.engine }, call.cost);
          reportedUsd += call.cost;
          reportedCalls += 1;
        }
      },
    },
  };
}
