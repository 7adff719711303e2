/**
 * The segmind job journal mirrored into a cache tier (Redis), so that an instance other than the
 * one that submitted a job can resume it instead of paying again. The disk journal stays the
 * durable one; this is the shared copy, best-effort, expiring with the upstream's own copy.
 */
import type { CacheTier } from '../cache/types.js';
import type { JobJournal, JournalEntry } from '../engines/segmind/index.js';

/** The upstream keeps a job's result an hour; a journal entry is worth nothing after that. */
const JOB_TTL_MS = 2 * 3600_000;

export function createTierJournal(tier: CacheTier): JobJournal {
  const key = (masterKey: string) => `job:${masterKey}`;
  return {
    async get(masterKey) {
      const hit = await tier.get(key(masterKey));
      if (!hit) return undefined;
      try {
        return JSON.parse(hit.data.toString('utf8')) as JournalEntry;
      } catch {
        return undefined;
      }
    },
    async put(masterKey, entry) {
      await tier.set(key(masterKey), {
        data: Buffer.from(JSON.stringify(entry)),
        meta: { kind: 'job', contentType: 'application/json', expiresAt: entry.submittedAt + JOB_TTL_MS },
      });
    },
    delete: (masterKey) => tier.delete(key(masterKey)),
    // A tier cannot be listed; the disk journal lists this instance's own jobs.
    list: async () => [],
  };
}
