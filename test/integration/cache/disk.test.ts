/**
 * The disk tier on a real filesystem: corruption is a logged miss and the file goes; a crashed
 * write is never visible; eviction takes variants before unpaid masters and never a paid master;
 * a restart finds every entry and the same total.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDiskTier, type DiskTier, type DiskTierOptions } from '../../../src/cache/disk.js';
import { cacheKey, type CacheEntry, type EntryKind, type EntryMeta } from '../../../src/cache/types.js';
import { captureLogger, WARN, type CapturedLogger } from '../../contract/capture-logger.js';

const hex = () => randomBytes(32).toString('hex');
const entry = (bytes: number, meta: Partial<EntryMeta> = {}): CacheEntry => ({
  data: randomBytes(bytes),
  meta: { kind: 'master', contentType: 'image/png', ...meta },
});
/** `<dir>/<kind>/<ab>/<hex>` */
const fileOf = (dir: string, key: string) => {
  const [kind, h] = key.split(':') as [EntryKind, string];
  return join(dir, kind, h.slice(0, 2), h);
};

async function listAll(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const item of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (item.isFile()) out.push(join(item.parentPath, item.name));
  }
  return out;
}

describe('disk tier', () => {
  let dir: string;
  let logs: CapturedLogger;
  let now: number;
  const tiers: DiskTier[] = [];
  const open = async (options: Partial<DiskTierOptions> = {}) => {
    const tier = createDiskTier({ dir, maxBytes: 1 << 30, logger: logs.logger, clock: () => now, ...options });
    tiers.push(tier);
    await tier.ready();
    return tier;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clarity-disk-'));
    logs = captureLogger();
    now = 1_700_000_000_000;
  });
  afterEach(async () => {
    await Promise.all(tiers.splice(0).map((t) => t.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('files entries under <kind>/<first 2 hex>/<hex>, with no temp file left behind', async () => {
    const tier = await open();
    const key = cacheKey('variant', hex());
    await tier.set(key, entry(100, { kind: 'variant' }));
    expect(await listAll(dir)).toEqual([fileOf(dir, key)]);
  });

  describe('a damaged file is a miss, is removed and is logged at warn', () => {
    const damage: [string, (file: string) => Promise<void>][] = [
      [
        'one flipped data byte',
        async (file) => {
          const bytes = await readFile(file);
          bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0x01;
          await writeFile(file, bytes);
        },
      ],
      [
        'a flipped header byte',
        async (file) => {
          const bytes = await readFile(file);
          bytes[12] = (bytes[12] ?? 0) ^ 0xff;
          await writeFile(file, bytes);
        },
      ],
      ['truncation', async (file) => truncate(file, (await stat(file)).size - 100)],
      ['truncation to nothing', async (file) => truncate(file, 0)],
      ['garbage', async (file) => writeFile(file, randomBytes(5000))],
    ];

    it.each(damage)('%s', async (_name, harm) => {
      const tier = await open();
      const key = cacheKey('master', hex());
      await tier.set(key, entry(4000, { paid: true }));
      await harm(fileOf(dir, key));
      await expect(tier.get(key)).resolves.toBeUndefined();
      await expect(stat(fileOf(dir, key))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(logs.find('corrupt disk cache file', WARN)).toHaveLength(1);
      expect(tier.stats().entries).toBe(0);
    });

    it('garbage found by the startup scan is removed too', async () => {
      const key = cacheKey('variant', hex());
      await mkdir(join(dir, 'variant', key.slice(8, 10)), { recursive: true });
      await writeFile(fileOf(dir, key), 'not a cache file');
      const tier = await open();
      expect(tier.stats().entries).toBe(0);
      await expect(stat(fileOf(dir, key))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(logs.find('corrupt disk cache file', WARN)).toHaveLength(1);
    });
  });

  describe('atomic writes', () => {
    it('never shows a temp file: a crashed write is ignored, and removed at startup once stale', async () => {
      const good = cacheKey('master', hex());
      const first = await open();
      await first.set(good, entry(1000, { paid: true }));
      const bytes = first.stats().bytes;
      await first.close();

      // What a crash mid-write leaves: a partial temp file next to where the entry would go.
      const crashed = hex();
      const folder = join(dir, 'master', crashed.slice(0, 2));
      await mkdir(folder, { recursive: true });
      const staleTemp = join(folder, `${crashed}.4242.abcdef.tmp`);
      const freshTemp = join(folder, `${crashed}.4243.abcdef.tmp`);
      await writeFile(staleTemp, randomBytes(700));
      await writeFile(freshTemp, randomBytes(700));
      const anHourAgo = new Date(Date.now() - 3_600_000);
      await utimes(staleTemp, anHourAgo, anHourAgo);

      const second = await open();
      expect(await second.get(cacheKey('master', crashed))).toBeUndefined();
      expect(second.stats()).toMatchObject({ entries: 1, bytes });
      await expect(stat(staleTemp)).rejects.toMatchObject({ code: 'ENOENT' });
      // A recent one may be another process's write in flight: left alone, and never counted.
      await expect(stat(freshTemp)).resolves.toBeDefined();
      expect((await second.get(good))?.meta.paid).toBe(true);
    });

    it('a failed write throws (the disk is where a master becomes durable) and leaves nothing', async () => {
      const tier = await open();
      // A file where the kind folder should be: mkdir fails, as on a broken or full disk.
      await writeFile(join(dir, 'master'), 'in the way');
      const key = cacheKey('master', hex());
      await expect(tier.set(key, entry(100, { paid: true }))).rejects.toThrow(/could not write master:/);
      await expect(tier.get(key)).resolves.toBeUndefined();
      expect(tier.stats().entries).toBe(0);
    });

    it('refuses a key that is not <kind>:<64 hex>, or an entry of another kind', async () => {
      const tier = await open();
      await expect(tier.set('master:../../x', entry(1))).rejects.toThrow(TypeError);
      await expect(tier.set(cacheKey('variant', hex()), entry(1))).rejects.toThrow(/cannot be stored/);
    });
  });

  describe('eviction', () => {
    /** Bytes an entry of `data` bytes costs on disk, measured. */
    async function sizeOf(bytes: number, meta: Partial<EntryMeta>): Promise<number> {
      const probe = createDiskTier({ dir: join(dir, 'probe'), maxBytes: 1 << 30, logger: logs.logger });
      await probe.ready();
      await probe.set(cacheKey(meta.kind ?? 'master', hex()), entry(bytes, meta));
      const size = probe.stats().bytes;
      await probe.close();
      await rm(join(dir, 'probe'), { recursive: true });
      return size;
    }

    it('takes variants before unpaid masters, even when the master is older', async () => {
      const unit = await sizeOf(10_000, { kind: 'variant' });
      const tier = await open({ maxBytes: unit * 2 + 100 });
      const unpaid = cacheKey('master', hex());
      const variants = [cacheKey('variant', hex()), cacheKey('variant', hex())];
      await tier.set(unpaid, entry(10_000, { paid: false }));
      now += 1000;
      for (const v of variants) await tier.set(v, entry(10_000, { kind: 'variant' }));
      await tier.idle();
      expect(await tier.get(unpaid)).toBeDefined();
      expect(await tier.get(variants[0] as string)).toBeUndefined();
      expect(await tier.get(variants[1] as string)).toBeDefined();
      expect(tier.stats().bytes).toBeLessThanOrEqual(unit * 2 + 100);
    });

    it('goes expired → variants → failures → unpaid masters, least recently used first within a class', async () => {
      const unit = await sizeOf(5_000, { kind: 'variant' });
      // Room for six entries; every paid filler written below pushes exactly one out.
      const tier = await open({ maxBytes: unit * 6 + Math.floor(unit / 2) });
      const put = async (kind: EntryKind, meta: Partial<EntryMeta> = {}) => {
        const key = cacheKey(kind, hex());
        await tier.set(key, entry(5_000, { kind, ...meta }));
        now += 10;
        return key;
      };
      const paid = await put('master', { paid: true });
      const unpaid = await put('master');
      const failure = await put('failure', { expiresAt: now + 3_600_000 });
      const variantOld = await put('variant');
      const variantNew = await put('variant');
      const expired = await put('failure', { expiresAt: now + 5 });
      now += 100;
      await tier.get(variantOld); // now the most recently used variant
      await tier.idle();
      expect(tier.stats().entries).toBe(6);

      const order = [expired, variantNew, variantOld, failure, unpaid];
      const present = async () => {
        const files = (await listAll(dir)).map((f) => f.slice(-64));
        return order.map((key) => files.includes(key.slice(-64)));
      };
      for (let i = 0; i < order.length; i++) {
        await put('master', { paid: true });
        await tier.idle();
        expect(await present()).toEqual(order.map((_, j) => j > i));
      }
      expect((await tier.get(paid))?.meta.paid).toBe(true);
    });

    it('never evicts a paid master, even over budget, and warns once per window', async () => {
      const unit = await sizeOf(20_000, { paid: true });
      const tier = await open({ maxBytes: unit * 2, overBudgetWarnIntervalMs: 60_000 });
      const paid = [];
      for (let i = 0; i < 4; i++) {
        const key = cacheKey('master', hex());
        await tier.set(key, entry(20_000, { paid: true }));
        paid.push(key);
      }
      const variant = cacheKey('variant', hex());
      const unpaid = cacheKey('master', hex());
      await tier.set(variant, entry(20_000, { kind: 'variant' }));
      await tier.set(unpaid, entry(20_000));
      await tier.idle();
      expect(await tier.get(variant)).toBeUndefined();
      expect(await tier.get(unpaid)).toBeUndefined();
      for (const key of paid) expect((await tier.get(key))?.meta.paid).toBe(true);
      expect(tier.stats()).toMatchObject({ entries: 4, bytes: unit * 4, pinnedBytes: unit * 4 });
      expect(logs.find('over budget', WARN)).toHaveLength(1);

      // Still over budget a little later: no second warning inside the window…
      now += 30_000;
      await tier.evict();
      expect(logs.find('over budget', WARN)).toHaveLength(1);
      // …but one once the window has passed and it still lasts.
      now += 30_000;
      await tier.evict();
      expect(logs.find('over budget', WARN)).toHaveLength(2);
    });

    it('runs by itself after a write, off the request path', async () => {
      const unit = await sizeOf(10_000, { kind: 'variant' });
      const tier = await open({ maxBytes: unit + 100, evictionDelayMs: 5 });
      await tier.set(cacheKey('variant', hex()), entry(10_000, { kind: 'variant' }));
      await tier.set(cacheKey('variant', hex()), entry(10_000, { kind: 'variant' }));
      expect(tier.stats().entries).toBe(2);
      for (let i = 0; i < 200 && tier.stats().entries > 1; i++) await new Promise((r) => setTimeout(r, 5));
      expect(tier.stats().entries).toBe(1);
    });
  });

  describe('restart', () => {
    it('a new instance on the same directory sees every entry and the same total', async () => {
      const first = await open();
      const keys: string[] = [];
      for (const [kind, meta] of [
        ['master', { paid: true }],
        ['master', {}],
        ['variant', {}],
        ['failure', { expiresAt: now + 60_000 }],
      ] as const) {
        const key = cacheKey(kind, hex());
        await first.set(key, entry(3000 + keys.length, { kind, ...meta }));
        keys.push(key);
      }
      const before = first.stats();
      await first.close();

      const second = createDiskTier({ dir, maxBytes: 1 << 30, logger: logs.logger, clock: () => now });
      tiers.push(second);
      // Construction does not wait for the scan.
      expect(second.stats().scanning).toBe(true);
      await second.ready();
      expect(second.stats()).toEqual({ ...before, scanning: false });
      expect(before.byKind.master.entries).toBe(2);
      for (const key of keys) expect(await second.get(key)).toBeDefined();
      expect(logs.find('disk cache scanned')).toHaveLength(2);
    });

    it('serves reads before the scan has finished', async () => {
      const first = await open();
      const key = cacheKey('master', hex());
      await first.set(key, entry(100, { paid: true }));
      await first.close();
      const second = createDiskTier({ dir, maxBytes: 1 << 30, logger: logs.logger });
      tiers.push(second);
      expect((await second.get(key))?.meta.paid).toBe(true);
    });
  });
});
