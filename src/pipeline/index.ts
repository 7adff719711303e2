export { createPipeline, deadline, type Pipeline, type PipelineOptions, type UpscaleOptions } from './pipeline.js';
export { createLimiter, createPassThroughLimiter, utcDay, LANES, type Lane, type Limiter, type LimiterOptions, type DailyCounter } from './limiter.js';
export type { UpscaleResult, PipelineCache, PipelineSources, PreparedUpscale, PipelineObserver } from './types.js';
export * from './errors.js';
