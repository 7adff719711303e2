import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DailyLimitError } from '../../../src/pipeline/errors.js';
import { createLimiter, type DailyCounter } from '../../../src/pipeline/limiter.js';

function memoryCounter(): DailyCounter & { days: Map<string, number> } {
  const days = new Map<string, number>();
  return {
    days,
    async get(day) {
      return days.get(day) ?? 0;
    },
    async increment(day) {
      const n = (days.get(day) ?? 0) + 1;
      days.set(day, n);
      return n;
    },
  };
}

describe('limiter', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: Date.parse('2026-11-24T12:00:00Z') });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs at most `concurrency` jobs at once', async () => {
    const limiter = createLimiter({ concurrency: 2, perMinute: 1000 });
    let active = 0;
    let peak = 0;
    const releases: (() => void)[] = [];
    const jobs = Array.from({ length: 5 }, () =>
      limiter.run(async () => {
        active++;
        peak = Math.max(peak, active);
        await new Promise<void>((resolve) => releases.push(resolve));
        active--;
      }),
    );
    await vi.advanceTimersByTimeAsync(0);
    expect(limiter.stats()).toMatchObject({ active: 2, pending: 3 });
    while (releases.length > 0) {
      releases.shift()!();
      await vi.advanceTimersByTimeAsync(0);
    }
    await Promise.all(jobs);
    expect(peak).toBe(2);
  });

  it('admits at most `perMinute` submissions in any 60 s window', async () => {
    const limiter = createLimiter({ concurrency: 10, perMinute: 3 });
    const admitted: number[] = [];
    const start = Date.now();
    const all = Array.from({ length: 7 }, () => limiter.acquire().then(() => admitted.push(Date.now() - start)));
    await vi.advanceTimersByTimeAsync(0);
    expect(admitted).toEqual([0, 0, 0]);
    await vi.advanceTimersByTimeAsync(59_999);
    expect(admitted).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(admitted).toEqual([0, 0, 0, 60_000, 60_000, 60_000]);
    await vi.advanceTimersByTimeAsync(60_000);
    await Promise.all(all);
    expect(admitted.at(-1)).toBe(120_000);
  });

  it('a pause holds back every caller until it ends', async () => {
    const limiter = createLimiter({ concurrency: 10, perMinute: 100 });
    await limiter.acquire();
    limiter.pauseUntil(Date.now() + 5_000);
    let admitted = 0;
    const waiting = [limiter.acquire(), limiter.acquire()].map((p) => p.then(() => admitted++));
    await vi.advanceTimersByTimeAsync(4_999);
    expect(admitted).toBe(0);
    // A shorter pause never shortens a longer one.
    limiter.pauseUntil(Date.now() + 1);
    await vi.advanceTimersByTimeAsync(1);
    await Promise.all(waiting);
    expect(admitted).toBe(2);
  });

  it('an aborted wait rejects and frees its turn', async () => {
    const limiter = createLimiter({ concurrency: 1, perMinute: 1 });
    await limiter.acquire();
    const controller = new AbortController();
    const aborted = limiter.acquire(controller.signal);
    controller.abort(new Error('gone'));
    await expect(aborted).rejects.toThrow('gone');
    const next = limiter.acquire();
    await vi.advanceTimersByTimeAsync(60_000);
    await expect(next).resolves.toBeUndefined();
  });

  it('the daily limit answers 503 with Retry-After until UTC midnight', async () => {
    const counter = memoryCounter();
    const limiter = createLimiter({ concurrency: 1, perMinute: 100, daily: { limit: 2, counter } });
    await limiter.acquire();
    await limiter.acquire();
    const error = await limiter.acquire().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DailyLimitError);
    expect(error).toMatchObject({ status: 503, code: 'DAILY_LIMIT_REACHED', retryAfterSeconds: 12 * 3600 });
    expect(counter.days.get('2026-11-24')).toBe(2);
    await vi.advanceTimersByTimeAsync(12 * 3600 * 1000);
    await expect(limiter.acquire()).resolves.toBeUndefined();
    expect(counter.days.get('2026-11-25')).toBe(1);
  });
});

describe('lanes', () => {
  /** A limiter of one slot held by a blocker, so everything else waits; `release` frees it. */
  function held() {
    const limiter = createLimiter({ concurrency: 1, perMinute: 1000 });
    let release!: () => void;
    const blocker = limiter.run(() => new Promise<void>((resolve) => (release = resolve)), { id: 'blocker', lane: 'warm' });
    const order: string[] = [];
    const enqueue = (id: string, lane: 'visitor' | 'jobs' | 'warm') =>
      limiter.run(async () => void order.push(id), { id, lane });
    return { limiter, blocker, order, enqueue, release: () => release() };
  }

  it('serves visitors before jobs before warming, FIFO within a lane', async () => {
    const { limiter, order, enqueue, release, blocker } = held();
    const all = [enqueue('w1', 'warm'), enqueue('j1', 'jobs'), enqueue('w2', 'warm'), enqueue('v1', 'visitor'), enqueue('j2', 'jobs'), enqueue('v2', 'visitor')];
    expect(limiter.stats().pendingByLane).toEqual({ visitor: 2, jobs: 2, warm: 2 });
    expect(limiter.state('blocker')).toBe('running');
    expect(limiter.state('w1')).toBe('queued');
    expect(['v1', 'v2', 'j1', 'j2', 'w1', 'w2'].map((id) => limiter.position(id))).toEqual([1, 2, 3, 4, 5, 6]);
    release();
    await Promise.all([blocker, ...all]);
    expect(order).toEqual(['v1', 'v2', 'j1', 'j2', 'w1', 'w2']);
    expect(limiter.state('v1')).toBeUndefined();
  });

  it('a waiting job is promoted to a higher lane, never demoted', async () => {
    const { limiter, order, enqueue, release, blocker } = held();
    const all = [enqueue('j1', 'jobs'), enqueue('w1', 'warm'), enqueue('w2', 'warm')];
    limiter.promote('w2', 'visitor');
    limiter.promote('j1', 'warm');
    expect(limiter.position('w2')).toBe(1);
    expect(limiter.position('j1')).toBe(2);
    release();
    await Promise.all([blocker, ...all]);
    expect(order).toEqual(['w2', 'j1', 'w1']);
  });
});
