/**
 * The contract between the pipeline and an upscaler. Engines know nothing of caching or HTTP:
 * they turn one validated payload into one image, and say what it cost.
 */
import type { ClarityParams } from '../params/types.js';

/** A registered source image (or mask) as read from the source store. */
export interface SourceImage {
  /** sha256 hex of `data`. */
  hash: string;
  data: Buffer;
  width: number;
  height: number;
  /** sharp's format name: `jpeg`, `png`, `webp`, … */
  format: string;
  hasAlpha: boolean;
}

export interface EngineInput {
  /** Identity of the result; engines that journal jobs key them by it. */
  masterKey: string;
  source: SourceImage;
  /** The mask's image when `params.mask` is set. */
  mask?: SourceImage;
  params: ClarityParams;
}

/**
 * Admission to a billable submission, handed to the engine by the pipeline's global limiter.
 * Engines call `acquire()` right before each submission (retries too) and `pauseUntil()` when the
 * upstream says to slow down, which holds back every caller, not only this one.
 */
export interface SubmitGate {
  acquire(signal?: AbortSignal): Promise<void>;
  pauseUntil(epochMs: number): void;
}

export interface EngineContext {
  gate: SubmitGate;
  /** Aborts the job (shutdown, or the upstream timeout). Not a client disconnect: work goes on. */
  signal?: AbortSignal;
}

export interface EngineResult {
  /** The image, encoded losslessly (PNG). */
  data: Buffer;
  width: number;
  height: number;
  /** Engine that made it (`segmind`, `local:esrgan-slim`). */
  engine: string;
  /** True when producing it cost money: a paid master is never evicted from disk. */
  paid: boolean;
  /** Upstream-reported cost (USD) and remaining credits, when known. */
  cost?: number;
  remainingCredits?: number;
  /** ms spent in the engine (inference, or upstream queue + inference). */
  elapsedMs?: number;
  /**
   * Called by the pipeline once the result is durably stored; lets an engine drop its journal
   * entry for the job. Until then a restart must be able to recover the job without paying again.
   */
  onStored?: () => Promise<void>;
}

/** A journaled job: its master key and the request that made it. */
export interface JournaledJob {
  masterKey: string;
  source: string;
  params: ClarityParams;
}

export interface Engine {
  /** `segmind` or `local:<model>`: part of every master key, so engines never share results. */
  readonly id: string;
  /** Canonical field names this engine acts on; the rest are reported in `X-Upscale-Ignored`. */
  readonly honors: ReadonlySet<string>;
  /** Each call costs money (quotes count it; hits of its masters are savings). */
  readonly paid: boolean;
  upscale(input: EngineInput, context: EngineContext): Promise<EngineResult>;
  /**
   * Jobs accepted (and billed) upstream whose results are not stored yet, with what is needed to
   * finish them: engines that journal implement it, so a restart resumes them at once.
   */
  journaled?(): Promise<JournaledJob[]>;
  /** Releases workers, sockets and timers. */
  close(): Promise<void>;
}
