/**
 * Content-addressed store of source images: the name of a source is the sha256 of its bytes, so
 * the same upload is the same source on every instance, and a copy from anywhere can be checked.
 *
 * Layout: `<dir>/sources/<first 2 hex>/<hash>` holds the bytes as uploaded, `<hash>.json` the
 * `SourceInfo` beside them (so `head` never reads the image). Both are written atomically (tmp,
 * fsync, rename, fsync of the directory), data first: a meta file implies durable data, and data
 * without meta (a crash between the two) is re-derived on read. Sources are never evicted: every
 * master key names one, and an upscale cannot be redone without it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import sharp, { type Metadata } from 'sharp';
import type { CacheTier } from '../cache/types.js';
import type { SourceImage } from '../engines/types.js';
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
   * Registers an image. Same bytes, same hash: a second put is `created: false`. Throws
   * `SourceTooLargeError` (413) past the byte or pixel limit, `UnsupportedMediaTypeError` (415)
   * for anything that is not a readable image in `SOURCE_FORMATS`.
   */
  put(data: Buffer): Promise<{ info: SourceInfo; created: boolean }>;
  /** The image and its bytes; undefined when unknown here and in the shared tier. */
  get(hash: string): Promise<SourceImage | undefined>;
  /** The image's info without reading its bytes (unless it must come from the shared tier). */
  head(hash: string): Promise<SourceInfo | undefined>;
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
}

const HASH = /^[0-9a-f]{64}$/;

/** Edge of the throwaway thumbnail that proves a source decodes to its end. */
const PROBE_EDGE = 64;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';

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

async function syncDir(dir: string): Promise<void> {
  // Makes the rename itself durable. Not every platform can open a directory; there the rename
  // is as durable as the OS makes it.
  const handle = await open(dir, 'r').catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // EINVAL/EPERM on some filesystems: nothing more can be done here.
  } finally {
    await handle.close();
  }
}

async function writeAtomic(path: string, data: Buffer | string): Promise<void> {
  // Unique per writer: concurrent writers of the same hash (two processes) each rename whole files.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  await syncDir(dirname(path));
}

export function createSourceStore(options: SourceStoreOptions): SourceStore {
  const { maxBytes, maxPixels, shared, logger } = options;
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
    await writeAtomic(dataPath(info.hash), data);
    await writeAtomic(metaPath(info.hash), JSON.stringify(info));
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
    await writeAtomic(metaPath(hash), JSON.stringify(info)).catch((error: unknown) =>
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
      if (isMissing(error)) return undefined;
      throw error;
    }
    const info = await readLocalInfo(hash, data);
    return info ? { info, data } : undefined;
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
      const { promise, joined } = registrations.run(hash, async () => {
        const existing = await readLocalInfo(hash);
        if (existing) return { info: existing, created: false };
        const info = await admit(hash, data);
        await writeLocal(info, data);
        logger.info({ hash, format: info.format, width: info.width, height: info.height, bytes: info.bytes }, 'source stored');
        return { info, created: true };
      });
      const registered = await promise;
      // Every put, not only the first: a re-upload restores a shared copy that expired or was lost.
      await publish(registered.info, data);
      return { info: registered.info, created: registered.created && !joined };
    },

    async get(hash) {
      if (!HASH.test(hash)) return undefined;
      const found = (await readLocal(hash)) ?? (await fetchShared(hash));
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
  };
}
