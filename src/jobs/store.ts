/**
 * Job records on disk (`<CACHE_DIR>/jobs/<id>.json`, written atomically) and in memory: jobs
 * survive a restart, and finished ones are dropped after `retentionMs`.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import type { Logger } from '../logger.js';
import type { JobRecord } from './types.js';

const ID = /^[0-9a-f]{64}$/;

export interface JobStore {
  get(id: string): JobRecord | undefined;
  /** Writes the record durably (memory at once, then disk). */
  put(record: JobRecord): Promise<void>;
  all(): JobRecord[];
  /** Drops finished jobs older than the retention; returns how many. */
  prune(): Promise<number>;
}

export async function openJobStore(options: { dir: string; retentionMs: number; now?: () => number; logger: Logger }): Promise<JobStore> {
  const { dir, logger } = options;
  const now = options.now ?? Date.now;
  const records = new Map<string, JobRecord>();
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) {
    const id = name.replace(/\.json$/, '');
    if (!ID.test(id) || !name.endsWith('.json')) continue;
    try {
      const record = JSON.parse(await readFile(join(dir, name), 'utf8')) as JobRecord;
      if (record.id === id) records.set(id, record);
    } catch (error) {
      // Writes are atomic: only a hand edit gets here. That job is forgotten, not the others.
      logger.warn({ err: error, id }, 'unreadable job record skipped');
    }
  }
  // One writer per record at a time, in order: a slow disk must not let an older state land last.
  const writes = new Map<string, Promise<void>>();

  const store: JobStore = {
    get: (id) => records.get(id),
    all: () => [...records.values()],
    put(record) {
      records.set(record.id, record);
      const text = JSON.stringify(record);
      const previous = writes.get(record.id) ?? Promise.resolve();
      const write = previous.catch(() => undefined).then(() => writeFileAtomic(join(dir, `${record.id}.json`), text));
      writes.set(record.id, write);
      return write.finally(() => {
        if (writes.get(record.id) === write) writes.delete(record.id);
      });
    },
    async prune() {
      const cutoff = now() - options.retentionMs;
      let dropped = 0;
      for (const record of records.values()) {
        if (record.state === 'ACTIVE' || (record.completedAt ?? record.updatedAt) > cutoff) continue;
        records.delete(record.id);
        await rm(join(dir, `${record.id}.json`), { force: true });
        dropped += 1;
      }
      return dropped;
    },
  };
  return store;
}
