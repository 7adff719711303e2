/**
 * Per-client rate of cold misses (`CLIENT_MISS_RPM`): how many requests one client address may
 * make per minute that start an engine run. Hits, joins of work in flight and conversions of a
 * cached master are never counted: a busy page of cached images costs nothing, while one client
 * cannot queue a thousand distinct paid payloads. rate-limiter-flexible keeps the counters (one
 * fixed 60 s window per address, expired entries dropped by its own unref'd timers) and can move
 * them to Redis when a cluster shares one budget.
 */
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { ClientMissLimitError } from './errors.js';

export interface MissLimiter {
  /** Counts one miss for `client`; throws `ClientMissLimitError` past the limit. */
  admit(client: string): Promise<void>;
}

export function createMissLimiter(options: { perMinute: number }): MissLimiter {
  const limiter = new RateLimiterMemory({ points: options.perMinute, duration: 60, keyPrefix: 'miss' });
  return {
    async admit(client) {
      try {
        await limiter.consume(client);
      } catch (refusal) {
        if (!(refusal instanceof RateLimiterRes)) throw refusal;
        const retryAfterSeconds = Math.max(1, Math.ceil(refusal.msBeforeNext / 1000));
        throw new ClientMissLimitError({
          param: 'CLIENT_MISS_RPM',
          allowed: `at most ${options.perMinute} uncached requests per minute per client; cached images are not limited`,
          detail: `this client started ${options.perMinute} upscales in the last minute (CLIENT_MISS_RPM); cached images are still served: retry in ${retryAfterSeconds} s`,
          retryAfterSeconds,
        });
      }
    },
  };
}
