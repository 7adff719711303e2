/**
 * Content-addressed store of source images: the name of a source is the sha256 of its bytes, so
 * the same upload is the same source on every instance, and a copy from anywhere can be checked.
 *
 * Layout: `<dir>/sources/<first 2 hex>/<hash>` holds the bytes as uploaded, `<hash>.json` the
 * `SourceInfo` beside them (so `head` never reads the image). Both are written atomically (tmp,
 * fsync, rename, fsync of the directory), data first: a data file always has (or had) durable
 * bytes, and data without meta (a crash between the two) is re-derived on read.
 *
 * Size (`diskMaxBytes`): a running total of the DATA files is kept in memory, seeded by a scan of
 * the directory that runs in the background (`ready()`), with last-access times (put and get; the
 * scan seeds them from file mtimes). When a write takes the total past the budget, eviction runs
 * shortly after (debounced, off the request path, as in the disk tier) and removes the least
 * recently used sources' data files. It never takes a source that `isPinned` claims (a journaled
 * upstream job still needs it), one with a put or get in flight, or the source written last (an
 * upload that alone exceeds the budget is kept, with a warning: refusing it afterwards would be
 * worse than being over).
 *
 * Eviction removes the bytes and KEEPS the meta file. The state "evicted" is the absence of the
 * data file beside a meta file, not a flag inside it: the file system is then the one truth (a
 * flag would disagree with it after a crash between the flag write and the unlink, or between a
 * restore and its flag write), `SourceInfo` keeps its shape, and the crash rule above stays
 * sound, since eviction only ever removes data and writes still go data first. So after eviction
 * `head` answers as before (outputs and ETags are planned from the info, and masters and variants
 * already made from the source are still served from the cache), while `get` misses (unless the
 * shared tier has the bytes): only new engine work needs the source uploaded again.
 *
 * One store per directory: the totals are this process's view; a second process sharing the
 * directory is seen only through reads and the next start's scan.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import sharp, { type Metadata } from 'sharp';
import type { CacheTier } from '../cache/types.js';
import type { SourceImage } from '../engines/types.js';
import { writeFileAtomic } from '../atomic-file.js';
import { createDebouncedTask } from '../debounced-task.js';
import type { Logger } from '../logger.js';
import { SingleFlight } from '../single-flight.js';
import { SourceTooLargeError, UnsupportedMediaTypeError } from './errors.js';

/** Formats accepted as sources: what sharp's prebuilt libvips decodes, minus SVG (it can fetch). */
export const SOURCE_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff'] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

/** What is known of a stored source without reading its bytes. */
export interface SourceInfo {
  /** sha256 hex of the bytes. */
  hash: string;
  /** Stored pixel size, before EXIF orientation (as a decoder sees it). */
  width: number;
  height: number;
  format: SourceFormat;
  /** Size of the stored bytes. */
  bytes: number;
  hasAlpha: boolean;
  contentType: string;
}

export interface SourceStore {
  /**
   * Registers an image. Same bytes, same hash. `created` says whether this put stored the bytes:
   * true for a first upload and for the re-upload of a source whose bytes were evicted (they are
   * stored again), false when the bytes were already on disk (or a concurrent put stored them).
   * Throws `SourceTooLargeError` (413) past the byte or pixel limit, `UnsupportedMediaTypeError`
   * (415) for anything that is not a readable image in `SOURCE_FORMATS`.
   */
  put(data: Buffer): Promise<{ info: SourceInfo; created: boolean }>;
  /**
   * The image and its bytes; undefined when unknown here and in the shared tier, and when its
   * bytes were evicted here and the shared tier does not have them.
   */
  get(hash: string): Promise<SourceImage | undefined>;
  /**
   * The image's info without reading its bytes (unless it must come from the shared tier). Still
   * answers after the bytes were evicted: the info is kept.
   */
  head(hash: string): Promise<SourceInfo | undefined>;
}

export interface SourceStoreStats {
  /** Bytes of source data files on disk (meta files are not counted). */
  bytes: number;
  /** Sources whose data is on disk. */
  entries: number;
  /** Sources whose bytes were evicted and whose info is kept (`head` answers, `get` misses). */
  evicted: number;
  /** The budget (`diskMaxBytes`); absent when unbounded. */
  maxBytes?: number;
  /** The startup scan is still running (totals are still growing). */
  scanning: boolean;
}

/** The store as `createSourceStore` builds it: `SourceStore` plus its disk budget's controls. */
export interface DiskSourceStore extends SourceStore {
  stats(): SourceStoreStats;
  /** Hashes of the sources with bytes on disk, most recently used first (the playground's picker). */
  recent(limit: number): string[];
  /** Resolves when the startup scan has counted every existing source (never rejects). */
  ready(): Promise<void>;
  /** Resolves when no eviction is scheduled or running (a scheduled one is run now). */
  idle(): Promise<void>;
  /** Runs eviction now (after the scan), down to `diskMaxBytes`; nothing when unbounded. */
  evict(): Promise<void>;
  /** Clears timers and waits for the scan and a running eviction. */
  close(): Promise<void>;
}

export interface SourceStoreOptions {
  /** Root directory; sources live under `<dir>/sources/`. */
  dir: string;
  /** Largest accepted source, in bytes (`SOURCE_MAX_BYTES`). */
  maxBytes: number;
  /** Largest accepted source, in pixels (`SOURCE_MAX_PIXELS`, sharp's `limitInputPixels`). */
  maxPixels: number;
  /**
   * A tier every instance sees (Redis), so a source uploaded to one instance can be upscaled
   * through another. Written best-effort on put; read on a local miss, verified against the hash,
   * then kept locally. Key `source:<hash>`.
   */
  shared?: CacheTier;
  logger: Logger;
  /**
   * Budget for the bytes of source data on disk, past which the least recently used sources'
   * bytes are evicted (their info is kept). Default: unbounded, nothing is ever evicted.
   */
  diskMaxBytes?: number;
  /**
   * Sources that must keep their bytes whatever the budget (a journaled upstream job still needs
   * them). Asked during eviction only; an answer that throws counts as pinned.
   */
  isPinned?: (hash: string) => boolean | Promise<boolean>;
  /** Delay between a write that crosses `diskMaxBytes` and the eviction it triggers, so a burst
   * of uploads is evicted once. Default 250 ms. */
  evictionDelayMs?: number;
  /** A `.tmp` file older than this at startup is a write interrupted by a crash and is removed;
   * younger ones may belong to another process sharing the directory. Default 600000 ms (10 min). */
  staleTempMs?: number;
  /** Least time between two warnings that what cannot be evicted exceeds `diskMaxBytes`.
   * Default 3600000 ms (1 h). */
  overBudgetWarnIntervalMs?: number;
}

/** A source whose data file is on disk, as the budget sees it. */
interface DataEntry {
  bytes: number;
  /** Last put or get, epoch ms (file mtime when found by the scan): the LRU order. */
  atime: number;
  /** Breaks ties of `atime` (two accesses in one millisecond) and marks an entry touched since an
   * eviction run listed it. */
  seq: number;
}

/** How many files the startup scan stats at once. */
const SCAN_CONCURRENCY = 32;

const HASH = /^[0-9a-f]{64}$/;

/** Edge of the throwaway thumbnail that proves a source decodes to its end. */
const PROBE_EDGE = 64;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
}

function isSourceInfo(value: unknown, hash: string): value is SourceInfo {
  const v = value as Partial<SourceInfo> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    v.hash === hash &&
    Number.isInteger(v.width) &&
    Number.isInteger(v.height) &&
    Number.isInteger(v.bytes) &&
    typeof v.hasAlpha === 'boolean' &&
    typeof v.contentType === 'string' &&
    (SOURCE_FORMATS as readonly unknown[]).includes(v.format)
  );
}

const isPixelLimit = (error: unknown) => error instanceof Error && /pixel limit/i.test(error.message);

export function createSourceStore(options: SourceStoreOptions): DiskSourceStore {
  const { maxBytes, maxPixels, shared, logger, diskMaxBytes, isPinned } = options;
  if (diskMaxBytes !== undefined && (!Number.isSafeInteger(diskMaxBytes) || diskMaxBytes <= 0)) {
    throw new TypeError(`source store diskMaxBytes: expected a positive integer, got ${diskMaxBytes}`);
  }
  const evictionDelayMs = options.evictionDelayMs ?? 250;
  const staleTempMs = options.staleTempMs ?? 600_000;
  const overBudgetWarnIntervalMs = options.overBudgetWarnIntervalMs ?? 3_600_000;
  const root = join(options.dir, 'sources');
  /**
   * Every request reads its source's info (alpha for negotiation, size for the output limit):
   * from disk that was a third of a memory hit's CPU (bench/RESULTS.md). Content-addressed info
   * never changes, so it is kept, bounded by count (an entry is ~300 bytes).
   */
  const infos = new LRUCache<string, SourceInfo>({ max: 50_000 });
  /** One registration and one shared fetch per hash at a time, so `created` is true exactly once. */
  const registrations = new SingleFlight<{ info: SourceInfo; created: boolean }>();
  const fetches = new SingleFlight<{ info: SourceInfo; data: Buffer } | undefined>();

  const dataPath = (hash: string) => join(root, hash.slice(0, 2), hash);
  const metaPath = (hash: string) => `${dataPath(hash)}.json`;

  /** Sources whose data file is on disk, with their size and last access. */
  const index = new Map<string, DataEntry>();
  let totalBytes = 0;
  let accessSeq = 0;
  /**
   * Sources known by a meta file whose data was evicted. A set rather than a count, so a restore
   * racing the scan is neither counted twice nor subtracted from a count that never had it.
   */
  const evictedHashes = new Set<string>();
  /** Hashes with a put or get in flight: eviction leaves them alone. */
  const busy = new Map<string, number>();
  /**
   * Data files being unlinked by eviction. A put or get of that hash waits for it first, so a put
   * never answers "already stored" for bytes about to disappear. Together with `busy` (both set
   * synchronously) this makes an unlink and a put/get of one hash mutually exclusive.
   */
  const unlinking = new Map<string, Promise<void>>();
  /** The source written last: not evicted even if it alone is over budget (a warning says so). */
  let lastWritten: string | undefined;
  let scanning = true;
  let lastOverBudgetWarning: number | undefined;
  let closed = false;

  /** Counts a data file on disk and marks it used now. */
  function touch(hash: string, bytes: number): void {
    const entry = index.get(hash);
    if (entry) {
      entry.atime = Date.now();
      entry.seq = ++accessSeq;
      return;
    }
    index.set(hash, { bytes, atime: Date.now(), seq: ++accessSeq });
    totalBytes += bytes;
    evictedHashes.delete(hash);
  }

  function drop(hash: string): void {
    const entry = index.get(hash);
    if (!entry) return;
    totalBytes -= entry.bytes;
    index.delete(hash);
  }

  function enter(hash: string): void {
    busy.set(hash, (busy.get(hash) ?? 0) + 1);
  }

  function leave(hash: string): void {
    const left = (busy.get(hash) ?? 1) - 1;
    if (left === 0) busy.delete(hash);
    else busy.set(hash, left);
  }

  /** Runs `work` with `hash` marked busy, after any unlink of it has finished. */
  async function using<T>(hash: string, work: () => Promise<T>): Promise<T> {
    enter(hash);
    try {
      await unlinking.get(hash);
      return await work();
    } finally {
      leave(hash);
    }
  }

  async function scanShard(shard: string): Promise<void> {
    const folder = join(root, shard);
    const names = await listDir(folder);
    const present = new Set(names);
    /** Data files to count and temp files to age: both need a stat. */
    const files: string[] = [];
    for (const name of names) {
      if (name.endsWith('.tmp') || (HASH.test(name) && name.startsWith(shard))) {
        files.push(name);
      } else if (name.endsWith('.json')) {
        const hash = name.slice(0, -'.json'.length);
        // A put or get may have restored it since the listing (then it is in the index); one
        // still in flight takes it out of the set when it writes the data.
        if (HASH.test(hash) && !present.has(hash) && !index.has(hash)) evictedHashes.add(hash);
      }
    }
    for (let i = 0; i < files.length; i += SCAN_CONCURRENCY) {
      await Promise.all(files.slice(i, i + SCAN_CONCURRENCY).map((name) => scanFile(folder, name)));
    }
  }

  async function scanFile(folder: string, name: string): Promise<void> {
    const file = join(folder, name);
    try {
      const { size, mtimeMs } = await stat(file);
      if (name.endsWith('.tmp')) {
        if (Date.now() - mtimeMs >= staleTempMs) {
          await unlink(file);
          logger.info({ file }, 'removed a source write interrupted by a crash');
        }
        return;
      }
      // A put or get may have counted it meanwhile, with a newer access time. Nothing deletes
      // during the scan (eviction waits for it), so the listing cannot be stale the other way.
      if (index.has(name)) return;
      index.set(name, { bytes: size, atime: mtimeMs, seq: 0 });
      totalBytes += size;
      evictedHashes.delete(name);
    } catch (error) {
      if (!isMissing(error)) logger.warn({ err: error, file }, 'could not read a source file during the scan');
    }
  }

  async function scan(): Promise<void> {
    const started = Date.now();
    try {
      for (const shard of await listDir(root)) {
        if (closed) break;
        if (/^[0-9a-f]{2}$/.test(shard)) await scanShard(shard);
      }
      logger.info(
        { entries: index.size, bytes: totalBytes, evicted: evictedHashes.size, maxBytes: diskMaxBytes, ms: Date.now() - started },
        'source store scanned',
      );
    } catch (error) {
      // The store still reads and writes; only the total is short until the next start.
      logger.error({ err: error, dir: root }, 'source store scan failed: the size total is incomplete');
    } finally {
      scanning = false;
    }
    eviction.schedule();
  }

  const eviction = createDebouncedTask({
    delayMs: evictionDelayMs,
    run: evictNow,
    wanted: () => !closed && !scanning && diskMaxBytes !== undefined && totalBytes > diskMaxBytes,
    onError: (error) => logger.error({ err: error }, 'source eviction failed'),
  });
  const readyPromise = scan();

  async function pinned(hash: string): Promise<boolean> {
    if (!isPinned) return false;
    try {
      return await isPinned(hash);
    } catch (error) {
      // Unsure is pinned: evicting what a paid job still needs costs more than a full disk.
      logger.warn({ err: error, hash }, 'could not tell whether a source is pinned; kept');
      return true;
    }
  }

  /** Unlinks one source's data; the index is updated before any waiting put or get resumes. */
  function removeData(hash: string, entry: DataEntry): Promise<boolean> {
    const removal = (async () => {
      try {
        await unlink(dataPath(hash));
      } catch (error) {
        if (!isMissing(error)) {
          logger.warn({ err: error, hash }, 'could not evict a source');
          return false;
        }
      }
      if (index.get(hash) === entry) drop(hash);
      evictedHashes.add(hash);
      return true;
    })();
    const settled = removal.then(() => undefined);
    unlinking.set(hash, settled);
    return removal.finally(() => {
      if (unlinking.get(hash) === settled) unlinking.delete(hash);
    });
  }

  async function evictNow(): Promise<void> {
    await readyPromise;
    if (diskMaxBytes === undefined || totalBytes <= diskMaxBytes) {
      lastOverBudgetWarning = undefined;
      return;
    }
    const candidates = [...index].map(([hash, entry]) => ({ hash, entry, seq: entry.seq }));
    candidates.sort((a, b) => a.entry.atime - b.entry.atime || a.seq - b.seq);
    const kept = { pinned: 0, inUse: 0, latest: 0 };
    let evicted = 0;
    let evictedBytes = 0;
    for (const { hash, entry, seq } of candidates) {
      if (totalBytes <= diskMaxBytes || closed) break;
      // Gone, replaced or used since the listing: no longer the least recently used.
      const current = () => index.get(hash) === entry && entry.seq === seq;
      if (!current()) continue;
      if (hash === lastWritten) {
        kept.latest += 1;
        continue;
      }
      if (busy.has(hash)) {
        kept.inUse += 1;
        continue;
      }
      if (await pinned(hash)) {
        kept.pinned += 1;
        continue;
      }
      // Re-checked after the await, and nothing awaits between this check and `unlinking.set`.
      if (!current() || hash === lastWritten) continue;
      if (busy.has(hash)) {
        kept.inUse += 1;
        continue;
      }
      if (await removeData(hash, entry)) {
        evicted += 1;
        evictedBytes += entry.bytes;
      }
    }
    if (evicted > 0) logger.info({ evicted, evictedBytes, bytes: totalBytes, maxBytes: diskMaxBytes }, 'sources evicted');
    if (totalBytes > diskMaxBytes) {
      const now = Date.now();
      if (lastOverBudgetWarning === undefined || now - lastOverBudgetWarning >= overBudgetWarnIntervalMs) {
        lastOverBudgetWarning = now;
        logger.warn(
          { bytes: totalBytes, maxBytes: diskMaxBytes, kept },
          'source store over budget: pinned sources, sources in use and the latest upload are never evicted; raise the source disk budget or add disk',
        );
      }
    } else {
      lastOverBudgetWarning = undefined;
    }
  }


  const unsupported = (detail: string, cause?: unknown) =>
    new UnsupportedMediaTypeError({ detail, allowed: SOURCE_FORMATS.join(', '), ...(cause ? { cause } : {}) });

  const tooManyPixels = (detail: string, cause?: unknown) =>
    new SourceTooLargeError({
      detail: `${detail}; the limit is ${maxPixels} pixels (SOURCE_MAX_PIXELS)`,
      allowed: `at most ${maxPixels} pixels`,
      ...(cause ? { cause } : {}),
    });

  function checkBytes(data: Buffer): void {
    if (data.length > maxBytes) {
      throw new SourceTooLargeError({
        detail: `the image is ${data.length} bytes; the limit is ${maxBytes} bytes (SOURCE_MAX_BYTES)`,
        allowed: `at most ${maxBytes} bytes`,
      });
    }
  }

  /** What sharp reads of the header. Throws 415 for anything outside `SOURCE_FORMATS`, 413 past the pixel limit. */
  async function describe(hash: string, data: Buffer): Promise<SourceInfo> {
    let meta: Metadata;
    try {
      meta = await sharp(data, { limitInputPixels: maxPixels }).metadata();
    } catch (error) {
      if (isPixelLimit(error)) throw tooManyPixels('the image has more pixels than allowed', error);
      throw unsupported('the body is not an image in an accepted format', error);
    }
    // libheif names every HEIF container `heif`; only AV1 inside (AVIF) decodes with sharp's build.
    const format = meta.format === 'heif' ? (meta.compression === 'av1' ? 'avif' : 'heic') : meta.format;
    if (!(SOURCE_FORMATS as readonly string[]).includes(format)) {
      throw unsupported(`${format} images are not accepted`);
    }
    return {
      hash,
      width: meta.width,
      height: meta.height,
      format: format as SourceFormat,
      bytes: data.length,
      hasAlpha: meta.hasAlpha,
      contentType: `image/${format}`,
    };
  }

  /** The limits, then a full decode: a truncated upload is refused now, not when it is paid for upstream. */
  async function admit(hash: string, data: Buffer): Promise<SourceInfo> {
    checkBytes(data);
    const info = await describe(hash, data);
    if (info.width * info.height > maxPixels) {
      throw tooManyPixels(`the image is ${info.width}×${info.height} = ${info.width * info.height} pixels`);
    }
    try {
      // A small thumbnail still reads every byte, and JPEG shrink-on-load keeps it cheap.
      // 'truncated' rather than sharp's 'warning': browsers show JPEGs with minor warnings, so do we.
      await sharp(data, { limitInputPixels: maxPixels, failOn: 'truncated' })
        .resize(PROBE_EDGE, PROBE_EDGE, { fit: 'inside' })
        .raw()
        .toBuffer();
    } catch (error) {
      if (isPixelLimit(error)) throw tooManyPixels('the image has more pixels than allowed', error);
      throw unsupported(`the ${info.format} image is truncated or corrupt`, error);
    }
    return info;
  }

  async function writeLocal(info: SourceInfo, data: Buffer): Promise<void> {
    await mkdir(dirname(dataPath(info.hash)), { recursive: true });
    await writeFileAtomic(dataPath(info.hash), data);
    // Counted as soon as the bytes are on disk, even if the meta write below fails.
    touch(info.hash, data.length);
    lastWritten = info.hash;
    try {
      // Rewritten on a restore too: same content, and a meta file lost meanwhile comes back.
      await writeFileAtomic(metaPath(info.hash), JSON.stringify(info));
    } finally {
      eviction.schedule();
    }
  }

  /** Whether the bytes of `hash` are on disk here (false after eviction). */
  async function hasData(hash: string): Promise<boolean> {
    try {
      await stat(dataPath(hash));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  /** The local info; re-derived (and rewritten) when the data outlived its meta file. */
  async function readLocalInfo(hash: string, data?: Buffer): Promise<SourceInfo | undefined> {
    try {
      const parsed: unknown = JSON.parse(await readFile(metaPath(hash), 'utf8'));
      if (isSourceInfo(parsed, hash)) return parsed;
    } catch (error) {
      if (!isMissing(error) && !(error instanceof SyntaxError)) throw error;
    }
    let bytes = data;
    if (!bytes) {
      try {
        bytes = await readFile(dataPath(hash));
      } catch (error) {
        if (isMissing(error)) return undefined;
        throw error;
      }
    }
    // Admitted when it was stored: only the header is needed, not the limits of today.
    const info = await describe(hash, bytes);
    // Data the scan has not reached yet (or another process wrote): count it, as used now.
    if (!index.has(hash) && !data) touch(hash, bytes.length);
    await writeFileAtomic(metaPath(hash), JSON.stringify(info)).catch((error: unknown) =>
      logger.warn({ err: error, hash }, 'could not rewrite a source meta file'),
    );
    logger.info({ hash }, 'source meta re-derived from its data');
    return info;
  }

  async function readLocal(hash: string): Promise<{ info: SourceInfo; data: Buffer } | undefined> {
    let data: Buffer;
    try {
      data = await readFile(dataPath(hash));
    } catch (error) {
      if (!isMissing(error)) throw error;
      // Removed behind our back (another process, an operator): the total must not keep it.
      drop(hash);
      return undefined;
    }
    const info = await readLocalInfo(hash, data);
    if (!info) return undefined;
    touch(hash, data.length);
    return { info, data };
  }

  async function publish(info: SourceInfo, data: Buffer): Promise<void> {
    if (!shared) return;
    try {
      await shared.set(`source:${info.hash}`, {
        data,
        meta: {
          kind: 'source',
          contentType: info.contentType,
          width: info.width,
          height: info.height,
          attrs: { format: info.format, hasAlpha: info.hasAlpha },
        },
      });
    } catch (error) {
      // The local copy is the durable one; other instances just cannot see this source yet.
      logger.warn({ err: error, hash: info.hash, tier: shared.name }, 'could not share a source');
    }
  }

  /** A source another instance registered: verified byte for byte, admitted under our limits, kept locally. */
  function fetchShared(hash: string): Promise<{ info: SourceInfo; data: Buffer } | undefined> {
    const tier = shared;
    if (!tier) return Promise.resolve(undefined);
    return fetches.run(hash, async () => {
      const entry = await tier.get(`source:${hash}`).catch(() => undefined);
      if (!entry || entry.meta.kind !== 'source') return undefined;
      if (sha256(entry.data) !== hash) {
        logger.warn({ hash, tier: tier.name, bytes: entry.data.length }, 'shared source does not match its hash; ignored');
        await tier.delete(`source:${hash}`).catch(() => undefined);
        return undefined;
      }
      let info: SourceInfo;
      try {
        info = await admit(hash, entry.data);
      } catch (error) {
        logger.warn({ err: error, hash, tier: tier.name }, 'shared source refused by this instance');
        return undefined;
      }
      // Serving beats failing: a local write error costs a re-fetch next time, nothing more.
      await writeLocal(info, entry.data).catch((error: unknown) =>
        logger.warn({ err: error, hash }, 'could not store a shared source locally'),
      );
      return { info, data: entry.data };
    }).promise;
  }

  return {
    async put(data) {
      // Before hashing: 25 MiB of sha256 is not free, and the body may be far larger.
      checkBytes(data);
      const hash = sha256(data);
      // A put that joins one in flight did not create the source: that one did.
      const { promise, joined } = registrations.run(hash, () =>
        using(hash, async () => {
          // `created: false` only when the bytes are here: the info alone (kept by eviction)
          // does not count, so re-uploading an evicted source stores its bytes again.
          if (await hasData(hash)) {
            const existing = await readLocalInfo(hash, data);
            if (existing) {
              touch(hash, data.length);
              return { info: existing, created: false };
            }
          }
          const restoring = evictedHashes.has(hash);
          const info = await admit(hash, data);
          await writeLocal(info, data);
          logger.info(
            { hash, format: info.format, width: info.width, height: info.height, bytes: info.bytes },
            restoring ? 'evicted source stored again' : 'source stored',
          );
          return { info, created: true };
        }),
      );
      const registered = await promise;
      // Every put, not only the first: a re-upload restores a shared copy that expired or was lost.
      await publish(registered.info, data);
      return { info: registered.info, created: registered.created && !joined };
    },

    async get(hash) {
      if (!HASH.test(hash)) return undefined;
      const found = await using(hash, async () => (await readLocal(hash)) ?? (await fetchShared(hash)));
      if (!found) return undefined;
      const { info, data } = found;
      return { hash, data, width: info.width, height: info.height, format: info.format, hasAlpha: info.hasAlpha };
    },

    async head(hash) {
      if (!HASH.test(hash)) return undefined;
      const known = infos.get(hash);
      if (known) return known;
      const info = (await readLocalInfo(hash)) ?? (await fetchShared(hash))?.info;
      if (info) infos.set(hash, info);
      return info;
    },

    stats() {
      return {
        bytes: totalBytes,
        entries: index.size,
        evicted: evictedHashes.size,
        ...(diskMaxBytes === undefined ? {} : { maxBytes: diskMaxBytes }),
        scanning,
      };
    },
    recent(limit) {
      return [...index.entries()]
        .sort(([, a], [, b]) => b.atime - a.atime || b.seq - a.seq)
        .slice(0, limit)
        .map(([hash]) => hash);
    },
    ready: () => readyPromise,
    async idle() {
      await readyPromise;
      await eviction.idle();
    },
    evict: () => readyPromise.then(eviction.runNow),
    async close() {
      closed = true;
      await readyPromise;
      await eviction.close();
    },
  };
}
