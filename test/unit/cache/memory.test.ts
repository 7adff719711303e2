import { describe, expect, it } from 'vitest';
import { createMemoryTier, MEMORY_ENTRY_OVERHEAD_BYTES } from '../../../src/cache/memory.js';
import { cacheKey, type CacheEntry } from '../../../src/cache/types.js';

const key = (n: number) => cacheKey('variant', n.toString(16).padStart(64, '0'));
const entry = (bytes: number, expiresAt?: number): CacheEntry => ({
  data: Buffer.alloc(bytes, 1),
  meta: { kind: 'variant', contentType: 'image/webp', ...(expiresAt === undefined ? {} : { expiresAt }) },
});

describe('memory tier', () => {
  it('holds at most maxBytes, dropping the least recently used', async () => {
    const per = 3000 + MEMORY_ENTRY_OVERHEAD_BYTES;
    const tier = createMemoryTier({ maxBytes: per * 3 });
    for (let i = 1; i <= 3; i++) await tier.set(key(i), entry(3000));
    await tier.get(key(1));
    await tier.set(key(4), entry(3000));
    expect(tier.stats()).toEqual({ bytes: per * 3, entries: 3 });
    expect(await tier.get(key(2))).toBeUndefined();
    for (const n of [1, 3, 4]) expect(await tier.get(key(n))).toBeDefined();
  });

  it('never holds an entry larger than maxBytes, and keeps the others', async () => {
    const tier = createMemoryTier({ maxBytes: 10_000 });
    await tier.set(key(1), entry(1000));
    await tier.set(key(2), entry(10_000));
    expect(await tier.get(key(2))).toBeUndefined();
    expect(await tier.get(key(1))).toBeDefined();
  });

  it('drops an entry once its expiresAt passes on the injected clock', async () => {
    let now = 1_000_000;
    const tier = createMemoryTier({ maxBytes: 100_000, clock: () => now });
    await tier.set(key(1), entry(10, now + 5000));
    expect(await tier.get(key(1))).toBeDefined();
    now += 5001;
    expect(await tier.get(key(1))).toBeUndefined();
    expect(tier.stats().entries).toBe(0);
  });

  it.each([0, -1, 1.5])('refuses maxBytes %s', (maxBytes) => {
    expect(() => createMemoryTier({ maxBytes })).toThrow(/maxBytes/);
  });
});
