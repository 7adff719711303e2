/**
 * The one global limiter in front of every engine call: at most `concurrency` jobs in flight
 * (p-limit), at most `perMinute` submissions in any sliding 60 s window, and a pause that a 429
 * from the upstream sets for everyone. Retries of a job are submissions too: the engine calls
 * `gate.acquire()` before each, inside the job's concurrency slot.
 */
import pLimit from 'p-limit';
import type { SubmitGate } from '../engines/types.js';
import { DailyLimitError } from './errors.js';

const WINDOW_MS = 60_000;

export interface LimiterOptions {
  /** Most jobs in flight at once (`UPSTREAM_CONCURRENCY`). */
  concurrency: number;
  /** Most submissions in any 60 s window (`UPSTREAM_RPM`). */
  perMinute: number;
  /** Most submissions per UTC day (`UPSTREAM_DAILY_LIMIT`); undefined: no limit. */
  daily?: { limit: number; counter: DailyCounter };
  now?: () => number;
}

/** Submissions per UTC day, kept where a restart does not reset them. */
export interface DailyCounter {
  /** Adds one to `day` (YYYY-MM-DD) and returns the new count. */
  increment(day: string): Promise<number>;
  get(day: string): Promise<number>;
}

export interface LimiterStats {
  active: number;
  pending: number;
  /** Submissions in the current 60 s window. */
  windowCount: number;
  pausedUntil: number;
}

export interface Limiter extends SubmitGate {
  /** Runs `job` in a concurrency slot; the job calls `gate.acquire()` before each submission. */
  run<T>(job: (gate: SubmitGate) => Promise<T>): Promise<T>;
  stats(): LimiterStats;
}

function abortable(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function utcDay(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

export function createLimiter(options: LimiterOptions): Limiter {
  const now = options.now ?? Date.now;
  const limit = pLimit(options.concurrency);
  const stamps: number[] = [];
  let pausedUntil = 0;
  // Admission is FIFO: each acquire waits for the one before it, so a burst cannot starve anyone.
  let queue: Promise<void> = Promise.resolve();

  const prune = (at: number) => {
    while (stamps.length > 0 && (stamps[0] as number) <= at - WINDOW_MS) stamps.shift();
  };

  async function admit(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const at = now();
      prune(at);
      if (at < pausedUntil) {
        await abortable(pausedUntil - at, signal);
        continue;
      }
      if (stamps.length >= options.perMinute) {
        await abortable((stamps[0] as number) + WINDOW_MS - at, signal);
        continue;
      }
      if (options.daily) {
        const day = utcDay(at);
        if ((await options.daily.counter.get(day)) >= options.daily.limit) {
          const midnight = Date.parse(`${day}T00:00:00Z`) + 86_400_000;
          throw new DailyLimitError({
            detail: `the daily limit of ${options.daily.limit} upstream submissions (UPSTREAM_DAILY_LIMIT) is spent; it resets at 00:00 UTC`,
            retryAfterSeconds: Math.ceil((midnight - at) / 1000),
          });
        }
        await options.daily.counter.increment(day);
      }
      stamps.push(at);
      return;
    }
  }

  const gate: SubmitGate = {
    acquire(signal) {
      const turn = queue.then(() => admit(signal));
      queue = turn.catch(() => undefined);
      return turn;
    },
    pauseUntil(epochMs) {
      pausedUntil = Math.max(pausedUntil, epochMs);
    },
  };

  return {
    ...gate,
    run: (job) => limit(() => job(gate)),
    stats() {
      prune(now());
      return { active: limit.activeCount, pending: limit.pendingCount, windowCount: stamps.length, pausedUntil };
    },
  };
}
