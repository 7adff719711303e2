/**
 * Messages between the engine (main thread) and its inference workers. Pixel buffers are
 * transferred, not copied: a tile crosses the thread boundary once each way.
 */
import type { ModelScale } from './plan.js';

export const MODEL_NAMES = ['esrgan-slim', 'esrgan-medium', 'esrgan-thick'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

/** `workerData` of every inference worker. */
export interface WorkerSetup {
  model: ModelName;
}

/** One tile to upscale: interleaved RGB, 8 bits a channel. */
export interface TileRequest {
  type: 'tile';
  id: number;
  scale: ModelScale;
  width: number;
  height: number;
  rgb: Uint8Array;
}

export type WorkerReply =
  | { type: 'done'; id: number; width: number; height: number; rgb: Uint8Array }
  /** The tile failed but the worker is fine (a model that would not load, a bad input). */
  | { type: 'failed'; id: number; message: string };

/** What the pool hands back for one tile. */
export interface TileResult {
  width: number;
  height: number;
  rgb: Uint8Array;
}
