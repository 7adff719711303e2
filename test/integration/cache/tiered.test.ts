/**
 * The tiered cache over real tiers (memory, a private redis-server, disk): Redis going away or
 * losing everything never loses a master and never fails a request.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createClient } from '@keyv/redis';
import { createDiskTier, type DiskTier } from '../../../src/cache/disk.js';
import { createMemoryTier } from '../../../src/cache/memory.js';
import { createRedisTier, type RedisTier } from '../../../src/cache/redis.js';
import { createTieredCache, type TieredCache } from '../../../src/cache/tiered.js';
import { cacheKey, type CacheEntry } from '../../../src/cache/types.js';
import { captureLogger } from '../../contract/capture-logger.js';
import { startRedis, type RedisProcess } from '../../helpers/redis.js';

const master = (): CacheEntry => ({
  data: randomBytes(50_000),
  meta: { kind: 'master', contentType: 'image/png', width: 100, height: 100, paid: true },
});
const PREFIX = 'tiered';

describe('tiered cache over memory + redis + disk', () => {
  const { logger } = captureLogger();
  let redisServer: RedisProcess;
  let dir: string;
  let redis: RedisTier;
  let disk: DiskTier;
  const open: TieredCache[] = [];

  /** A fresh process's view: empty memory, the same Redis and disk. */
  function tiered(): TieredCache {
    const cache = createTieredCache([createMemoryTier({ maxBytes: 1 << 24 }), redis, disk], logger);
    open.push(cache);
    return cache;
  }

  beforeAll(async () => {
    redisServer = await startRedis();
  });
  afterAll(async () => {
    await redisServer.stop();
  });
  beforeEach(async () => {
    await redisServer.start();
    dir = await mkdtemp(join(tmpdir(), 'clarity-tiered-'));
    redis = createRedisTier({
      url: redisServer.url,
      prefix: PREFIX,
      masterTtlSeconds: 600,
      variantTtlSeconds: 600,
      maxValueBytes: 1 << 20,
      timeoutMs: 150,
      logger,
      breaker: { cooldownMs: 200 },
      reconnectMaxDelayMs: 100,
    });
    disk = createDiskTier({ dir, maxBytes: 1 << 30, logger });
    await Promise.all([redis.whenUp(), disk.ready()]);
  });
  afterEach(async () => {
    for (const cache of open.splice(0)) await cache.settled();
    await redis.close();
    await disk.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('with Redis killed, still stores a master durably and serves it from disk', async () => {
    await redisServer.stop({ crash: true });
    const key = cacheKey('master', randomBytes(32).toString('hex'));
    const paid = master();

    const first = tiered();
    await expect(first.set(key, paid)).resolves.toBeUndefined();
    expect((await first.get(key))?.tier).toBe('memory');

    // A restarted process (empty memory, Redis still dead) finds it on disk.
    const restarted = tiered();
    const hit = await restarted.get(key);
    expect(hit?.tier).toBe('disk');
    expect(hit?.entry.data.equals(paid.data)).toBe(true);

    // And another disk tier instance on the same directory proves it is on the disk itself.
    const reopened = createDiskTier({ dir, maxBytes: 1 << 30, logger });
    expect((await reopened.get(key))?.data.equals(paid.data)).toBe(true);
    await reopened.close();
  });

  it('after FLUSHDB, the next read hits disk and refills Redis', async () => {
    const key = cacheKey('master', randomBytes(32).toString('hex'));
    const paid = master();
    await tiered().set(key, paid);

    const raw = createClient({ url: redisServer.url });
    raw.on('error', () => undefined);
    await raw.connect();
    try {
      expect(await raw.exists(`${PREFIX}:${key}`)).toBe(1);
      await raw.flushDb();

      const cache = tiered();
      expect((await cache.get(key))?.tier).toBe('disk');
      await cache.settled();
      expect(await raw.exists(`${PREFIX}:${key}`)).toBe(1);

      // The next fresh process is served by Redis again.
      const hit = await tiered().get(key);
      expect(hit?.tier).toBe('redis');
      expect(hit?.entry.data.equals(paid.data)).toBe(true);
    } finally {
      raw.destroy();
    }
  });
});
