import { describe, expect, it } from 'vitest';
import { createMemoryTier } from '../../../src/cache/memory.js';
import { createTieredCache } from '../../../src/cache/tiered.js';
import { cacheKey, type CacheEntry, type CacheTier } from '../../../src/cache/types.js';
import { captureLogger, ERROR, WARN } from '../../contract/capture-logger.js';

const H = 'cd'.repeat(32);
const MASTER = cacheKey('master', H);
const VARIANT = cacheKey('variant', H);
const master: CacheEntry = { data: Buffer.from('paid pixels'), meta: { kind: 'master', contentType: 'image/png', paid: true } };
const variant: CacheEntry = { data: Buffer.from('webp'), meta: { kind: 'variant', contentType: 'image/webp' } };

/** A tier over a Map whose operations can be made to fail or hang. */
function fakeTier(name: CacheTier['name']) {
  const map = new Map<string, CacheEntry>();
  const calls: string[] = [];
  const behaviour = { failSet: false, failGet: false, hangSet: false };
  const tier: CacheTier = {
    name,
    async get(key) {
      calls.push(`get ${key}`);
      if (behaviour.failGet) throw new Error(`${name} read broke`);
      return map.get(key);
    },
    async set(key, entry) {
      calls.push(`set ${key}`);
      if (behaviour.hangSet) return new Promise<void>(() => undefined);
      if (behaviour.failSet) throw new Error(`${name} is full`);
      map.set(key, entry);
    },
    async delete(key) {
      calls.push(`delete ${key}`);
      map.delete(key);
    },
  };
  return { tier, map, calls, behaviour };
}

function setup() {
  const memory = fakeTier('memory');
  const redis = fakeTier('redis');
  const disk = fakeTier('disk');
  const logs = captureLogger();
  const cache = createTieredCache([memory.tier, redis.tier, disk.tier], logs.logger);
  return { memory, redis, disk, logs, cache };
}

describe('tiered cache', () => {
  it('reads down the tiers and names the one that answered', async () => {
    const { disk, cache, memory, redis } = setup();
    disk.map.set(MASTER, master);
    expect(await cache.get(MASTER)).toEqual({ entry: master, tier: 'disk' });
    expect(memory.calls[0]).toBe(`get ${MASTER}`);
    expect(redis.calls[0]).toBe(`get ${MASTER}`);
    expect(await cache.get(VARIANT)).toBeUndefined();
  });

  it('promotes a variant hit into every faster tier, and only those', async () => {
    const { redis, cache, memory, disk } = setup();
    redis.map.set(VARIANT, variant);
    await cache.get(VARIANT);
    await cache.settled();
    expect(memory.map.get(VARIANT)).toBe(variant);
    expect(disk.calls).toEqual([]);
    expect(await cache.get(VARIANT)).toEqual({ entry: variant, tier: 'memory' });
  });

  it('writes a master found in Redis to disk too: the instance that paid for it may be gone', async () => {
    const { redis, cache, memory, disk } = setup();
    redis.map.set(MASTER, master);
    expect(await cache.get(MASTER)).toEqual({ entry: master, tier: 'redis' });
    await cache.settled();
    expect(memory.map.get(MASTER)).toBe(master);
    expect(disk.map.get(MASTER)).toBe(master);
    expect(redis.calls).toEqual([`get ${MASTER}`]);
  });

  it('answers without waiting for a promotion (a hung faster tier does not hold the read)', async () => {
    const { disk, cache, memory } = setup();
    memory.behaviour.hangSet = true;
    disk.map.set(MASTER, master);
    await expect(cache.get(MASTER)).resolves.toEqual({ entry: master, tier: 'disk' });
  });

  it('treats a tier that throws on read as a miss and keeps reading', async () => {
    const { redis, disk, cache, logs } = setup();
    redis.behaviour.failGet = true;
    disk.map.set(MASTER, master);
    expect(await cache.get(MASTER)).toEqual({ entry: master, tier: 'disk' });
    expect(logs.find('cache tier read failed', WARN)).toHaveLength(1);
  });

  it('writes through to every tier', async () => {
    const { cache, memory, redis, disk } = setup();
    await cache.set(MASTER, master);
    for (const t of [memory, redis, disk]) expect(t.map.get(MASTER)).toBe(master);
  });

  it('throws when a master cannot be stored on disk, but still keeps it in the faster tiers', async () => {
    const { cache, memory, redis, disk, logs } = setup();
    disk.behaviour.failSet = true;
    await expect(cache.set(MASTER, master)).rejects.toThrow(/durably/);
    expect(memory.map.get(MASTER)).toBe(master);
    expect(redis.map.get(MASTER)).toBe(master);
    expect(logs.find('could not store a master durably', ERROR)).toHaveLength(1);
  });

  it('logs and swallows a failed variant write on disk, and failed memory or redis writes', async () => {
    const { cache, memory, redis, disk, logs } = setup();
    disk.behaviour.failSet = true;
    await expect(cache.set(VARIANT, variant)).resolves.toBeUndefined();
    disk.behaviour.failSet = false;
    memory.behaviour.failSet = true;
    redis.behaviour.failSet = true;
    await expect(cache.set(MASTER, master)).resolves.toBeUndefined();
    expect(disk.map.get(MASTER)).toBe(master);
    expect(logs.find('cache write failed', WARN).map((l) => l.tier)).toEqual(['disk', 'memory', 'redis']);
  });

  it('deletes from every tier', async () => {
    const { cache, memory, redis, disk } = setup();
    await cache.set(MASTER, master);
    await cache.delete(MASTER);
    expect(await cache.get(MASTER)).toBeUndefined();
    for (const t of [memory, redis, disk]) expect(t.calls).toContain(`delete ${MASTER}`);
  });

  it('works over real tiers too (memory in front of memory)', async () => {
    const front = createMemoryTier({ maxBytes: 1 << 20 });
    const back = { ...createMemoryTier({ maxBytes: 1 << 20 }), name: 'disk' as const };
    const cache = createTieredCache([front, back], captureLogger().logger);
    await back.set(MASTER, master);
    expect((await cache.get(MASTER))?.tier).toBe('disk');
    await cache.settled();
    expect((await cache.get(MASTER))?.tier).toBe('memory');
  });

  it('refuses an empty or repeated tier list', () => {
    const { logger } = captureLogger();
    expect(() => createTieredCache([], logger)).toThrow(/at least one/);
    const m = createMemoryTier({ maxBytes: 10 });
    expect(() => createTieredCache([m, m], logger)).toThrow(/repeat/);
  });
});
