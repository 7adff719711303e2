/**
 * `clarity-cdn cache stats` and `cache prune`: the disk tier, the source store and the job records
 * under `CACHE_DIR`, opened in-process (no server needed, nothing resumed). `stats` only counts;
 * `prune` runs now what a server runs when a write crosses a budget (the disk tier down to
 * `CACHE_DISK_MAX_BYTES`, sources down to `SOURCE_DISK_MAX_BYTES`) and drops job records finished
 * more than `JOBS_RETENTION_SECONDS` ago. Eviction keeps what it always keeps: paid masters, and
 * sources a journaled upstream job needs.
 *
 * Safe beside a running server on the same directory: files are removed with the same checks;
 * that server's own size totals are its view and catch up at its next start.
 */
import { join } from 'node:path';
import { createDiskTier, ENTRY_KINDS, type DiskStats, type DiskTier, type EntryKind } from '../cache/index.js';
import { loadConfig, type Config } from '../config.js';
import { openJobStore, type JobStore } from '../jobs/index.js';
import type { Logger } from '../logger.js';
import type { DiskSourceStore, SourceStoreStats } from '../sources/index.js';
import { cliLogger, openSourceStore } from './local.js';

export interface CacheOptions {
  json?: boolean;
}

interface Parts {
  disk: DiskTier;
  sources: DiskSourceStore;
  jobs: JobStore;
  dirs: { disk: string; sources: string; jobs: string };
  close(): Promise<void>;
}

/** Everything opened and counted (the startup scans finished). */
async function open(config: Config, logger: Logger, options: { budget: boolean }): Promise<Parts> {
  const dirs = { disk: join(config.CACHE_DIR, 'cache'), sources: join(config.CACHE_DIR, 'sources'), jobs: join(config.CACHE_DIR, 'jobs') };
  const disk = createDiskTier({ dir: dirs.disk, maxBytes: config.CACHE_DISK_MAX_BYTES, logger });
  const sources = await openSourceStore(config, logger, { budget: options.budget });
  const jobs = await openJobStore({ dir: dirs.jobs, retentionMs: config.JOBS_RETENTION_SECONDS * 1000, logger });
  await Promise.all([disk.ready(), sources.ready()]);
  return {
    disk,
    sources,
    jobs,
    dirs,
    // Closing cancels an eviction the scans may have scheduled: `stats` must not remove anything.
    close: async () => {
      await Promise.all([disk.close(), sources.close()]);
    },
  };
}

/** `1536` → `1.5 KiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const out = (text: string) => process.stdout.write(`${text}\n`);

function jobCounts(jobs: JobStore) {
  const all = jobs.all();
  return {
    records: all.length,
    active: all.filter((r) => r.state === 'ACTIVE').length,
    completed: all.filter((r) => r.state === 'COMPLETED').length,
    failed: all.filter((r) => r.state === 'FAILED').length,
  };
}

const kindsJson = (stats: DiskStats) => Object.fromEntries(ENTRY_KINDS.map((k) => [k, { entries: stats.byKind[k].entries, bytes: stats.byKind[k].bytes }]));

export async function cacheStats(options: CacheOptions): Promise<void> {
  const config = loadConfig(process.env);
  const parts = await open(config, cliLogger(config), { budget: false });
  try {
    const disk = parts.disk.stats();
    const sources = parts.sources.stats();
    const jobs = jobCounts(parts.jobs);
    if (options.json) {
      out(
        JSON.stringify({
          cache_dir: config.CACHE_DIR,
          disk: { dir: parts.dirs.disk, entries: disk.entries, bytes: disk.bytes, max_bytes: disk.maxBytes, pinned_bytes: disk.pinnedBytes, by_kind: kindsJson(disk) },
          sources: { dir: parts.dirs.sources, entries: sources.entries, bytes: sources.bytes, evicted: sources.evicted, max_bytes: config.SOURCE_DISK_MAX_BYTES },
          jobs: { dir: parts.dirs.jobs, ...jobs },
        }),
      );
      return;
    }
    const row = (name: string, entries: number | string, bytes: string, note = '') =>
      out(`${name.padEnd(12)}${String(entries).padStart(10)}${bytes.padStart(12)}${note ? `   ${note}` : ''}`);
    out(`CACHE_DIR ${config.CACHE_DIR}`);
    row('', 'entries', 'bytes');
    const used = ((disk.bytes / disk.maxBytes) * 100).toFixed(1);
    row('disk cache', disk.entries, formatBytes(disk.bytes), `${used}% of CACHE_DISK_MAX_BYTES=${formatBytes(disk.maxBytes)}`);
    for (const kind of ENTRY_KINDS) row(`  ${kind}`, disk.byKind[kind].entries, formatBytes(disk.byKind[kind].bytes));
    row('  pinned', '', formatBytes(disk.pinnedBytes), 'paid masters, sources, jobs: never evicted');
    row('sources', sources.entries, formatBytes(sources.bytes), `of SOURCE_DISK_MAX_BYTES=${formatBytes(config.SOURCE_DISK_MAX_BYTES)}; ${sources.evicted} evicted (info kept)`);
    row('jobs', jobs.records, '', `${jobs.active} active, ${jobs.completed} completed, ${jobs.failed} failed`);
  } finally {
    await parts.close();
  }
}

function removedByKind(before: DiskStats, after: DiskStats): Partial<Record<EntryKind, { entries: number; bytes: number }>> {
  const removed: Partial<Record<EntryKind, { entries: number; bytes: number }>> = {};
  for (const kind of ENTRY_KINDS) {
    const entries = before.byKind[kind].entries - after.byKind[kind].entries;
    if (entries > 0) removed[kind] = { entries, bytes: before.byKind[kind].bytes - after.byKind[kind].bytes };
  }
  return removed;
}

export async function cachePrune(options: CacheOptions): Promise<void> {
  const config = loadConfig(process.env);
  const parts = await open(config, cliLogger(config), { budget: true });
  try {
    const before: { disk: DiskStats; sources: SourceStoreStats } = { disk: parts.disk.stats(), sources: parts.sources.stats() };
    await parts.disk.evict();
    await parts.sources.evict();
    const dropped = await parts.jobs.prune();
    const disk = parts.disk.stats();
    const sources = parts.sources.stats();
    const removed = removedByKind(before.disk, disk);
    const summary = {
      disk: {
        removed_entries: before.disk.entries - disk.entries,
        removed_bytes: before.disk.bytes - disk.bytes,
        removed_by_kind: removed,
        entries: disk.entries,
        bytes: disk.bytes,
        max_bytes: disk.maxBytes,
        pinned_bytes: disk.pinnedBytes,
      },
      sources: {
        evicted: before.sources.entries - sources.entries,
        evicted_bytes: before.sources.bytes - sources.bytes,
        entries: sources.entries,
        bytes: sources.bytes,
        max_bytes: config.SOURCE_DISK_MAX_BYTES,
      },
      jobs: { dropped, retention_seconds: config.JOBS_RETENTION_SECONDS },
    };
    if (options.json) {
      out(JSON.stringify(summary));
      return;
    }
    const kinds = Object.entries(removed).map(([kind, r]) => `${r.entries} ${kind}`).join(', ');
    const over = disk.bytes > disk.maxBytes ? ` (still over: ${formatBytes(disk.pinnedBytes)} pinned, paid masters are never evicted)` : '';
    out(`disk cache: removed ${summary.disk.removed_entries} entries (${formatBytes(summary.disk.removed_bytes)})${kinds ? `: ${kinds}` : ''}; now ${formatBytes(disk.bytes)} of ${formatBytes(disk.maxBytes)}${over}`);
    out(`sources: evicted the bytes of ${summary.sources.evicted} (${formatBytes(summary.sources.evicted_bytes)}; their info is kept); now ${formatBytes(sources.bytes)} of ${formatBytes(config.SOURCE_DISK_MAX_BYTES)}`);
    out(`jobs: dropped ${dropped} records finished more than JOBS_RETENTION_SECONDS=${config.JOBS_RETENTION_SECONDS} ago`);
  } finally {
    await parts.close();
  }
}
