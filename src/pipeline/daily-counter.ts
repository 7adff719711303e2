/**
 * Upstream submissions per UTC day, kept in a file per day so that a restart does not hand out a
 * fresh budget. One process owns the directory; counts are serialized through one promise chain.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DailyCounter } from './limiter.js';

export function createFileDailyCounter(dir: string): DailyCounter {
  const counts = new Map<string, number>();
  let chain: Promise<unknown> = Promise.resolve();

  async function read(day: string): Promise<number> {
    const known = counts.get(day);
    if (known !== undefined) return known;
    const stored = await readFile(join(dir, `${day}.json`), 'utf8').then(
      (text) => Number((JSON.parse(text) as { submissions?: number }).submissions) || 0,
      () => 0,
    );
    counts.set(day, stored);
    return stored;
  }

  return {
    get: (day) => read(day),
    increment(day) {
      const next = chain.then(async () => {
        const count = (await read(day)) + 1;
        counts.set(day, count);
        await mkdir(dir, { recursive: true });
        const file = join(dir, `${day}.json`);
        await writeFile(`${file}.tmp`, JSON.stringify({ day, submissions: count }));
        await rename(`${file}.tmp`, file);
        return count;
      });
      chain = next.catch(() => undefined);
      return next;
    },
  };
}

/** The subset of a Redis client the cluster's counter needs (ioredis). */
export interface CounterRedis {
  incr(key: string): Promise<number>;
  decr(key: string): Promise<number>;
  get(key: string): Promise<string | null>;
  expire(key: string, seconds: number): Promise<number>;
}

/**
 * The cluster's count in Redis (`CLUSTER_MODE=bullmq`): every instance spends one budget, and
 * `take` is an atomic INCR (given back past the limit), so two workers cannot both take the last
 * submission. Keys live two days.
 */
export function createRedisDailyCounter(redis: CounterRedis, prefix: string): DailyCounter {
  const key = (day: string) => `${prefix}:daily:${day}`;
  return {
    async get(day) {
      return Number(await redis.get(key(day))) || 0;
    },
    async increment(day) {
      const count = await redis.incr(key(day));
      await redis.expire(key(day), 2 * 86_400);
      return count;
    },
    async take(day, limit) {
      const count = await redis.incr(key(day));
      await redis.expire(key(day), 2 * 86_400);
      if (count <= limit) return true;
      await redis.decr(key(day));
      return false;
    },
  };
}
