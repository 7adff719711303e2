import { CdnError } from '../errors.js';

/** `UPSTREAM_DAILY_LIMIT` submissions were made today (UTC). */
export class DailyLimitError extends CdnError {
  readonly status = 503;
  readonly code = 'DAILY_LIMIT_REACHED';
  readonly title = 'Daily upstream limit reached';
}

/** The request waited `REQUEST_TIMEOUT_MS`; the work goes on and lands in the cache. */
export class UpscaleTimeoutError extends CdnError {
  readonly status = 504;
  readonly code = 'UPSCALE_PENDING';
  readonly title = 'Upscale still running';
}

/** The upscaled image would exceed `OUTPUT_MAX_PIXELS`. */
export class OutputTooLargeError extends CdnError {
  readonly status = 400;
  readonly code = 'OUTPUT_TOO_LARGE';
  readonly title = 'Requested output too large';
}

/**
 * A payload the upstream refused (FAILED or 400) within `FAILED_TTL_SECONDS`: answered from memory,
 * so the same payload is not paid for again.
 */
export class RememberedRejectionError extends CdnError {
  readonly status = 422;
  readonly code = 'UPSTREAM_REJECTED';
  readonly title = 'Upstream rejected the image';
}

/**
 * Cluster mode: a worker stored the master, but this instance cannot read it back (a master over
 * `REDIS_MAX_VALUE_BYTES` with no object store shared by every instance).
 */
export class MasterUnreadableError extends CdnError {
  readonly status = 503;
  readonly code = 'MASTER_UNREADABLE';
  readonly title = 'Master not readable here';
}
