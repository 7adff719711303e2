/**
 * The job journal: every upstream job that was accepted (and billed) but whose result is not yet
 * stored, keyed by the master key. Written right after the submit answer and before the first
 * poll, deleted once the pipeline has stored the result; a restart finds the entry and resumes
 * polling the same job instead of paying for a new one.
 *
 * Small interface on purpose (get/put/delete/list), so a Redis journal can join the disk one
 * through `createCompositeJournal` without the engine knowing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClarityParams } from '../../params/types.js';

export interface JournalEntry {
  /** The master key the job will produce. */
  masterKey: string;
  /** The upstream's `request_id`. */
  requestId: string;
  /** Absolute URLs exactly as the upstream returned them: never rebuilt from the id. */
  statusUrl: string;
  responseUrl: string;
  /** When the submit was accepted, epoch ms. Results are kept upstream ~1 hour. */
  submittedAt: number;
  /**
   * Source hashes the job was made from (image, mask): the source store keeps their bytes while
   * the job is journaled, since a resubmit (404 on resume) or an upstream fetching
   * `/sources/<hash>` needs them. Absent in entries written before it existed.
   */
  sources?: string[];
  /** The payload's fields, so a restart can finish the job (and resubmit it if the upstream forgot it). */
  params?: ClarityParams;
}

export interface JobJournal {
  /** The entry for `masterKey`, or undefined. Throws when the journal cannot be read: the caller
   *  must not guess, since guessing "no entry" may pay for the job again. */
  get(masterKey: string): Promise<JournalEntry | undefined>;
  /** Records (or replaces) the entry durably before resolving. */
  put(masterKey: string, entry: JournalEntry): Promise<void>;
  /** Removes the entry; no error when there is none. */
  delete(masterKey: string): Promise<void>;
  /** Every entry, e.g. to resume all pending jobs at start. Unreadable entries are skipped. */
  list(): Promise<JournalEntry[]>;
}

function isEntry(value: unknown): value is JournalEntry {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.masterKey === 'string' &&
    typeof v.requestId === 'string' &&
    typeof v.statusUrl === 'string' &&
    typeof v.responseUrl === 'string' &&
    typeof v.submittedAt === 'number' &&
    (v.sources === undefined || (Array.isArray(v.sources) && v.sources.every((h) => typeof h === 'string'))) &&
    (v.params === undefined || (typeof v.params === 'object' && v.params !== null))
  );
}

/** A file name for a key: the key itself when it is path-safe (a sha256 hex always is), else its hash. */
function fileName(masterKey: string): string {
  const safe = /^[A-Za-z0-9_-]{1,128}$/.test(masterKey) ? masterKey : createHash('sha256').update(masterKey).digest('hex');
  return `${safe}.json`;
}

const isNotFound = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

/**
 * One small JSON file per master key in `dir`. Writes go to a temporary file that is fsynced, then
 * renamed over the entry, then the directory is fsynced: after a crash the entry is either the old
 * one or the new one, never a torn file, and a put that resolved survives a power cut.
 */
export function createDiskJournal(dir: string): JobJournal {
  let ready: Promise<unknown> | undefined;
  const ensureDir = () => (ready ??= mkdir(dir, { recursive: true }).catch((e: unknown) => {
    ready = undefined;
    throw e;
  }));

  async function syncDir(): Promise<void> {
    // Makes the rename itself durable. Some platforms cannot open a directory for fsync: then the
    // file's own fsync is all there is.
    let handle;
    try {
      handle = await open(dir, 'r');
      await handle.sync();
    } catch {
      /* best effort */
    } finally {
      await handle?.close();
    }
  }

  async function readEntry(path: string): Promise<JournalEntry | undefined> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    try {
      const parsed: unknown = JSON.parse(text);
      return isEntry(parsed) ? parsed : undefined;
    } catch {
      // Cannot happen through put (atomic), only by hand: an unreadable entry is no entry.
      return undefined;
    }
  }

  return {
    async get(masterKey) {
      const entry = await readEntry(join(dir, fileName(masterKey)));
      return entry && entry.masterKey === masterKey ? entry : undefined;
    },
    async put(masterKey, entry) {
      await ensureDir();
      const target = join(dir, fileName(masterKey));
      const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(JSON.stringify({ ...entry, masterKey }));
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        await rename(tmp, target);
      } catch (error) {
        await rm(tmp, { force: true });
        throw error;
      }
      await syncDir();
    },
    async delete(masterKey) {
      await rm(join(dir, fileName(masterKey)), { force: true });
      await syncDir();
    },
    async list() {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (error) {
        if (isNotFound(error)) return [];
        throw error;
      }
      const entries = await Promise.all(
        names.filter((n) => n.endsWith('.json')).map((n) => readEntry(join(dir, n)).catch(() => undefined)),
      );
      return entries.filter((e): e is JournalEntry => e !== undefined);
    },
  };
}

/** The first rejection when every one failed; otherwise nothing. */
function throwIfAllFailed(results: PromiseSettledResult<unknown>[]): void {
  if (results.length > 0 && results.every((r) => r.status === 'rejected')) {
    throw (results[0] as PromiseRejectedResult).reason;
  }
}

/**
 * Several journals as one (disk + Redis): writes and deletes go to all of them and succeed when at
 * least one did, since one durable copy is enough to resume; reads take the first journal that has
 * the entry, in the order given (put the durable one first). A read fails only when no journal
 * answered, for the same reason `get` throws at all: "unknown" must not pass for "absent".
 */
export function createCompositeJournal(journals: readonly JobJournal[]): JobJournal {
  if (journals.length === 0) throw new TypeError('createCompositeJournal: expected at least one journal');
  return {
    async get(masterKey) {
      let firstError: unknown;
      let answered = false;
      for (const journal of journals) {
        try {
          const entry = await journal.get(masterKey);
          answered = true;
          if (entry) return entry;
        } catch (error) {
          firstError ??= error;
        }
      }
      if (!answered) throw firstError;
      return undefined;
    },
    async put(masterKey, entry) {
      throwIfAllFailed(await Promise.allSettled(journals.map((j) => j.put(masterKey, entry))));
    },
    async delete(masterKey) {
      throwIfAllFailed(await Promise.allSettled(journals.map((j) => j.delete(masterKey))));
    },
    async list() {
      const results = await Promise.allSettled(journals.map((j) => j.list()));
      throwIfAllFailed(results);
      const byKey = new Map<string, JournalEntry>();
      for (const r of results) {
        if (r.status !== 'fulfilled') continue;
        for (const entry of r.value) if (!byKey.has(entry.masterKey)) byKey.set(entry.masterKey, entry);
      }
      return [...byKey.values()];
    },
  };
}
