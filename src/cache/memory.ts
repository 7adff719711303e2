/**
 * The in-process tier: an LRU bounded by bytes, not by entry count, because one master can be tens
 * of megabytes and another a few kilobytes.
 */
import { LRUCache } from 'lru-cache';
import { isExpired, type CacheEntry, type CacheTier } from './types.js';

/** What an entry costs beyond its data: the meta object, the key, the LRU's own slots. */
export const MEMORY_ENTRY_OVERHEAD_BYTES = 512;

export interface MemoryTierOptions {
  /** Most bytes held (data plus `MEMORY_ENTRY_OVERHEAD_BYTES` per entry); also the largest entry. */
  maxBytes: number;
  /** Epoch ms; `Date.now` by default. Checked against `meta.expiresAt` on every read. */
  clock?: () => number;
}

export interface MemoryTier extends CacheTier {
  readonly name: 'memory';
  /** Releases files, connections and timers (always present on this tier). */
  close(): Promise<void>;
  /** Bytes and entries held now. */
  stats(): { bytes: number; entries: number };
}

export function createMemoryTier(options: MemoryTierOptions): MemoryTier {
  if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0) {
    throw new TypeError(`memory tier maxBytes: expected a positive integer, got ${options.maxBytes}`);
  }
  const clock = options.clock ?? Date.now;
  const lru = new LRUCache<string, CacheEntry>({
    maxSize: options.maxBytes,
    // An entry larger than the whole tier would evict everything else and then itself: refuse it.
    maxEntrySize: options.maxBytes,
    sizeCalculation: (entry) => entry.data.length + MEMORY_ENTRY_OVERHEAD_BYTES,
  });

  return {
    name: 'memory',
    async get(key) {
      const entry = lru.get(key);
      if (!entry) return undefined;
      // lru-cache's ttl runs on its own monotonic clock; the meta's epoch deadline is the truth.
      if (isExpired(entry.meta, clock())) {
        lru.delete(key);
        return undefined;
      }
      return entry;
    },
    async set(key, entry) {
      const expiresAt = entry.meta.expiresAt;
      if (expiresAt === undefined) {
        lru.set(key, entry);
        return;
      }
      const ttl = expiresAt - clock();
      if (ttl <= 0) {
        lru.delete(key);
        return;
      }
      // The ttl lets the LRU drop a stale entry (and its bytes) without waiting for a read of it.
      lru.set(key, entry, { ttl });
    },
    async delete(key) {
      lru.delete(key);
    },
    async close() {
      lru.clear();
    },
    stats() {
      return { bytes: lru.calculatedSize, entries: lru.size };
    },
  };
}
