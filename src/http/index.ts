export { createApp, type AppOptions } from './app.js';
export { answerClientError } from './client-error.js';
export type { ReadinessCheck } from './health.js';
