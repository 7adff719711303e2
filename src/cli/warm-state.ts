/**
 * The resume file of `clarity-cdn warm`: one line per finished item, appended as each finishes, so
 * a run stopped anywhere (Ctrl-C, a crash, a closed laptop) loses at most the items in flight.
 *
 *   # clarity-cdn warm state: <key> <outcome> <job id> <line>
 *   3f7a…c2 done 9b1e…04 12
 *
 * `key` is the sha256 of the normalised input line (`warm-input.ts`), so an edited file still
 * skips the lines that did not change, wherever they moved. Only successes are recorded (`done`,
 * `cached`): a failed item is tried again by the next run. A torn last line (a crash mid-write)
 * does not start with a whole key and is ignored. Appends are synchronous and not fsynced: an
 * item lost from the file is only submitted again, and the server answers it from its cache.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { UsageError } from './usage.js';

const HEADER = '# clarity-cdn warm state: <key> <outcome> <job id> <line>\n';
const RECORD = /^([0-9a-f]{64}) /;

export interface WarmState {
  readonly path: string;
  has(key: string): boolean;
  /** Appends one finished item. */
  record(key: string, outcome: 'done' | 'cached', id: string, line: number): void;
}

export function openWarmState(path: string): WarmState {
  const keys = new Set<string>();
  let exists = true;
  let broken = false;
  try {
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      const match = RECORD.exec(line);
      if (match) keys.add(match[1] as string);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UsageError(`cannot read the state file ${path}: ${(error as Error).message}`);
    }
    exists = false;
  }
  return {
    path,
    has: (key) => keys.has(key),
    record(key, outcome, id, line) {
      keys.add(key);
      if (broken) return;
      const text = `${key} ${outcome} ${id} ${line}\n`;
      try {
        appendFileSync(path, exists ? text : HEADER + text);
        exists = true;
      } catch (error) {
        // The warming itself is fine; only a later resume would redo (cheaply: cached) work.
        broken = true;
        process.stderr.write(`clarity-cdn: cannot write the state file ${path} (${(error as Error).message}); this run will not be resumable\n`);
      }
    },
  };
}
