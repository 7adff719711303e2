/**
 * The one global limiter in front of every engine call: at most `concurrency` jobs in flight, at
 * most `perMinute` submissions in any sliding 60 s window, and a pause that a 429 from the upstream
 * sets for everyone. Retries of a job are submissions too: the engine calls `gate.acquire()`
 * before each, inside the job's concurrency slot.
 *
 * Slots go by lane (p-queue priorities): a visitor's `<img>` miss before `/jobs` work before a
 * warming run, FIFO within a lane. A warm run of thousands of jobs therefore delays a visitor by
 * at most the one slot that frees next. A waiting job can be promoted when a higher lane comes to
 * want the same master (`promote`).
 */
import PQueue from 'p-queue';
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
  /**
   * Takes one submission if fewer than `limit` were made (atomically, where several processes
   * share the count); false when the day is spent. Without it: `get`, then `increment`.
   */
  take?(day: string, limit: number): Promise<boolean>;
}

/** Spends one of today's submissions, or throws `DailyLimitError` until UTC midnight. */
async function spendDaily(daily: { limit: number; counter: DailyCounter }, at: number): Promise<void> {
  const day = utcDay(at);
  const taken = daily.counter.take
    ? await daily.counter.take(day, daily.limit)
    : (await daily.counter.get(day)) < daily.limit && (await daily.counter.increment(day), true);
  if (taken) return;
  const midnight = Date.parse(`${day}T00:00:00Z`) + 86_400_000;
  throw new DailyLimitError({
    detail: `the daily limit of ${daily.limit} upstream submissions (UPSTREAM_DAILY_LIMIT) is spent; it resets at 00:00 UTC`,
    retryAfterSeconds: Math.ceil((midnight - at) / 1000),
  });
}

/** Who is waiting: `visitor` (an `<img>` request), `jobs` (the jobs API), `warm` (cache warming). */
export type Lane = 'visitor' | 'jobs' | 'warm';
export const LANES: readonly Lane[] = ['visitor', 'jobs', 'warm'];
const PRIORITY: Record<Lane, number> = { visitor: 2, jobs: 1, warm: 0 };

export interface LimiterStats {
  /** Slots (`UPSTREAM_CONCURRENCY`). */
  concurrency: number;
  active: number;
  pending: number;
  /** Jobs waiting for a slot, by lane. */
  pendingByLane: Record<Lane, number>;
  /** Submissions in the current 60 s window. */
  windowCount: number;
  pausedUntil: number;
}

export interface RunOptions {
  /** Default `visitor`. */
  lane?: Lane;
  /** Names the job for `promote`, `state` and `position` (the master key). */
  id?: string;
}

export interface Limiter extends SubmitGate {
  /** Runs `job` in a concurrency slot; the job calls `gate.acquire()` before each submission. */
  run<T>(job: (gate: SubmitGate) => Promise<T>, options?: RunOptions): Promise<T>;
  /** Moves a waiting job up to `lane` (never down); nothing when it is not waiting. */
  promote(id: string, lane: Lane): void;
  /** `queued` (waiting for a slot), `running`, or undefined (unknown here). */
  state(id: string): 'queued' | 'running' | undefined;
  /** 1-based place in line among the waiting jobs (higher lanes first), or undefined. */
  position(id: string): number | undefined;
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
  const slots = new PQueue({ concurrency: options.concurrency });
  /** Named jobs, in order of arrival: what `position` counts. */
  const named = new Map<string, { lane: Lane; seq: number; running: boolean }>();
  let seq = 0;
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
      if (options.daily) await spendDaily(options.daily, at);
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

  const waiting = (lane: Lane) => slots.sizeBy({ priority: PRIORITY[lane] });

  return {
    ...gate,
    async run(job, runOptions = {}) {
      const lane = runOptions.lane ?? 'visitor';
      const id = runOptions.id;
      if (id !== undefined) named.set(id, { lane, seq: seq++, running: false });
      try {
        return (await slots.add(
          () => {
            if (id !== undefined) {
              const entry = named.get(id);
              if (entry) entry.running = true;
            }
            return job(gate);
          },
          { priority: PRIORITY[lane], ...(id !== undefined ? { id } : {}) },
        )) as Awaited<ReturnType<typeof job>>;
      } finally {
        if (id !== undefined) named.delete(id);
      }
    },
    promote(id, lane) {
      const entry = named.get(id);
      if (!entry || entry.running || PRIORITY[lane] <= PRIORITY[entry.lane]) return;
      slots.setPriority(id, PRIORITY[lane]);
      // p-queue places it last among its new equals, as a new arrival would be.
      Object.assign(entry, { lane, seq: seq++ });
    },
    state(id) {
      const entry = named.get(id);
      return entry ? (entry.running ? 'running' : 'queued') : undefined;
    },
    position(id) {
      const entry = named.get(id);
      if (!entry || entry.running) return undefined;
      let ahead = 0;
      for (const other of named.values()) {
        if (other.running || other === entry) continue;
        const before = PRIORITY[other.lane] > PRIORITY[entry.lane] || (other.lane === entry.lane && other.seq < entry.seq);
        if (before) ahead += 1;
      }
      // Unnamed jobs (none today: the pipeline names every one) would make this a lower bound.
      return ahead + 1;
    },
    stats() {
      prune(now());
      return {
        concurrency: options.concurrency,
        active: slots.pending,
        pending: slots.size,
        pendingByLane: { visitor: waiting('visitor'), jobs: waiting('jobs'), warm: waiting('warm') },
        windowCount: stamps.length,
        pausedUntil,
      };
    },
  };
}

/**
 * The limiter of a cluster worker: BullMQ holds the slots, the rate and the priorities for every
 * instance, so a job runs at once; the gate still spends the cluster's daily budget before each
 * submission and turns an upstream 429 into a pause of the whole queue (`pause`).
 */
export function createPassThroughLimiter(options: {
  daily?: { limit: number; counter: DailyCounter };
  /** Holds back every worker for `ms` (BullMQ's queue-wide rate limit). */
  pause: (ms: number) => void;
  now?: () => number;
}): Limiter {
  const now = options.now ?? Date.now;
  let active = 0;
  const gate: SubmitGate = {
    async acquire() {
      if (options.daily) await spendDaily(options.daily, now());
    },
    pauseUntil(epochMs) {
      const ms = epochMs - now();
      if (ms > 0) options.pause(ms);
    },
  };
  return {
    ...gate,
    async run(job) {
      active += 1;
      try {
        return await job(gate);
      } finally {
        active -= 1;
      }
    },
    promote: () => undefined,
    state: () => undefined,
    position: () => undefined,
    stats: () => ({ concurrency: 0, active, pending: 0, pendingByLane: { visitor: 0, jobs: 0, warm: 0 }, windowCount: 0, pausedUntil: 0 }),
  };
}
