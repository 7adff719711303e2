/**
 * How long to wait before the next attempt of an upstream call. Pure: the clock and the random
 * source are passed in, so every branch is unit tested (test/unit/engines/segmind/retry.test.ts).
 */

export interface RetryPolicy {
  /** Delay before the first retry when the upstream gave no hint, ms. Default 500. */
  baseDelayMs: number;
  /** Each further retry waits this many times longer. Default 2. */
  factor: number;
  /** Ceiling of the computed backoff (not of an upstream's `Retry-After`), ms. Default 30 000. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({ baseDelayMs: 500, factor: 2, maxDelayMs: 30_000 });

/**
 * The wait before retry number `attempt + 1` (`attempt` counts from 0: the first retry).
 *
 * An upstream hint (`retryAfterMs`, from `Retry-After` or `x-rate-limit-reset-at-utc`) is obeyed as
 * given: retrying earlier only earns another 429, and the caller compares it with the job deadline
 * rather than clipping it. Without a hint: exponential backoff with "equal jitter" (half fixed,
 * half random), so concurrent jobs that failed together do not retry in lockstep, yet no retry comes
 * back sooner than half the nominal delay.
 */
export function retryDelay(
  attempt: number,
  retryAfterMs: number | undefined,
  policy: RetryPolicy,
  random: () => number,
): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs)) return Math.max(0, Math.ceil(retryAfterMs));
  const nominal = Math.min(policy.maxDelayMs, policy.baseDelayMs * policy.factor ** Math.max(0, attempt));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(nominal / 2 + (r * nominal) / 2);
}

/**
 * `Retry-After` as the ms to wait from `nowMs`: delay-seconds (`120`, tolerated with a fraction) or
 * an HTTP date. Undefined when absent or unreadable; a date in the past is 0.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const raw = value.trim();
  if (raw === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) return Math.round(Number(raw) * 1000);
  // An HTTP date always names its month; without letters V8 would read `-5` as the year -5.
  if (!/[a-z]{3}/i.test(raw)) return undefined;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * `x-rate-limit-reset-at-utc` as the ms to wait from `nowMs`. Its format is not documented, so every
 * plausible one is read: epoch seconds, epoch ms, or a date string (ISO 8601 or HTTP date; a date
 * without a zone is taken as UTC, as the header's name says).
 */
export function parseResetAt(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const raw = value.trim();
  if (raw === '') return undefined;
  let at: number;
  if (/^\d+(\.\d+)?$/.test(raw)) {
    const n = Number(raw);
    // 1e12 ms is 2001; 1e12 s is the year 33658: a number this large can only be ms.
    at = n >= 1e12 ? n : n * 1000;
  } else {
    const zoned = /(z|[+-]\d\d:?\d\d|gmt|utc)$/i.test(raw) ? raw : /^\d{4}-\d\d-\d\d[t ]\d/i.test(raw) ? `${raw}Z` : raw;
    at = Date.parse(zoned.replace(/ utc$/i, 'Z'));
  }
  return Number.isNaN(at) ? undefined : Math.max(0, Math.round(at - nowMs));
}
