/**
 * What the commands build in-process (without `--server`): a logger that keeps stdout for the
 * command's own output, and the source store on `CACHE_DIR`, the same directory and limits as the
 * server's, so what one registers the other finds.
 */
import { join } from 'node:path';
import type { Config } from '../config.js';
import { createDiskJournal } from '../engines/segmind/index.js';
import { createLogger, type Logger } from '../logger.js';
import { createGuardedAgent } from '../security/index.js';
import { createOriginFetcher, createOriginSources, createSourceStore, type DiskSourceStore, type SourceInfo } from '../sources/index.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * Logs on stderr (stdout is the command's answer), at `warn` unless `LOG_LEVEL` is quieter, or
 * at `level` when given: a command's info lines (scans, jobs finishing) would drown its output.
 */
export function cliLogger(config: Config, level?: string): Logger {
  const quietest = LEVELS.indexOf(config.LOG_LEVEL) > LEVELS.indexOf('warn') ? config.LOG_LEVEL : 'warn';
  return createLogger(level ?? quietest, process.stderr);
}

/** Sources a journaled upstream job still needs: never evicted (as the server decides). */
export async function journaledSources(config: Config): Promise<(hash: string) => boolean> {
  const entries = await createDiskJournal(join(config.CACHE_DIR, 'journal')).list();
  const pinned = new Set(entries.flatMap((e) => e.sources ?? []));
  return (hash) => pinned.has(hash);
}

/**
 * The source store on `CACHE_DIR`. `budget`: with `SOURCE_DISK_MAX_BYTES` and the journal's
 * pins, as the server runs it (for `cache prune`); without, it never evicts, so a command that
 * only registers a source leaves eviction to the server that owns the directory.
 */
export async function openSourceStore(config: Config, logger: Logger, options: { budget?: boolean } = {}): Promise<DiskSourceStore> {
  return createSourceStore({
    dir: config.CACHE_DIR,
    maxBytes: config.SOURCE_MAX_BYTES,
    maxPixels: config.SOURCE_MAX_PIXELS,
    ...(options.budget ? { diskMaxBytes: config.SOURCE_DISK_MAX_BYTES, isPinned: await journaledSources(config) } : {}),
    logger,
  });
}

/** Fetches an origin image into `store` under the same SSRF guard and limits as the server. */
export async function registerOriginUrl(config: Config, store: DiskSourceStore, logger: Logger, url: string): Promise<{ info: SourceInfo; created: boolean }> {
  const dispatcher = createGuardedAgent({ allowPrivate: config.SOURCE_ALLOW_PRIVATE });
  try {
    const origins = createOriginSources({
      fetcher: createOriginFetcher({
        dispatcher,
        ...(config.SOURCE_ALLOWED_HOSTS ? { allowedHosts: config.SOURCE_ALLOWED_HOSTS } : {}),
        maxBytes: config.SOURCE_MAX_BYTES,
        timeoutMs: config.SOURCE_FETCH_TIMEOUT_MS,
      }),
      store,
      ttlSeconds: config.SOURCE_URL_TTL_SECONDS,
      logger,
    });
    return await origins.resolve(url);
  } finally {
    await dispatcher.close();
  }
}
