/**
 * A circuit breaker for a dependency that is an accelerator, not a necessity (the Redis tier).
 * After `failureThreshold` consecutive failures it opens: callers skip the dependency at once
 * instead of each paying a timeout. After `cooldownMs` one call is let through (half-open); success
 * closes the breaker, failure reopens it for twice as long, up to `maxCooldownMs`.
 *
 * Pure state over an injected clock: no timers, so nothing to clean up and nothing to fake in tests.
 */

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. Default 3. */
  failureThreshold?: number;
  /** First open period, ms; doubled after each failed probe. Default 5000. */
  cooldownMs?: number;
  /** Longest open period, ms. Default 60000. */
  maxCooldownMs?: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreaker {
  /** Whether a call may go through now; in half-open, true for exactly one caller (the probe). */
  allow(): boolean;
  success(): void;
  failure(): void;
  /** Closes the breaker now (the dependency told us it is back, e.g. a reconnect). */
  reset(): void;
  state(): BreakerState;
}

export interface BreakerHooks {
  /** The breaker opened (or reopened after a failed probe) for `cooldownMs`. */
  onOpen?(info: { cooldownMs: number; failures: number }): void;
  /** The breaker closed after having been open. */
  onClose?(): void;
}

export const BREAKER_DEFAULTS = { failureThreshold: 3, cooldownMs: 5000, maxCooldownMs: 60_000 } as const;

export function createCircuitBreaker(
  options: BreakerOptions = {},
  clock: () => number = Date.now,
  hooks: BreakerHooks = {},
): CircuitBreaker {
  const failureThreshold = options.failureThreshold ?? BREAKER_DEFAULTS.failureThreshold;
  const baseCooldownMs = options.cooldownMs ?? BREAKER_DEFAULTS.cooldownMs;
  const maxCooldownMs = Math.max(options.maxCooldownMs ?? BREAKER_DEFAULTS.maxCooldownMs, baseCooldownMs);
  if (!Number.isInteger(failureThreshold) || failureThreshold < 1) {
    throw new TypeError(`breaker failureThreshold: expected an integer of at least 1, got ${failureThreshold}`);
  }

  let state: BreakerState = 'closed';
  let failures = 0;
  let cooldownMs = baseCooldownMs;
  let openedAt = 0;

  function open(): void {
    state = 'open';
    openedAt = clock();
    hooks.onOpen?.({ cooldownMs, failures });
  }

  function close(): void {
    const wasOpen = state !== 'closed';
    state = 'closed';
    failures = 0;
    cooldownMs = baseCooldownMs;
    if (wasOpen) hooks.onClose?.();
  }

  return {
    allow() {
      if (state === 'closed') return true;
      if (state === 'half-open') return false;
      if (clock() - openedAt < cooldownMs) return false;
      state = 'half-open';
      return true;
    },
    success() {
      // A late success of a call made before the breaker opened says little about now: only the
      // probe (half-open) may close it.
      if (state === 'open') return;
      close();
    },
    failure() {
      if (state === 'open') return;
      failures += 1;
      if (state === 'half-open') {
        cooldownMs = Math.min(cooldownMs * 2, maxCooldownMs);
        open();
      } else if (failures >= failureThreshold) {
        open();
      }
    },
    reset: close,
    state: () => state,
  };
}
