import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CacheEntry, CacheTier } from '../../../src/cache/types.js';
import { createLogger } from '../../../src/logger.js';
import {
  createSourceStore,
  SourceNotFoundError,
  SourceTooLargeError,
  UnsupportedMediaTypeError,
  type SourceStoreOptions,
} from '../../../src/sources/index.js';
import { makeImage } from '../../helpers/images.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A shared tier as the store sees Redis: a Map, with its traffic counted. */
function memoryTier(): CacheTier & { map: Map<string, CacheEntry>; sets: number } {
  const map = new Map<string, CacheEntry>();
  return {
    name: 'redis',
    map,
    sets: 0,
    async get(key) {
      return map.get(key);
    },
    async set(key, entry) {
      this.sets++;
      map.set(key, entry);
    },
    async delete(key) {
      map.delete(key);
    },
  };
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

let dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clarity-sources-'));
  dirs.push(dir);
  return dir;
}

async function store(options: Partial<SourceStoreOptions> = {}) {
  return createSourceStore({
    dir: options.dir ?? (await tempDir()),
    maxBytes: 1024 * 1024,
    maxPixels: 1_000_000,
    logger: createLogger('silent'),
    ...options,
  });
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

beforeEach(() => {
  dirs = [];
});
afterEach(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('put', () => {
  it.each([
    ['png', () => makeImage(32, 24), 'image/png', false],
    ['png with alpha', () => makeImage(32, 24, { alpha: true }), 'image/png', true],
    ['jpeg', () => makeImage(32, 24, { format: 'jpeg' }), 'image/jpeg', false],
    ['webp with alpha', () => makeImage(32, 24, { format: 'webp', alpha: true }), 'image/webp', true],
    ['avif', async () => sharp(await makeImage(32, 24)).avif({ effort: 0 }).toBuffer(), 'image/avif', false],
    ['gif', async () => sharp(await makeImage(32, 24)).gif().toBuffer(), 'image/gif', false],
    ['tiff', async () => sharp(await makeImage(32, 24)).tiff().toBuffer(), 'image/tiff', false],
  ] as const)('registers a %s', async (_name, make, contentType, hasAlpha) => {
    const data = await make();
    const { info, created } = await (await store()).put(data);
    expect(created).toBe(true);
    expect(info).toEqual({
      hash: sha256(data),
      width: 32,
      height: 24,
      format: contentType.slice('image/'.length),
      bytes: data.length,
      hasAlpha,
      contentType,
    });
  });

  it('is idempotent: same bytes, same hash, created once', async () => {
    const s = await store();
    const data = await makeImage();
    const first = await s.put(data);
    const again = await s.put(Buffer.from(data));
    expect(again).toEqual({ info: first.info, created: false });
    const concurrent = await Promise.all([1, 2, 3].map(() => s.put(data)));
    expect(concurrent.every((r) => !r.created)).toBe(true);
  });

  it('creates a source exactly once under concurrent puts', async () => {
    const s = await store();
    const data = await makeImage(16, 16, { seed: 9 });
    const results = await Promise.all([1, 2, 3, 4].map(() => s.put(data)));
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });

  it('stores data and meta under sources/<2 hex>/<hash>, with no temporary file left', async () => {
    const dir = await tempDir();
    const data = await makeImage();
    const { info } = await (await store({ dir })).put(data);
    const shard = join(dir, 'sources', info.hash.slice(0, 2));
    expect((await readdir(shard)).sort()).toEqual([info.hash, `${info.hash}.json`]);
    expect(await readFile(join(shard, info.hash))).toEqual(data);
    expect(JSON.parse(await readFile(join(shard, `${info.hash}.json`), 'utf8'))).toEqual(info);
  });

  it('refuses more bytes than maxBytes with 413', async () => {
    const data = await makeImage(32, 24);
    const error = await rejection((await store({ maxBytes: data.length - 1 })).put(data));
    expect(error).toBeInstanceOf(SourceTooLargeError);
    expect(error).toMatchObject({ status: 413, code: 'SOURCE_TOO_LARGE', allowed: `at most ${data.length - 1} bytes` });
    expect((error as SourceTooLargeError).detail).toContain('SOURCE_MAX_BYTES');
  });

  it('accepts exactly maxBytes', async () => {
    const data = await makeImage(32, 24);
    await expect((await store({ maxBytes: data.length })).put(data)).resolves.toMatchObject({ created: true });
  });

  it('refuses more pixels than maxPixels with 413 naming the limit', async () => {
    const error = await rejection((await store({ maxPixels: 100 })).put(await makeImage(20, 20)));
    expect(error).toBeInstanceOf(SourceTooLargeError);
    expect(error).toMatchObject({ status: 413, code: 'SOURCE_TOO_LARGE', allowed: 'at most 100 pixels' });
    expect((error as SourceTooLargeError).detail).toContain('SOURCE_MAX_PIXELS');
  });

  it('accepts exactly maxPixels', async () => {
    await expect((await store({ maxPixels: 400 })).put(await makeImage(20, 20))).resolves.toMatchObject({
      created: true,
    });
  });

  it.each([
    ['garbage bytes', () => Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8])],
    ['a text file', () => Buffer.from('hello, world\nthis is not an image\n')],
    ['an empty body', () => Buffer.alloc(0)],
    ['an SVG (sharp reads it, we do not)', () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')],
    [
      'a truncated JPEG',
      async () => {
        const whole = await makeImage(64, 64, { format: 'jpeg' });
        return whole.subarray(0, Math.floor(whole.length * 0.6));
      },
    ],
  ])('refuses %s with 415 listing the accepted formats', async (_name, make) => {
    const dir = await tempDir();
    const error = await rejection((await store({ dir })).put(await make()));
    expect(error).toBeInstanceOf(UnsupportedMediaTypeError);
    expect(error).toMatchObject({
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
      allowed: 'jpeg, png, webp, avif, gif, tiff',
    });
    // Nothing of a refused upload stays behind.
    expect(await readdir(join(dir, 'sources')).catch(() => [])).toEqual([]);
  });
});

describe('get and head', () => {
  it('return the source put', async () => {
    const s = await store();
    const data = await makeImage(32, 24, { alpha: true });
    const { info } = await s.put(data);
    expect(await s.head(info.hash)).toEqual(info);
    expect(await s.get(info.hash)).toEqual({
      hash: info.hash,
      data,
      width: 32,
      height: 24,
      format: 'png',
      hasAlpha: true,
    });
  });

  it.each([
    ['an unknown hash', 'f'.repeat(64)],
    ['upper-case hex', 'F'.repeat(64)],
    ['a path', '../../etc/passwd'],
    ['an empty string', ''],
  ])('return undefined for %s', async (_name, hash) => {
    const s = await store();
    expect(await s.get(hash)).toBeUndefined();
    expect(await s.head(hash)).toBeUndefined();
  });

  it('are found by a new store on the same directory', async () => {
    const dir = await tempDir();
    const data = await makeImage();
    const { info } = await (await store({ dir })).put(data);
    const reopened = await store({ dir });
    expect(await reopened.head(info.hash)).toEqual(info);
    expect((await reopened.get(info.hash))?.data).toEqual(data);
    expect(await reopened.put(data)).toEqual({ info, created: false });
  });

  it('re-derive a meta file lost after the data was written', async () => {
    const dir = await tempDir();
    const { info } = await (await store({ dir })).put(await makeImage(20, 10, { alpha: true }));
    const meta = join(dir, 'sources', info.hash.slice(0, 2), `${info.hash}.json`);
    await unlink(meta);
    const reopened = await store({ dir });
    expect(await reopened.head(info.hash)).toEqual(info);
    expect(JSON.parse(await readFile(meta, 'utf8'))).toEqual(info);
    await writeFile(meta, '{"truncated":');
    expect((await reopened.get(info.hash))?.hasAlpha).toBe(true);
  });
});

describe('shared tier', () => {
  it('lets an image put on one instance be read on another', async () => {
    const shared = memoryTier();
    const a = await store({ shared });
    const data = await makeImage(24, 16, { alpha: true });
    const { info } = await a.put(data);
    expect(shared.map.get(`source:${info.hash}`)?.meta).toMatchObject({ kind: 'source', contentType: 'image/png' });

    const dirB = await tempDir();
    const b = await store({ dir: dirB, shared });
    expect(await b.head(info.hash)).toEqual(info);
    expect((await b.get(info.hash))?.data).toEqual(data);

    // B kept its own copy: it survives the shared tier losing the entry.
    shared.map.clear();
    const b2 = await store({ dir: dirB, shared });
    expect((await b2.get(info.hash))?.data).toEqual(data);
  });

  it('writes the shared copy again on a repeated put', async () => {
    const shared = memoryTier();
    const s = await store({ shared });
    const data = await makeImage();
    await s.put(data);
    shared.map.clear();
    await s.put(data);
    expect(shared.map.has(`source:${sha256(data)}`)).toBe(true);
  });

  it('refuses a shared copy whose bytes do not match the hash', async () => {
    const shared = memoryTier();
    const data = await makeImage(24, 16);
    const { info } = await (await store({ shared })).put(data);
    const other = await makeImage(24, 16, { seed: 5 });
    shared.map.set(`source:${info.hash}`, { data: other, meta: { kind: 'source', contentType: 'image/png' } });

    const { logger, lines } = captureLogs();
    const b = await store({ shared, logger });
    expect(await b.get(info.hash)).toBeUndefined();
    expect(await b.head(info.hash)).toBeUndefined();
    expect(lines.some((l) => l.msg === 'shared source does not match its hash; ignored' && l.hash === info.hash)).toBe(
      true,
    );
  });

  it('ignores a shared entry of another kind', async () => {
    const shared = memoryTier();
    const data = await makeImage();
    const hash = sha256(data);
    shared.map.set(`source:${hash}`, { data, meta: { kind: 'variant', contentType: 'image/png' } });
    expect(await (await store({ shared })).get(hash)).toBeUndefined();
  });

  it('applies its own limits to a shared copy', async () => {
    const shared = memoryTier();
    const data = await makeImage(20, 20);
    const { info } = await (await store({ shared })).put(data);
    const strict = await store({ shared, maxPixels: 100 });
    expect(await strict.get(info.hash)).toBeUndefined();
  });

  it('still stores locally when the shared tier fails', async () => {
    const shared = memoryTier();
    shared.set = async () => {
      throw new Error('redis down');
    };
    const { logger, lines } = captureLogs();
    const s = await store({ shared, logger });
    const { info, created } = await s.put(await makeImage());
    expect(created).toBe(true);
    expect(await s.head(info.hash)).toEqual(info);
    expect(lines.some((l) => l.msg === 'could not share a source' && l.level === 40)).toBe(true);
  });
});

describe('errors', () => {
  it('SourceNotFoundError is a 404 on param hash unless told otherwise', () => {
    expect(new SourceNotFoundError({ detail: 'no such source' })).toMatchObject({
      status: 404,
      code: 'SOURCE_NOT_FOUND',
      param: 'hash',
      detail: 'no such source',
    });
    expect(new SourceNotFoundError({ detail: 'no such mask', param: 'mask' }).param).toBe('mask');
  });
});
