/**
 * The durable tier. A master that was paid for is on this disk before anyone is told it exists, and
 * nothing here ever deletes a paid master: not eviction, not a full disk budget.
 *
 * Layout: `<dir>/<kind>/<first 2 hex>/<64 hex>`, each file one frame (`frame.ts`) with a sha256 of
 * the data. The two-hex fan-out keeps directories small (256 per kind) for filesystems that slow
 * down past tens of thousands of entries per directory.
 *
 * Writes are atomic: a temp file in the same directory, fsynced, then renamed over the final name,
 * so a reader (or a restart after a crash) sees the old file or the new one, never half of one.
 * Masters and sources also fsync the directory, so the rename itself survives a power cut.
 *
 * Reads are checked: a file that is short, garbled or fails its checksum is a miss, is removed and
 * logged at warn; the pipeline then redoes the work (for a paid master: pays again, which is why
 * the checksum exists: serving a corrupt image forever would be worse). A hit is one read, and a
 * file's sha256 is computed once per process (its first read): hashing every hit cost more than
 * the read itself, and a file that verified is not rewritten except through `set`. The trade-off:
 * bytes that rot after their first read in this process are caught by the next process.
 *
 * Size: a running total is kept in memory, seeded by a scan of the directory that runs in the
 * background (`ready()`). When a write takes the total past `maxBytes`, eviction runs shortly after
 * (debounced, off the request path) and removes, least recently used first within each class:
 * expired entries, variants, failures, then masters that were not paid for (local engine output,
 * free to redo). Paid masters and sources are never evicted; when they alone exceed the budget the
 * tier keeps them and warns (once per `overBudgetWarnIntervalMs` while it lasts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { join } from 'node:path';
import { createDebouncedTask } from '../debounced-task.js';
import type { Logger } from '../logger.js';
import { decodeFrame, encodeHeader, parseHeader, PREFIX_BYTES, readPrefix } from './frame.js';
import {
  ENTRY_KINDS,
  isDurableKind,
  isExpired,
  parseCacheKey,
  type CacheEntry,
  type CacheTier,
  type EntryKind,
  type EntryMeta,
} from './types.js';

export interface DiskTierOptions {
  /** Root of the tier; created when missing. */
  dir: string;
  /** Budget in bytes (file sizes, headers included) past which eviction runs. */
  maxBytes: number;
  logger: Logger;
  /** Epoch ms, for `expiresAt` and access times; `Date.now` by default. */
  clock?: () => number;
  /** Delay between a write that crosses the budget and the eviction it triggers, so a burst of
   * writes is evicted once. Default 250 ms. */
  evictionDelayMs?: number;
  /** A `.tmp` file older than this at startup is a write interrupted by a crash and is removed;
   * younger ones may belong to another process sharing the directory. Default 600000 ms (10 min). */
  staleTempMs?: number;
  /** Least time between two warnings that paid masters alone exceed `maxBytes`. Default 3600000 ms. */
  overBudgetWarnIntervalMs?: number;
}

export interface DiskKindStats {
  bytes: number;
  entries: number;
}

export interface DiskStats {
  /** Bytes on disk counted against `maxBytes`. */
  bytes: number;
  entries: number;
  maxBytes: number;
  byKind: Record<EntryKind, DiskKindStats>;
  /** Bytes that eviction may never take: paid masters and sources. */
  pinnedBytes: number;
  /** The startup scan is still running (totals are still growing). */
  scanning: boolean;
}

export interface DiskTier extends CacheTier {
  readonly name: 'disk';
  /** Releases files, connections and timers (always present on this tier). */
  close(): Promise<void>;
  /** Resolves when the startup scan has counted every existing entry (never rejects). */
  ready(): Promise<void>;
  /** Resolves when no eviction is scheduled or running (a scheduled one is run now). */
  idle(): Promise<void>;
  /** Runs eviction now (after the scan), down to `maxBytes`. */
  evict(): Promise<void>;
  stats(): DiskStats;
}

interface IndexEntry {
  kind: EntryKind;
  bytes: number;
  paid: boolean;
  expiresAt: number | undefined;
  /** Last read or write, epoch ms: the LRU order within an eviction class. */
  atime: number;
}

/** How many files the startup scan reads at once. */
const SCAN_CONCURRENCY = 32;

/** Eviction class: lower goes first; `undefined` is never evicted. */
function evictionClass(entry: IndexEntry, now: number): number | undefined {
  if (entry.expiresAt !== undefined && entry.expiresAt < now) return 0;
  if (entry.kind === 'variant') return 1;
  if (entry.kind === 'failure') return 2;
  if (entry.kind === 'master' && !entry.paid) return 3;
  return undefined;
}

function isPinned(entry: IndexEntry): boolean {
  return (entry.kind === 'master' && entry.paid) || entry.kind === 'source' || entry.kind === 'job';
}

function indexEntry(meta: EntryMeta, bytes: number, atime: number): IndexEntry {
  return { kind: meta.kind, bytes, paid: meta.paid === true, expiresAt: meta.expiresAt, atime };
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Writes every byte of `buffers` from offset 0: `write` may write less than asked. */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let position = 0;
  for (const buffer of buffers) {
    let offset = 0;
    while (offset < buffer.length) {
      const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset, position);
      offset += bytesWritten;
      position += bytesWritten;
    }
  }
}

async function readExactly(handle: FileHandle, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let offset = 0;
  while (offset < length) {
    const { bytesRead } = await handle.read(buffer, offset, length - offset, position + offset);
    if (bytesRead === 0) break;
    offset += bytesRead;
  }
  return offset === length ? buffer : buffer.subarray(0, offset);
}

/** Reads only a file's header (the scan must not read gigabytes of image data). */
async function readFileHeader(handle: FileHandle): Promise<{ meta: EntryMeta } | { error: string }> {
  const prefix = await readExactly(handle, PREFIX_BYTES, 0);
  const parsed = readPrefix(prefix);
  if ('error' in parsed) return parsed;
  const json = await readExactly(handle, parsed.headerBytes, PREFIX_BYTES);
  if (json.length < parsed.headerBytes) return { error: 'truncated inside the header' };
  const header = parseHeader(json);
  if ('error' in header) return header;
  const { size } = await handle.stat();
  if (size !== PREFIX_BYTES + parsed.headerBytes + header.length) {
    return { error: `file is ${size} bytes, header says ${PREFIX_BYTES + parsed.headerBytes + header.length}` };
  }
  return { meta: header.meta };
}

export function createDiskTier(options: DiskTierOptions): DiskTier {
  const { dir, maxBytes, logger } = options;
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new TypeError(`disk tier maxBytes: expected a positive integer, got ${maxBytes}`);
  }
  const clock = options.clock ?? Date.now;
  const evictionDelayMs = options.evictionDelayMs ?? 250;
  const staleTempMs = options.staleTempMs ?? 600_000;
  const overBudgetWarnIntervalMs = options.overBudgetWarnIntervalMs ?? 3_600_000;
  const log = logger.child({ tier: 'disk' });

  const index = new Map<string, IndexEntry>();
  /** Keys whose file this process has hashed and found whole (bounded: a miss only costs a hash). */
  const verified = new LRUCache<string, true>({ max: 100_000 });
  let totalBytes = 0;
  /** Keys with a write in flight: eviction and the scan leave them alone. */
  const writing = new Map<string, number>();
  /** Keys deleted while the scan runs: the scan may have listed them before they went. */
  const deletedDuringScan = new Set<string>();
  let scanning = true;
  let lastOverBudgetWarning: number | undefined;
  let closed = false;

  const locate = (kind: EntryKind, hash: string) => {
    const folder = join(dir, kind, hash.slice(0, 2));
    return { folder, file: join(folder, hash) };
  };

  function put(key: string, entry: IndexEntry): void {
    const previous = index.get(key);
    if (previous) totalBytes -= previous.bytes;
    index.set(key, entry);
    totalBytes += entry.bytes;
  }

  function drop(key: string): void {
    verified.delete(key);
    const previous = index.get(key);
    if (previous) {
      totalBytes -= previous.bytes;
      index.delete(key);
    }
    if (scanning) deletedDuringScan.add(key);
  }

  /**
   * Removes a bad or expired file, unless it was replaced meanwhile: a write may have renamed a
   * good file over the path since we read it, and that one must stay.
   */
  async function removeIfUnchanged(file: string, ino: number): Promise<void> {
    try {
      if ((await stat(file)).ino === ino) await unlink(file);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') log.warn({ err: error, file }, 'could not remove a disk cache file');
    }
  }

  async function scanFile(kind: EntryKind, folder: string, name: string): Promise<void> {
    const file = join(folder, name);
    if (name.endsWith('.tmp')) {
      // fs times are wall-clock times, so this compares with Date.now, not the injected clock.
      try {
        const { mtimeMs } = await stat(file);
        if (Date.now() - mtimeMs >= staleTempMs) {
          await unlink(file);
          log.info({ file }, 'removed a write interrupted by a crash');
        }
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') log.warn({ err: error, file }, 'could not remove a stale temp file');
      }
      return;
    }
    if (!/^[0-9a-f]{64}$/.test(name) || !name.startsWith(folder.slice(-2))) return;
    const key = `${kind}:${name}`;
    if (index.has(key) || writing.has(key) || deletedDuringScan.has(key)) return;
    let handle: FileHandle | undefined;
    try {
      handle = await open(file, 'r');
      const header = await readFileHeader(handle);
      const { ino, size, mtimeMs } = await handle.stat();
      await handle.close();
      handle = undefined;
      if ('error' in header || header.meta.kind !== kind) {
        log.warn({ key, reason: 'error' in header ? header.error : 'kind does not match its folder' }, 'removed a corrupt disk cache file');
        await removeIfUnchanged(file, ino);
        return;
      }
      // A write or delete may have landed while this file was being read: theirs is newer.
      if (index.has(key) || writing.has(key) || deletedDuringScan.has(key)) return;
      put(key, indexEntry(header.meta, size, mtimeMs));
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') log.warn({ err: error, key }, 'could not read a disk cache file during the scan');
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }

  async function listDir(path: string): Promise<string[]> {
    try {
      return await readdir(path);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return [];
      throw error;
    }
  }

  async function scan(): Promise<void> {
    const started = Date.now();
    try {
      await mkdir(dir, { recursive: true });
      for (const kind of ENTRY_KINDS) {
        for (const shard of await listDir(join(dir, kind))) {
          if (!/^[0-9a-f]{2}$/.test(shard) || closed) continue;
          const folder = join(dir, kind, shard);
          const names = await listDir(folder);
          for (let i = 0; i < names.length; i += SCAN_CONCURRENCY) {
            await Promise.all(names.slice(i, i + SCAN_CONCURRENCY).map((name) => scanFile(kind, folder, name)));
          }
        }
      }
      log.info({ entries: index.size, bytes: totalBytes, maxBytes, ms: Date.now() - started }, 'disk cache scanned');
    } catch (error) {
      // The tier still reads and writes; only the total is short until the next start.
      log.error({ err: error, dir }, 'disk cache scan failed: the size total is incomplete');
    } finally {
      scanning = false;
      deletedDuringScan.clear();
    }
    eviction.schedule();
  }

  const eviction = createDebouncedTask({
    delayMs: evictionDelayMs,
    run: evictNow,
    wanted: () => !closed && !scanning && totalBytes > maxBytes,
    onError: (error) => log.error({ err: error }, 'disk cache eviction failed'),
  });
  const readyPromise = scan();

  async function evictNow(): Promise<void> {
    await readyPromise;
    if (totalBytes <= maxBytes) {
      lastOverBudgetWarning = undefined;
      return;
    }
    const now = clock();
    const candidates: { key: string; entry: IndexEntry; rank: number }[] = [];
    for (const [key, entry] of index) {
      const rank = evictionClass(entry, now);
      if (rank !== undefined && !writing.has(key)) candidates.push({ key, entry, rank });
    }
    candidates.sort((a, b) => a.rank - b.rank || a.entry.atime - b.entry.atime);
    let evicted = 0;
    let evictedBytes = 0;
    for (const { key, entry } of candidates) {
      if (totalBytes <= maxBytes || closed) break;
      // Re-checked after every await: a write may have replaced the entry (then it stays).
      if (index.get(key) !== entry || writing.has(key)) continue;
      const parsed = parseCacheKey(key);
      if (!parsed) continue;
      try {
        await unlink(locate(parsed.kind, parsed.hash).file);
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') {
          log.warn({ err: error, key }, 'could not evict a disk cache file');
          continue;
        }
      }
      if (index.get(key) === entry) {
        drop(key);
        evicted += 1;
        evictedBytes += entry.bytes;
      }
    }
    if (evicted > 0) log.info({ evicted, evictedBytes, bytes: totalBytes, maxBytes }, 'disk cache evicted');
    if (totalBytes > maxBytes) {
      if (lastOverBudgetWarning === undefined || now - lastOverBudgetWarning >= overBudgetWarnIntervalMs) {
        lastOverBudgetWarning = now;
        log.warn(
          { bytes: totalBytes, maxBytes, pinnedBytes: pinnedBytes() },
          'disk cache over budget: paid masters and sources are never evicted; raise CACHE_DISK_MAX_BYTES or add disk',
        );
      }
    } else {
      lastOverBudgetWarning = undefined;
    }
  }


  function pinnedBytes(): number {
    let bytes = 0;
    for (const entry of index.values()) if (isPinned(entry)) bytes += entry.bytes;
    return bytes;
  }

  async function get(key: string): Promise<CacheEntry | undefined> {
    const parsed = parseCacheKey(key);
    if (!parsed) return undefined;
    const { file } = locate(parsed.kind, parsed.hash);
    let frame: Buffer;
    try {
      // One read per hit: open, read and close in one call; the inode is looked up only for the
      // rare file that must be removed.
      frame = await readFile(file);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') log.warn({ err: error, key }, 'could not read a disk cache file');
      return undefined;
    }
    // A file is hashed once per process: entries are written whole under content-addressed keys,
    // so a file that verified stays what it was (a rewrite goes through `set`, which forgets it).
    const checked = verified.has(key);
    const decoded = decodeFrame(frame, { requireChecksum: true, verify: !checked });
    if ('error' in decoded || decoded.entry.meta.kind !== parsed.kind) {
      const reason = 'error' in decoded ? decoded.error : 'kind does not match its folder';
      log.warn({ key, reason, bytes: frame.length }, 'removed a corrupt disk cache file');
      verified.delete(key);
      if (index.has(key)) drop(key);
      const ino = await stat(file).then((s) => s.ino, () => undefined);
      if (ino !== undefined) await removeIfUnchanged(file, ino);
      return undefined;
    }
    if (!checked) verified.set(key, true);
    const now = clock();
    if (isExpired(decoded.entry.meta, now)) {
      verified.delete(key);
      if (index.has(key)) drop(key);
      const ino = await stat(file).then((s) => s.ino, () => undefined);
      if (ino !== undefined) void removeIfUnchanged(file, ino);
      return undefined;
    }
    const known = index.get(key);
    if (known) known.atime = now;
    // Written by another process sharing the directory, or read before the scan reached it.
    else if (!scanning) put(key, indexEntry(decoded.entry.meta, frame.length, now));
    return decoded.entry;
  }

  async function set(key: string, entry: CacheEntry): Promise<void> {
    const parsed = parseCacheKey(key);
    if (!parsed) throw new TypeError(`not a cache key: ${JSON.stringify(key)} (expected <kind>:<64 hex>)`);
    if (entry.meta.kind !== parsed.kind) {
      throw new TypeError(`a ${entry.meta.kind} entry cannot be stored under ${parsed.kind} key ${key}`);
    }
    const { folder, file } = locate(parsed.kind, parsed.hash);
    const header = encodeHeader(entry, { checksum: true });
    const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    writing.set(key, (writing.get(key) ?? 0) + 1);
    try {
      await mkdir(folder, { recursive: true });
      const handle = await open(temp, 'wx');
      try {
        await writeAll(handle, [header, entry.data]);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, file);
      // A new file: its first read hashes it again (what is on the disk is what counts).
      verified.delete(key);
      if (isDurableKind(parsed.kind)) await syncDirectory(folder);
      put(key, indexEntry(entry.meta, header.length + entry.data.length, clock()));
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw new Error(`could not write ${key} to the disk cache`, { cause: error });
    } finally {
      const left = (writing.get(key) ?? 1) - 1;
      if (left === 0) writing.delete(key);
      else writing.set(key, left);
    }
    eviction.schedule();
  }

  async function remove(key: string): Promise<void> {
    const parsed = parseCacheKey(key);
    if (!parsed) return;
    drop(key);
    try {
      await unlink(locate(parsed.kind, parsed.hash).file);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') log.warn({ err: error, key }, 'could not delete a disk cache file');
    }
  }

  return {
    name: 'disk',
    get,
    async has(key) {
      const known = index.get(key);
      if (known) return known.expiresAt === undefined || known.expiresAt >= clock();
      if (!scanning) return false;
      // Until the scan has listed everything, the file itself answers.
      const parsed = parseCacheKey(key);
      return parsed ? stat(locate(parsed.kind, parsed.hash).file).then(() => true, () => false) : false;
    },
    set,
    delete: remove,
    ready: () => readyPromise,
    async idle() {
      await readyPromise;
      await eviction.idle();
    },
    evict: () => readyPromise.then(eviction.runNow),
    stats() {
      const byKind = Object.fromEntries(ENTRY_KINDS.map((k) => [k, { bytes: 0, entries: 0 }])) as Record<EntryKind, DiskKindStats>;
      for (const entry of index.values()) {
        byKind[entry.kind].bytes += entry.bytes;
        byKind[entry.kind].entries += 1;
      }
      return { bytes: totalBytes, entries: index.size, maxBytes, byKind, pinnedBytes: pinnedBytes(), scanning };
    },
    async close() {
      closed = true;
      await readyPromise;
      await eviction.close();
    },
  };
}

/** Makes a rename durable: without it a power cut can lose the directory entry of a new file. */
async function syncDirectory(folder: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(folder, 'r');
    await handle.sync();
  } catch (error) {
    // Some platforms (Windows) cannot open or fsync a directory; the file itself is fsynced.
    if (!['EISDIR', 'EPERM', 'EINVAL', 'EBADF'].includes(errorCode(error) ?? '')) throw error;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
