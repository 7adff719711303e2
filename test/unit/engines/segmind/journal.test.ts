import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createCompositeJournal,
  createDiskJournal,
  type JobJournal,
  type JournalEntry,
} from '../../../../src/engines/segmind/journal.js';

const KEY_A = 'a'.repeat(64);
const KEY_B = 'b'.repeat(64);
const entry = (masterKey: string, requestId = 'req-1'): JournalEntry => ({
  masterKey,
  requestId,
  statusUrl: `https://api.segmind.com/v2/requests/${requestId}/status`,
  responseUrl: `https://api.segmind.com/v2/requests/${requestId}`,
  submittedAt: 1_790_000_000_000,
});

function memoryJournal(): JobJournal & { map: Map<string, JournalEntry> } {
  const map = new Map<string, JournalEntry>();
  return {
    map,
    get: async (k) => map.get(k),
    put: async (k, e) => void map.set(k, e),
    delete: async (k) => void map.delete(k),
    list: async () => [...map.values()],
  };
}

function brokenJournal(): JobJournal {
  const fail = async (): Promise<never> => {
    throw new Error('redis down');
  };
  return { get: fail, put: fail, delete: fail, list: fail };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clarity-journal-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createDiskJournal', () => {
  it('puts, gets, lists and deletes one small JSON file per master key', async () => {
    const journal = createDiskJournal(join(dir, 'journal'));
    expect(await journal.get(KEY_A)).toBeUndefined();
    expect(await journal.list()).toEqual([]);
    await journal.put(KEY_A, entry(KEY_A));
    await journal.put(KEY_B, entry(KEY_B, 'req-2'));
    expect(await journal.get(KEY_A)).toEqual(entry(KEY_A));
    expect(await readdir(join(dir, 'journal'))).toEqual([`${KEY_A}.json`, `${KEY_B}.json`].sort());
    expect(JSON.parse(await readFile(join(dir, 'journal', `${KEY_A}.json`), 'utf8'))).toEqual(entry(KEY_A));
    expect((await journal.list()).map((e) => e.requestId).sort()).toEqual(['req-1', 'req-2']);
    await journal.delete(KEY_A);
    await journal.delete(KEY_A); // absent: no error
    expect(await journal.get(KEY_A)).toBeUndefined();
    expect(await journal.list()).toEqual([entry(KEY_B, 'req-2')]);
  });

  it('survives a new instance (a restart) on the same directory', async () => {
    await createDiskJournal(dir).put(KEY_A, entry(KEY_A));
    expect(await createDiskJournal(dir).get(KEY_A)).toEqual(entry(KEY_A));
  });

  it('replaces an entry atomically and leaves no temporary file', async () => {
    const journal = createDiskJournal(dir);
    await journal.put(KEY_A, entry(KEY_A, 'old'));
    await journal.put(KEY_A, entry(KEY_A, 'new'));
    expect((await journal.get(KEY_A))?.requestId).toBe('new');
    expect(await readdir(dir)).toEqual([`${KEY_A}.json`]);
  });

  it('treats a torn or foreign file as no entry, and list skips it', async () => {
    const journal = createDiskJournal(dir);
    await writeFile(join(dir, `${KEY_A}.json`), '{"masterKey":"aaa');
    await writeFile(join(dir, `${KEY_B}.json`), '{"hello":1}');
    expect(await journal.get(KEY_A)).toBeUndefined();
    expect(await journal.get(KEY_B)).toBeUndefined();
    expect(await journal.list()).toEqual([]);
  });

  it('files a key that is not path-safe under its hash', async () => {
    const journal = createDiskJournal(dir);
    const key = '../../etc/passwd';
    await journal.put(key, entry(key));
    expect(await journal.get(key)).toEqual(entry(key));
    const [name] = await readdir(dir);
    expect(name).toMatch(/^[0-9a-f]{64}\.json$/);
  });

  it('fails loudly when the journal cannot be read, instead of answering "no entry"', async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    await expect(createDiskJournal(file).get(KEY_A)).rejects.toThrow();
  });
});

describe('createCompositeJournal', () => {
  it('writes to every journal and reads the first hit, in order', async () => {
    const first = memoryJournal();
    const second = memoryJournal();
    const journal = createCompositeJournal([first, second]);
    await journal.put(KEY_A, entry(KEY_A));
    expect(first.map.get(KEY_A)).toEqual(entry(KEY_A));
    expect(second.map.get(KEY_A)).toEqual(entry(KEY_A));
    second.map.set(KEY_B, entry(KEY_B, 'only-in-second'));
    expect((await journal.get(KEY_B))?.requestId).toBe('only-in-second');
    first.map.set(KEY_B, entry(KEY_B, 'in-first'));
    expect((await journal.get(KEY_B))?.requestId).toBe('in-first');
    expect((await journal.list()).map((e) => e.requestId).sort()).toEqual(['in-first', 'req-1']);
    await journal.delete(KEY_A);
    expect(first.map.has(KEY_A) || second.map.has(KEY_A)).toBe(false);
  });

  it('succeeds while one journal is down (one durable copy is enough), fails when all are', async () => {
    const disk = createDiskJournal(dir);
    const journal = createCompositeJournal([brokenJournal(), disk]);
    await journal.put(KEY_A, entry(KEY_A));
    expect(await journal.get(KEY_A)).toEqual(entry(KEY_A));
    expect(await journal.list()).toEqual([entry(KEY_A)]);
    await journal.delete(KEY_A);
    expect(await disk.get(KEY_A)).toBeUndefined();

    const down = createCompositeJournal([brokenJournal(), brokenJournal()]);
    await expect(down.put(KEY_A, entry(KEY_A))).rejects.toThrow('redis down');
    await expect(down.get(KEY_A)).rejects.toThrow('redis down');
  });

  it('needs at least one journal', () => {
    expect(() => createCompositeJournal([])).toThrow(TypeError);
  });
});
