import type { CacheEntry } from '../cache/types.js';
import type { SourceImage } from '../engines/types.js';
import type { SourceInfo } from '../sources/index.js';
import type { UpscaleRequest } from '../params/index.js';
import type { OutputPlan } from '../transform/index.js';
import type { Lane } from './limiter.js';

/** What the pipeline needs of the tiered cache. */
export interface PipelineCache {
  get(key: string): Promise<{ entry: CacheEntry; tier: string } | undefined>;
  has(key: string): Promise<boolean>;
  set(key: string, entry: CacheEntry): Promise<void>;
  delete(key: string): Promise<void>;
}

/** What the pipeline needs of the source store. */
export interface PipelineSources {
  head(hash: string): Promise<SourceInfo | undefined>;
  get(hash: string): Promise<SourceImage | undefined>;
}

export interface UpscaleResult {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
  /** Strong validator: the variant key. */
  etag: string;
  /** The format came from `Accept`. */
  vary: boolean;
  /** `HIT` when no engine ran for this request. */
  cache: 'HIT' | 'MISS';
  /** Where it came from: `memory`, `redis`, `disk`, `disk+transform` (master hit), `engine`. */
  tier: string;
  /** Engine id that made the master. */
  engine: string;
  /** Clarity fields the request set that this engine does not act on. */
  ignored: string[];
  timings: { engineMs?: number; transformMs?: number };
  /** Served by the fallback engine; cacheable for `maxAgeSeconds` only. */
  fallback?: boolean;
  /** A stand-in while the real image is made: never cached, never carries the real ETag. */
  placeholder?: boolean;
  /** A fast low-effort AVIF while the full-effort one is made: no-store, no ETag, like a placeholder. */
  draft?: boolean;
  maxAgeSeconds?: number;
}

/** A request checked against its source, with its output plan and the ETag of a full answer. */
export interface PreparedUpscale {
  request: UpscaleRequest;
  plan: OutputPlan;
  /** The variant key for the primary engine: the strong ETag. */
  etag: string;
  /** The format came from `Accept`. */
  vary: boolean;
  /** Clarity fields set that the primary engine does not act on. */
  ignored: string[];
}

/** Events the pipeline reports as they happen (for metrics); every method is optional. */
export interface PipelineObserver {
  /** A request joined identical work already in flight instead of starting it. */
  joined?(kind: 'variant' | 'master'): void;
  /** Time a master waited for a limiter slot, in seconds, by lane. */
  limiterWait?(seconds: number, lane: Lane): void;
  /** An engine call ended: `OK` or the error code; `cost` as the upstream reported it (USD). */
  engineCall?(call: { engine: string; outcome: string; seconds: number; cost?: number }): void;
}
