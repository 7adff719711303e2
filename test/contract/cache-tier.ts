/**
 * The contract every `CacheTier` keeps, run against each implementation (memory, disk, redis) from
 * `cache-tiers.test.ts`, as keyv's storage test suite is run against each of its adapters.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cacheKey, type CacheEntry, type CacheTier, type EntryKind, type EntryMeta } from '../../src/cache/types.js';

export interface TierUnderTest {
  tier: CacheTier;
  /** Removes what the factory made (temp dirs); `tier.close()` is called by the suite. */
  cleanup?: () => Promise<void>;
}

export const hash = (): string => randomBytes(32).toString('hex');
export const keyOf = (kind: EntryKind = 'master'): string => cacheKey(kind, hash());

export function entryOf(data: Buffer, meta: Partial<EntryMeta> = {}): CacheEntry {
  return { data, meta: { kind: 'master', contentType: 'image/png', ...meta } };
}

/** Every byte value, and sequences that are not valid UTF-8: a tier that goes through text breaks on these. */
export function binary(size: number): Buffer {
  const data = randomBytes(size);
  for (let i = 0; i < Math.min(256, size); i++) data[i] = i;
  if (size > 260) data.set([0xc3, 0x28, 0xff, 0xfe], 256);
  return data;
}

export function cacheTierContract(name: string, factory: () => Promise<TierUnderTest>): void {
  describe(`CacheTier contract: ${name}`, () => {
    let subject: TierUnderTest;
    let tier: CacheTier;

    beforeEach(async () => {
      subject = await factory();
      tier = subject.tier;
    });
    afterEach(async () => {
      await tier.close?.();
      await subject.cleanup?.();
    });

    it('answers undefined for a key never set', async () => {
      expect(await tier.get(keyOf())).toBeUndefined();
    });

    it('returns the same bytes and meta after set', async () => {
      const key = keyOf();
      const meta: EntryMeta = {
        kind: 'master',
        contentType: 'image/png',
        width: 640,
        height: 480,
        paid: true,
        attrs: { engine: 'segmind', ignored: 'seed', steps: 18, flag: false },
      };
      const data = binary(4096);
      await tier.set(key, { data, meta });
      const got = await tier.get(key);
      expect(got?.meta).toEqual(meta);
      expect(got?.data.equals(data)).toBe(true);
    });

    it('round-trips a 1 MB binary value byte for byte', async () => {
      const key = keyOf('variant');
      const data = binary(1024 * 1024);
      await tier.set(key, entryOf(data, { kind: 'variant', contentType: 'image/webp' }));
      const got = await tier.get(key);
      expect(got?.data.length).toBe(data.length);
      expect(got?.data.equals(data)).toBe(true);
    });

    it('round-trips an empty value (a remembered failure has no bytes)', async () => {
      const key = keyOf('failure');
      const meta: EntryMeta = {
        kind: 'failure',
        contentType: 'application/octet-stream',
        expiresAt: Date.now() + 60_000,
        attrs: { detail: 'content blocked' },
      };
      await tier.set(key, { data: Buffer.alloc(0), meta });
      const got = await tier.get(key);
      expect(got?.data.length).toBe(0);
      expect(got?.meta).toEqual(meta);
    });

    it('forgets a deleted key, and deleting a missing key is fine', async () => {
      const key = keyOf();
      await tier.set(key, entryOf(binary(100)));
      await tier.delete(key);
      expect(await tier.get(key)).toBeUndefined();
      await expect(tier.delete(keyOf())).resolves.toBeUndefined();
    });

    it('treats an entry whose expiresAt has passed as a miss', async () => {
      const key = keyOf('failure');
      await tier.set(key, entryOf(binary(10), { kind: 'failure', expiresAt: Date.now() - 1000 }));
      expect(await tier.get(key)).toBeUndefined();
    });

    it('serves an entry whose expiresAt is still ahead', async () => {
      const key = keyOf('failure');
      const data = binary(10);
      await tier.set(key, entryOf(data, { kind: 'failure', expiresAt: Date.now() + 60_000 }));
      expect((await tier.get(key))?.data.equals(data)).toBe(true);
    });

    it('overwrites: the last set wins', async () => {
      const key = keyOf();
      await tier.set(key, entryOf(Buffer.from('first'), { width: 1 }));
      await tier.set(key, entryOf(Buffer.from('second value'), { width: 2 }));
      const got = await tier.get(key);
      expect(got?.data.toString()).toBe('second value');
      expect(got?.meta.width).toBe(2);
    });

    it('keeps kinds apart: master:<h> and variant:<h> are different entries', async () => {
      const h = hash();
      await tier.set(cacheKey('master', h), entryOf(Buffer.from('master')));
      await tier.set(cacheKey('variant', h), entryOf(Buffer.from('variant'), { kind: 'variant' }));
      expect((await tier.get(cacheKey('master', h)))?.data.toString()).toBe('master');
      expect((await tier.get(cacheKey('variant', h)))?.data.toString()).toBe('variant');
      await tier.delete(cacheKey('variant', h));
      expect((await tier.get(cacheKey('master', h)))?.data.toString()).toBe('master');
    });

    it('answers a malformed key with a miss, never a throw', async () => {
      await expect(tier.get('master:../../etc/passwd')).resolves.toBeUndefined();
      await expect(tier.get('nonsense')).resolves.toBeUndefined();
    });
  });
}
