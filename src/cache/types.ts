/**
 * One interface for every cache tier (memory, redis, disk), composed by `TieredCache`. Tiers never
 * throw on a failed read: a broken tier is a miss, logged by the tier; `set` on the disk tier does
 * throw, because the disk is where a paid master becomes durable.
 */

/** Masters are engine output (expensive); variants are encodings of a master (cheap to redo). */
/**
 * `job`: an accepted, billed upstream job whose result is not stored yet (the engine's journal,
 * mirrored in Redis so that another instance can resume it); it expires with the upstream's copy.
 */
export type EntryKind = 'master' | 'variant' | 'source' | 'failure' | 'job';

export interface EntryMeta {
  kind: EntryKind;
  /** MIME type of `data`. */
  contentType: string;
  width?: number;
  height?: number;
  /** Producing this entry cost money (paid masters are never evicted from disk). */
  paid?: boolean;
  /** Epoch ms after which the entry is stale and must be treated as a miss. */
  expiresAt?: number;
  /** Free-form attributes that travel with the entry (engine, ignored fields, failure reason). */
  attrs?: Record<string, string | number | boolean>;
}

export interface CacheEntry {
  data: Buffer;
  meta: EntryMeta;
}

export interface CacheTier {
  readonly name: 'memory' | 'redis' | 'disk';
  /** The entry, or undefined on a miss, an expired entry, or a tier failure. */
  get(key: string): Promise<CacheEntry | undefined>;
  /**
   * Whether `get` would find the entry, without reading it (quotes for many masters at once). A
   * tier without it is asked through `get`.
   */
  has?(key: string): Promise<boolean>;
  set(key: string, entry: CacheEntry): Promise<void>;
  delete(key: string): Promise<void>;
  /** Releases connections and timers. */
  close?(): Promise<void>;
}

/**
 * Key convention, shared by every tier: `<kind>:<64 lowercase hex>`, e.g. `master:ab12…`,
 * `variant:…`, `failure:…`, `source:…`. The kind comes first so that a tier can place, expire and
 * evict by kind without reading the entry (the disk tier files it under `<dir>/<kind>/<ab>/<hex>`;
 * the Redis tier picks the TTL of the kind); the hex is a sha256, so a key is never user text and
 * is safe as a path segment and a Redis key. Keys are content-addressed: one key always names the
 * same bytes, which is why a tier may skip a write it cannot take without invalidating anything.
 */
export type CacheKey = `${EntryKind}:${string}`;

export const ENTRY_KINDS: readonly EntryKind[] = ['master', 'variant', 'source', 'failure', 'job'];

const KEY_PATTERN = /^(master|variant|source|failure|job):([0-9a-f]{64})$/;

/** `cacheKey('master', hash)` → `master:<hash>`; throws on anything but 64 lowercase hex. */
export function cacheKey(kind: EntryKind, hash: string): CacheKey {
  const key = `${kind}:${hash}` as const;
  if (!KEY_PATTERN.test(key)) throw new TypeError(`expected a 64-hex hash for a ${kind} cache key, got ${JSON.stringify(hash)}`);
  return key;
}

/** The kind and hash of a well-formed key, or undefined. */
export function parseCacheKey(key: string): { kind: EntryKind; hash: string } | undefined {
  const match = KEY_PATTERN.exec(key);
  return match ? { kind: match[1] as EntryKind, hash: match[2] as string } : undefined;
}

/** Kinds whose loss costs money or cannot be redone: a failed disk write of these is an error. */
export function isDurableKind(kind: EntryKind): boolean {
  return kind === 'master' || kind === 'source' || kind === 'job';
}

/** Whether `meta` is past its `expiresAt` at `now` (epoch ms). */
export function isExpired(meta: EntryMeta, now: number): boolean {
  return meta.expiresAt !== undefined && meta.expiresAt < now;
}
