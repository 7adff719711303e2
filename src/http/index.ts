export { createApp, type AppOptions } from './app.js';
export type { ReadinessCheck } from './health.js';
