export { createPipeline, type Pipeline, type PipelineOptions } from './pipeline.js';
export { createLimiter, utcDay, type Limiter, type LimiterOptions, type DailyCounter } from './limiter.js';
export type { UpscaleResult, PipelineCache, PipelineSources, PreparedUpscale } from './types.js';
export * from './errors.js';
