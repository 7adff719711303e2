/**
 * The tiers as one cache: reads go down the tiers (fastest first) and a hit is copied into every
 * faster tier; writes go to every tier at once.
 *
 * Durability is decided here, by kind: a master (or source) whose disk write failed makes `set`
 * throw, because the caller must not believe it is stored; it is still written to the faster tiers,
 * so the bytes that were paid for stay servable while the disk is fixed. Every other failure (a
 * variant's disk write, any memory or Redis write) is logged and swallowed: those are caches.
 */
import type { Logger } from '../logger.js';
import { isDurableKind, parseCacheKey, type CacheEntry, type CacheTier } from './types.js';

export interface TieredHit {
  entry: CacheEntry;
  /** The tier that answered. */
  tier: CacheTier['name'];
}

export interface TieredCache {
  get(key: string): Promise<TieredHit | undefined>;
  /** Whether some tier holds the entry; reads no data where a tier can tell without it. */
  has(key: string): Promise<boolean>;
  /** Writes every tier; throws only when the disk write of a master or source failed. */
  set(key: string, entry: CacheEntry): Promise<void>;
  delete(key: string): Promise<void>;
  /** Resolves when the promotions started so far have finished (for shutdown and tests). */
  settled(): Promise<void>;
  /** Waits for pending promotions, then closes every tier. */
  close(): Promise<void>;
}

export function createTieredCache(tiers: CacheTier[], logger: Logger): TieredCache {
  if (tiers.length === 0) throw new TypeError('createTieredCache: expected at least one tier');
  const names = tiers.map((t) => t.name);
  if (new Set(names).size !== names.length) throw new TypeError(`createTieredCache: tier names repeat: ${names.join(', ')}`);
  const log = logger.child({ component: 'cache' });
  const promotions = new Set<Promise<void>>();

  /** Copies a hit into the faster tiers without holding the response that found it. */
  function promote(key: string, entry: CacheEntry, into: CacheTier[]): void {
    if (into.length === 0) return;
    const work: Promise<void> = Promise.allSettled(into.map((tier) => tier.set(key, entry))).then((results) => {
      results.forEach((result, i) => {
        if (result.status === 'rejected') log.warn({ err: result.reason, key, tier: into[i]?.name }, 'cache promotion failed');
      });
    });
    promotions.add(work);
    void work.finally(() => promotions.delete(work));
  }

  async function settled(): Promise<void> {
    while (promotions.size > 0) await Promise.all(promotions);
  }

  return {
    async get(key) {
      for (const [i, tier] of tiers.entries()) {
        let entry: CacheEntry | undefined;
        try {
          entry = await tier.get(key);
        } catch (error) {
          // Tiers promise not to throw on reads; if one does anyway, it is a miss, not a 500.
          log.warn({ err: error, key, tier: tier.name }, 'cache tier read failed');
          continue;
        }
        if (entry) {
          // Faster tiers get every hit. A master or source found in Redis is also written to the
          // disk behind it: the instance that paid for it may be gone, and Redis may evict it.
          const durable = isDurableKind(parseCacheKey(key)?.kind ?? entry.meta.kind);
          promote(key, entry, durable ? tiers.filter((other, j) => j < i || other.name === 'disk') : tiers.slice(0, i));
          return { entry, tier: tier.name };
        }
      }
      return undefined;
    },

    async has(key) {
      for (const tier of tiers) {
        try {
          if (tier.has ? await tier.has(key) : (await tier.get(key)) !== undefined) return true;
        } catch (error) {
          log.warn({ err: error, key, tier: tier.name }, 'cache tier read failed');
        }
      }
      return false;
    },

    async set(key, entry) {
      const durable = isDurableKind(parseCacheKey(key)?.kind ?? entry.meta.kind);
      const results = await Promise.allSettled(tiers.map((tier) => tier.set(key, entry)));
      let durableFailure: unknown;
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') return;
        const tier = tiers[i]?.name;
        if (durable && tier === 'disk') {
          durableFailure = result.reason;
          log.error({ err: result.reason, key }, 'could not store a master durably on disk');
        } else {
          log.warn({ err: result.reason, key, tier }, 'cache write failed');
        }
      });
      if (durableFailure !== undefined) {
        throw new Error(`could not store ${key} durably: the disk write failed`, { cause: durableFailure });
      }
    },

    async delete(key) {
      const results = await Promise.allSettled(tiers.map((tier) => tier.delete(key)));
      results.forEach((result, i) => {
        if (result.status === 'rejected') log.warn({ err: result.reason, key, tier: tiers[i]?.name }, 'cache delete failed');
      });
    },

    settled,

    async close() {
      await settled();
      await Promise.all(tiers.map((tier) => tier.close?.()));
    },
  };
}
