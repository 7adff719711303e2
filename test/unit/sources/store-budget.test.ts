/**
 * The source store's disk budget (`diskMaxBytes`): the running total and its startup scan, LRU
 * eviction of source bytes (info kept), pins, in-flight puts and gets, and re-uploads. Real files,
 * real sharp; eviction is awaited with `idle()`, never with a sleep.
 */
import { createHash } from 'node:crypto';
import { access, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.js';
import { createSourceStore, type DiskSourceStore, type SourceStoreOptions } from '../../../src/sources/index.js';
import { makeImage } from '../../helpers/images.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let dirs: string[] = [];
let stores: DiskSourceStore[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clarity-source-budget-'));
  dirs.push(dir);
  return dir;
}

function store(dir: string, options: Partial<SourceStoreOptions> = {}): DiskSourceStore {
  const s = createSourceStore({
    dir,
    maxBytes: 1024 * 1024,
    maxPixels: 1_000_000,
    logger: createLogger('silent'),
    // Eviction runs when a test calls idle() or evict(), never on a timer mid-test.
    evictionDelayMs: 3_600_000,
    ...options,
  });
  stores.push(s);
  return s;
}

function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('info', stream), lines };
}

/** Distinct small PNGs: a different seed, different bytes, a different hash. */
function images<const Seeds extends readonly number[]>(...seeds: Seeds): Promise<{ [K in keyof Seeds]: Buffer }> {
  return Promise.all(seeds.map((seed) => makeImage(24, 16, { seed }))) as Promise<{ [K in keyof Seeds]: Buffer }>;
}

const dataFile = (dir: string, hash: string) => join(dir, 'sources', hash.slice(0, 2), hash);
const exists = (path: string) => access(path).then(
  () => true,
  () => false,
);

beforeEach(() => {
  dirs = [];
  stores = [];
});
afterEach(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('running total', () => {
  it('counts the sources already on disk after a restart', async () => {
    const dir = await tempDir();
    const data = await images(1, 2, 3);
    const first = store(dir);
    for (const d of data) await first.put(d);
    await first.close();

    const reopened = store(dir);
    await reopened.ready();
    expect(reopened.stats()).toEqual({
      bytes: data.reduce((sum, d) => sum + d.length, 0),
      entries: 3,
      evicted: 0,
      scanning: false,
    });
  });

  it('follows puts, re-puts of the same bytes and a put that joins the scan', async () => {
    const dir = await tempDir();
    const [a, b] = await images(1, 2);
    const s = store(dir);
    await s.ready();
    expect(s.stats()).toMatchObject({ bytes: 0, entries: 0 });
    await s.put(a);
    await s.put(a);
    expect(s.stats()).toMatchObject({ bytes: a.length, entries: 1 });

    // A put racing the scan is counted once, whoever reaches it first.
    const reopened = store(dir);
    await reopened.put(b);
    await reopened.ready();
    expect(reopened.stats()).toMatchObject({ bytes: a.length + b.length, entries: 2 });
  });

  it('removes a write interrupted long ago, keeps a recent one, and counts neither', async () => {
    const dir = await tempDir();
    const [a] = await images(1);
    const { info } = await store(dir).put(a);
    const shard = join(dir, 'sources', info.hash.slice(0, 2));
    const stale = join(shard, `${info.hash}.1234.aaaaaaaaaaaa.tmp`);
    const fresh = join(shard, `${info.hash}.1234.bbbbbbbbbbbb.tmp`);
    await writeFile(stale, a);
    await writeFile(fresh, a);
    await utimes(stale, new Date('2000-01-01'), new Date('2000-01-01'));

    const reopened = store(dir);
    await reopened.ready();
    expect(await exists(stale)).toBe(false);
    expect(await exists(fresh)).toBe(true);
    expect(reopened.stats()).toMatchObject({ bytes: a.length, entries: 1 });
  });
});

describe('eviction', () => {
  it('evicts the least recently used first: a source read with get survives', async () => {
    const dir = await tempDir();
    const [a, b, c, d] = await images(1, 2, 3, 4);
    // Room for a, c and d exactly: evicting b alone is enough, a would be next.
    const s = store(dir, { diskMaxBytes: a.length + c.length + d.length });
    await s.ready();
    const ha = (await s.put(a)).info.hash;
    const hb = (await s.put(b)).info.hash;
    const hc = (await s.put(c)).info.hash;
    expect((await s.get(ha))?.data).toEqual(a);
    const hd = (await s.put(d)).info.hash;
    expect(s.stats()).toMatchObject({ bytes: a.length + b.length + c.length + d.length, entries: 4, evicted: 0 });

    await s.idle();
    expect(await s.get(hb)).toBeUndefined();
    for (const [hash, bytes] of [[ha, a], [hc, c], [hd, d]] as const) expect((await s.get(hash))?.data).toEqual(bytes);
    expect(s.stats()).toEqual({
      bytes: a.length + c.length + d.length,
      entries: 3,
      evicted: 1,
      maxBytes: a.length + c.length + d.length,
      scanning: false,
    });
  });

  it('orders sources found by the scan by their file times, not by the directory listing', async () => {
    const dir = await tempDir();
    const data = await images(1, 2);
    const first = store(dir);
    for (const d of data) await first.put(d);
    await first.close();
    // The scan meets the files in listing order; make the one listed first the newer one.
    const listed: string[] = [];
    for (const shard of await readdir(join(dir, 'sources'))) {
      for (const name of await readdir(join(dir, 'sources', shard))) if (/^[0-9a-f]{64}$/.test(name)) listed.push(name);
    }
    const [newer, older] = listed as [string, string];
    await utimes(dataFile(dir, newer), new Date('2020-01-01'), new Date('2020-01-01'));
    await utimes(dataFile(dir, older), new Date('2010-01-01'), new Date('2010-01-01'));
    const newerBytes = data.find((d) => sha256(d) === newer) as Buffer;

    // Over budget from the start: the scan schedules eviction by itself.
    const reopened = store(dir, { diskMaxBytes: newerBytes.length });
    await reopened.idle();
    expect(await exists(dataFile(dir, older))).toBe(false);
    expect((await reopened.get(newer))?.data).toEqual(newerBytes);
    expect(reopened.stats()).toMatchObject({ bytes: newerBytes.length, entries: 1, evicted: 1 });
  });

  it.each([
    ['sync', (pinned: Set<string>) => (hash: string) => pinned.has(hash)],
    ['async', (pinned: Set<string>) => async (hash: string) => pinned.has(hash)],
  ])('never evicts a pinned source (%s isPinned)', async (_name, makeIsPinned) => {
    const dir = await tempDir();
    const [a, b, c] = await images(1, 2, 3);
    const pinned = new Set<string>();
    // a is the least recently used, but pinned: b goes instead.
    const s = store(dir, { diskMaxBytes: a.length + c.length, isPinned: makeIsPinned(pinned) });
    const ha = (await s.put(a)).info.hash;
    pinned.add(ha);
    const hb = (await s.put(b)).info.hash;
    const hc = (await s.put(c)).info.hash;
    await s.idle();
    expect((await s.get(ha))?.data).toEqual(a);
    expect(await s.get(hb)).toBeUndefined();
    expect((await s.get(hc))?.data).toEqual(c);
  });

  it('keeps a source whose pin cannot be told', async () => {
    const dir = await tempDir();
    const [a, b] = await images(1, 2);
    const s = store(dir, {
      diskMaxBytes: b.length,
      isPinned: () => {
        throw new Error('journal unreadable');
      },
    });
    const ha = (await s.put(a)).info.hash;
    await s.put(b);
    await s.idle();
    expect((await s.get(ha))?.data).toEqual(a);
  });

  it.each(['put', 'get'] as const)('never evicts a source with a %s in flight', async (op) => {
    const dir = await tempDir();
    const [a, b, c] = await images(1, 2, 3);
    let ha = '';
    let during: Promise<unknown> | undefined;
    // The put or get of a starts while eviction is deciding about a: eviction must see it.
    const s = store(dir, {
      diskMaxBytes: a.length + c.length,
      isPinned: (hash) => {
        if (hash === ha && !during) during = op === 'put' ? s.put(a) : s.get(ha);
        return false;
      },
    });
    ha = (await s.put(a)).info.hash;
    const hb = (await s.put(b)).info.hash;
    await s.put(c);
    await s.idle();
    expect(during).toBeDefined();
    const result = await during;
    if (op === 'put') expect(result).toMatchObject({ created: false });
    else expect(result).toMatchObject({ data: a });
    expect((await s.get(ha))?.data).toEqual(a);
    expect(await s.get(hb)).toBeUndefined();
  });

  it('keeps the source just written when it alone is over budget, and warns', async () => {
    const dir = await tempDir();
    const [a, b] = await images(1, 2);
    const { logger, lines } = captureLogs();
    const s = store(dir, { diskMaxBytes: Math.min(a.length, b.length) - 1, logger });
    const ha = (await s.put(a)).info.hash;
    await s.idle();
    expect((await s.get(ha))?.data).toEqual(a);
    expect(lines.some((l) => l.level === 40 && String(l.msg).startsWith('source store over budget'))).toBe(true);

    // Once another upload is the latest, a is an ordinary candidate again.
    const hb = (await s.put(b)).info.hash;
    await s.idle();
    expect(await s.get(ha)).toBeUndefined();
    expect((await s.get(hb))?.data).toEqual(b);
  });

  it('never evicts without a budget', async () => {
    const dir = await tempDir();
    const data = await images(1, 2, 3, 4, 5);
    const s = store(dir);
    const hashes = [];
    for (const d of data) hashes.push((await s.put(d)).info.hash);
    await s.evict();
    await s.idle();
    for (const [i, hash] of hashes.entries()) expect((await s.get(hash))?.data).toEqual(data[i]);
    expect(s.stats()).toEqual({
      bytes: data.reduce((sum, d) => sum + d.length, 0),
      entries: 5,
      evicted: 0,
      scanning: false,
    });
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses diskMaxBytes %s', async (diskMaxBytes) => {
    const dir = await tempDir();
    expect(() => store(dir, { diskMaxBytes })).toThrow(TypeError);
  });
});

describe('an evicted source', () => {
  async function evictedSource() {
    const dir = await tempDir();
    const [a, b] = await images(1, 2);
    const s = store(dir, { diskMaxBytes: b.length });
    const put = await s.put(a);
    await s.put(b);
    await s.idle();
    return { dir, s, a, b, info: put.info };
  }

  it('keeps its info: head answers, get misses, only the data file is gone', async () => {
    const { dir, s, info } = await evictedSource();
    expect(await s.head(info.hash)).toEqual(info);
    expect(await s.get(info.hash)).toBeUndefined();
    expect((await readdir(join(dir, 'sources', info.hash.slice(0, 2)))).filter((n) => n.startsWith(info.hash))).toEqual([
      `${info.hash}.json`,
    ]);

    // And after a restart: the info still answers, the scan counts it as evicted.
    const reopened = store(dir);
    await reopened.ready();
    expect(reopened.stats()).toMatchObject({ entries: 1, evicted: 1 });
    expect(await reopened.head(info.hash)).toEqual(info);
    expect(await reopened.get(info.hash)).toBeUndefined();
  });

  it('is stored again by a re-upload of its bytes (created: true), then created: false', async () => {
    const { s, a, b, info } = await evictedSource();
    expect(s.stats()).toMatchObject({ bytes: b.length, entries: 1, evicted: 1 });
    expect(await s.put(a)).toEqual({ info, created: true });
    expect((await s.get(info.hash))?.data).toEqual(a);
    expect(s.stats()).toMatchObject({ bytes: a.length + b.length, entries: 2, evicted: 0 });
    expect(await s.put(a)).toEqual({ info, created: false });
  });

  it('is restored from the shared tier by get', async () => {
    const dir = await tempDir();
    const [a, b] = await images(1, 2);
    const map = new Map<string, Parameters<NonNullable<SourceStoreOptions['shared']>['set']>[1]>();
    const shared: NonNullable<SourceStoreOptions['shared']> = {
      name: 'redis',
      get: async (key) => map.get(key),
      set: async (key, entry) => void map.set(key, entry),
      delete: async (key) => void map.delete(key),
    };
    const s = store(dir, { diskMaxBytes: Math.max(a.length, b.length), shared });
    const ha = (await s.put(a)).info.hash;
    const hb = (await s.put(b)).info.hash;
    await s.idle();
    expect(await exists(dataFile(dir, ha))).toBe(false);
    expect((await s.get(ha))?.data).toEqual(a);
    expect(await exists(dataFile(dir, ha))).toBe(true);
    // The restore is the latest write and the latest use: now b is the one over budget.
    await s.idle();
    expect(await exists(dataFile(dir, hb))).toBe(false);
    expect(s.stats()).toMatchObject({ bytes: a.length, entries: 1, evicted: 1 });
  });
});
