/**
 * Upstream submissions per UTC day, kept in a file per day so that a restart does not hand out a
 * fresh budget. One process owns the directory; counts are serialized through one promise chain.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DailyCounter } from './limiter.js';

export function createFileDailyCounter(dir: string): DailyCounter {
  const counts = new Map<string, number>();
  let chain: Promise<unknown> = Promise.resolve();

  async function read(day: string): Promise<number> {
    const known = counts.get(day);
    if (known !== undefined) return known;
    const stored = await readFile(join(dir, `${day}.json`), 'utf8').then(
      (text) => Number((JSON.parse(text) as { submissions?: number }).submissions) || 0,
      () => 0,
    );
    counts.set(day, stored);
    return stored;
  }

  return {
    get: (day) => read(day),
    increment(day) {
      const next = chain.then(async () => {
        const count = (await read(day)) + 1;
        counts.set(day, count);
        await mkdir(dir, { recursive: true });
        const file = join(dir, `${day}.json`);
        await writeFile(`${file}.tmp`, JSON.stringify({ day, submissions: count }));
        await rename(`${file}.tmp`, file);
        return count;
      });
      chain = next.catch(() => undefined);
      return next;
    },
  };
}
