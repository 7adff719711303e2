/**
 * One interface for every cache tier (memory, redis, disk), composed by `TieredCache`. Tiers never
 * throw on a failed read: a broken tier is a miss, logged by the tier; `set` on the disk tier does
 * throw, because the disk is where a paid master becomes durable.
 */

/** Masters are engine output (expensive); variants are encodings of a master (cheap to redo). */
export type EntryKind = 'master' | 'variant' | 'source' | 'failure';

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
  set(key: string, entry: CacheEntry): Promise<void>;
  delete(key: string): Promise<void>;
  /** Releases connections and timers. */
  close?(): Promise<void>;
}
