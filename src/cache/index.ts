/**
 * The cache stage: three tiers behind `CacheTier` (memory, Redis, disk) and the tiered cache that
 * composes them. Keys follow `cacheKey(kind, hash)`; see `types.ts`.
 */
export {
  cacheKey,
  ENTRY_KINDS,
  isDurableKind,
  isExpired,
  parseCacheKey,
  type CacheEntry,
  type CacheKey,
  type CacheTier,
  type EntryKind,
  type EntryMeta,
} from './types.js';
export { createMemoryTier, MEMORY_ENTRY_OVERHEAD_BYTES, type MemoryTier, type MemoryTierOptions } from './memory.js';
export { createDiskTier, type DiskKindStats, type DiskStats, type DiskTier, type DiskTierOptions } from './disk.js';
export { createRedisTier, type RedisTier, type RedisTierOptions, type RedisTierStatus } from './redis.js';
export { BREAKER_DEFAULTS, createCircuitBreaker, type BreakerOptions, type BreakerState, type CircuitBreaker } from './breaker.js';
export { createTieredCache, type TieredCache, type TieredHit } from './tiered.js';
