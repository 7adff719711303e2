export { createSegmindEngine, type SegmindEngineOptions } from './engine.js';
export {
  mapUpstreamResponse,
  sanitizeReason,
  UpstreamAuthError,
  UpstreamError,
  UpstreamInvalidRequestError,
  UpstreamRejectedError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
  type UpstreamAuthReason,
  type UpstreamPhase,
  type UpstreamVerdict,
} from './errors.js';
export { createCompositeJournal, createDiskJournal, type JobJournal, type JournalEntry } from './journal.js';
export { buildPayload, type ImageDelivery, type SegmindPayload } from './payload.js';
export { DEFAULT_RETRY_POLICY, parseResetAt, parseRetryAfter, retryDelay, type RetryPolicy } from './retry.js';
