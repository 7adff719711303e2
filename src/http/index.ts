export { createApp, type AppOptions } from './app.js';
export { answerClientError } from './client-error.js';
export { createDrain, type Drain } from './drain.js';
export type { ReadinessCheck } from './health.js';
export { createFastLane, type FastLane } from './fast-lane.js';
