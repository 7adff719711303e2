/**
 * `/sources` and `/upscale/:hash` end to end through the real app: real config, the real local
 * model, real sharp, a real disk cache. What a user sees: status, headers, decoded images, and how
 * many times an engine ran.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

async function upload(server: TestServer, body: Buffer) {
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(body);
  expect(res.status).toBeLessThan(300);
  return res.body.hash as string;
}

async function decode(body: Buffer) {
  return sharp(body).metadata();
}

/** Every file under `dir`, recursively. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

describe('sources', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ SOURCE_MAX_BYTES: '100000', SOURCE_MAX_PIXELS: '10000' });
  });
  afterAll(() => stopTestServer(server));

  it('stores an upload under the sha256 of its bytes and serves it back', async () => {
    const png = await makeImage(40, 30);
    const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(png);
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      width: 40,
      height: 30,
      format: 'png',
      bytes: png.length,
    });
    const again = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(png);
    expect(again.status).toBe(200);
    expect(again.body.hash).toBe(res.body.hash);

    const got = await request(server.app).get(`/sources/${res.body.hash}`).buffer(true);
    expect(got.status).toBe(200);
    expect(got.headers['content-type']).toBe('image/png');
    expect(Buffer.compare(got.body as Buffer, png)).toBe(0);
    const head = await request(server.app).head(`/sources/${res.body.hash}`);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(png.length));
    const revalidated = await request(server.app).get(`/sources/${res.body.hash}`).set('If-None-Match', got.headers['etag'] as string);
    expect(revalidated.status).toBe(304);
  });

  it('413 for too many bytes, 413 for too many pixels, 415 for what is not an image', async () => {
    const big = await request(server.app).post('/sources').send(Buffer.alloc(100001, 1));
    expect(big.status).toBe(413);
    expect(big.headers['content-type']).toContain('application/problem+json');
    expect(big.body.code).toBe('SOURCE_TOO_LARGE');

    const wideImage = await makeImage(101, 100);
    expect(wideImage.length).toBeLessThan(100000);
    const wide = await request(server.app).post('/sources').send(wideImage);
    expect(wide.status).toBe(413);
    expect(wide.body.detail).toContain('10000');

    const text = await request(server.app).post('/sources').set('Content-Type', 'text/plain').send('hello');
    expect(text.status).toBe(415);
    expect(text.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');

    const empty = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(Buffer.alloc(0));
    expect(empty.status).toBe(415);
  });

  it('with ADMIN_TOKEN, uploads need the bearer token; reads do not', async () => {
    const guarded = await startTestServer({ ADMIN_TOKEN: 'a-long-enough-admin-token' });
    try {
      const png = await makeImage(8, 8);
      const anonymous = await request(guarded.app).post('/sources').set('Content-Type', 'image/png').send(png);
      expect(anonymous.status).toBe(401);
      expect(anonymous.body.code).toBe('UNAUTHORIZED');
      expect(anonymous.text).not.toContain('a-long-enough-admin-token');
      const wrong = await request(guarded.app).post('/sources').set('Authorization', 'Bearer nope').send(png);
      expect(wrong.status).toBe(401);
      const allowed = await request(guarded.app)
        .post('/sources')
        .set('Authorization', 'Bearer a-long-enough-admin-token')
        .set('Content-Type', 'image/png')
        .send(png);
      expect(allowed.status).toBe(201);
      expect((await request(guarded.app).get(`/sources/${allowed.body.hash}`)).status).toBe(200);
    } finally {
      await stopTestServer(guarded);
    }
  });

  it('400 for a malformed hash, 404 for an unknown one', async () => {
    const bad = await request(server.app).get('/sources/not-a-hash');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'INVALID_PARAM', param: 'hash' });
    const unknown = await request(server.app).get(`/sources/${'0'.repeat(64)}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('SOURCE_NOT_FOUND');
    expect(JSON.stringify(unknown.body)).not.toMatch(/at .*\.ts:\d+/);
  });
});

describe('/upscale/:hash with the local engine', () => {
  let server: TestServer;
  let hash: string;
  let alphaHash: string;

  beforeAll(async () => {
    server = await startTestServer();
    hash = await upload(server, await makeImage(24, 16));
    alphaHash = await upload(server, await makeImage(24, 16, { alpha: true }));
  });
  afterAll(() => stopTestServer(server));

  it('makes a real 2x image, then serves the same URL from memory', async () => {
    const miss = await request(server.app).get(`/upscale/${hash}?scale=2&format=webp`).buffer(true);
    expect(miss.status).toBe(200);
    expect(miss.headers['content-type']).toBe('image/webp');
    expect(miss.headers['x-cache']).toBe('MISS');
    expect(miss.headers['x-upscale-engine']).toBe('local:esrgan-slim');
    expect(miss.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(miss.headers['etag']).toMatch(/^"[0-9a-f]{64}"$/);
    expect(miss.headers['server-timing']).toMatch(/engine;dur=[\d.]+, transform;dur=[\d.]+/);
    expect(miss.headers['vary']).toBeUndefined();
    const meta = await decode(miss.body as Buffer);
    expect(meta).toMatchObject({ format: 'webp', width: 48, height: 32 });
    const callsAfterMiss = server.engineCalls();

    const hit = await request(server.app).get(`/upscale/${hash}?format=webp&scale=2.0`).buffer(true);
    expect(hit.status).toBe(200);
    expect(hit.headers['x-cache']).toBe('HIT; tier=memory');
    expect(hit.headers['etag']).toBe(miss.headers['etag']);
    expect(Buffer.compare(hit.body as Buffer, miss.body as Buffer)).toBe(0);
    expect(server.engineCalls()).toBe(callsAfterMiss);
  });

  it('another format of the same payload reuses the master: no engine call', async () => {
    await request(server.app).get(`/upscale/${hash}?scale=3`).set('Accept', 'image/webp');
    const calls = server.engineCalls();
    const res = await request(server.app).get(`/upscale/${hash}?scale=3&format=png&w=50`).buffer(true);
    expect(res.status).toBe(200);
    expect(res.headers['x-cache']).toBe('HIT; tier=memory+transform');
    expect(await decode(res.body as Buffer)).toMatchObject({ format: 'png', width: 50, height: 33 });
    expect(server.engineCalls()).toBe(calls);
  });

  it('50 concurrent identical misses make exactly one engine call', async () => {
    const before = server.engineCalls();
    const url = `/upscale/${hash}?scale=4&format=jpeg`;
    const responses = await Promise.all(Array.from({ length: 50 }, () => request(server.app).get(url).buffer(true)));
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(new Set(responses.map((r) => r.headers['etag'])).size).toBe(1);
    expect(server.engineCalls() - before).toBe(1);
    expect(await decode(responses[0]!.body as Buffer)).toMatchObject({ format: 'jpeg', width: 96, height: 64 });
  });

  it.each([
    ['image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8', 'image/avif'],
    ['image/webp,*/*', 'image/webp'],
    ['image/avif;q=0,image/webp', 'image/webp'],
    ['*/*', 'image/jpeg'],
    [undefined, 'image/jpeg'],
  ])('format=auto with Accept %s → %s, with Vary: Accept', async (accept, type) => {
    const req = request(server.app).get(`/upscale/${hash}`);
    const res = await (accept ? req.set('Accept', accept) : req).buffer(true);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe(type);
    expect(res.headers['vary']).toBe('Accept');
    // sharp names the AVIF container `heif`.
    expect(`image/${(await decode(res.body as Buffer)).format}`.replace('heif', 'avif')).toBe(type);
  });

  it('an image with alpha stays transparent: png by default, alpha kept', async () => {
    const res = await request(server.app).get(`/upscale/${alphaHash}`).set('Accept', 'image/jpeg,*/*').buffer(true);
    expect(res.headers['content-type']).toBe('image/png');
    const meta = await decode(res.body as Buffer);
    expect(meta).toMatchObject({ format: 'png', width: 48, height: 32, hasAlpha: true });
  });

  it('w/h/fit shape the output, never beyond the master', async () => {
    const cases: [string, number, number][] = [
      ['w=30', 30, 20],
      ['h=10', 15, 10],
      ['w=20&h=20&fit=cover', 20, 20],
      ['w=20&h=20&fit=contain', 20, 20],
      ['w=20&h=20', 20, 13],
      ['w=1000', 48, 32],
    ];
    for (const [qs, width, height] of cases) {
      const res = await request(server.app).get(`/upscale/${hash}?format=png&${qs}`).buffer(true);
      expect(res.status, qs).toBe(200);
      expect(await decode(res.body as Buffer), qs).toMatchObject({ width, height });
    }
  });

  it('If-None-Match with the ETag answers 304 without any work', async () => {
    const first = await request(server.app).get(`/upscale/${hash}?format=webp&q=60`);
    const calls = server.engineCalls();
    const revalidated = await request(server.app)
      .get(`/upscale/${hash}?q=60&format=webp`)
      .set('If-None-Match', first.headers['etag'] as string);
    expect(revalidated.status).toBe(304);
    expect(revalidated.headers['etag']).toBe(first.headers['etag']);
    expect(server.engineCalls()).toBe(calls);
    const other = await request(server.app).get(`/upscale/${hash}?format=webp&q=61`).set('If-None-Match', first.headers['etag'] as string);
    expect(other.status).toBe(200);
  });

  it('fields the engine ignores are reported, and fork neither the master nor the ETag', async () => {
    const calls = server.engineCalls();
    const plain = await request(server.app).get(`/upscale/${hash}?sharpen=1.5&format=png`);
    expect(plain.status).toBe(200);
    expect(plain.headers['x-upscale-ignored']).toBeUndefined();
    expect(server.engineCalls()).toBe(calls + 1);
    const res = await request(server.app).get(`/upscale/${hash}?creativity=0.4&prompt=fox&seed=42&sharpen=1.5&format=png`);
    expect(res.status).toBe(200);
    expect(res.headers['x-upscale-ignored']).toBe('creativity, prompt, seed');
    expect(res.headers['x-cache']).toBe('HIT; tier=memory');
    expect(res.headers['etag']).toBe(plain.headers['etag']);
    expect(server.engineCalls()).toBe(calls + 1);
    // A field the local engine acts on still makes its own master.
    const sharper = await request(server.app).get(`/upscale/${hash}?sharpen=2.5&format=png`);
    expect(sharper.headers['x-cache']).toBe('MISS');
    expect(sharper.headers['etag']).not.toBe(plain.headers['etag']);
    expect(server.engineCalls()).toBe(calls + 2);
  });

  it('every invalid parameter is a 400 problem naming it; nothing reaches the engine', async () => {
    const calls = server.engineCalls();
    const cases: [string, string][] = [
      ['scale=9', 'scale'],
      ['scale=0', 'scale'],
      ['creativity=1.5', 'creativity'],
      ['format=gif', 'format'],
      ['quality=0', 'quality'],
      ['w=0', 'w'],
      ['tiling_width=20', 'tiling_width'],
      ['scale=2&scale=3', 'scale'],
      ['sizes=2', 'sizes'],
      [`mask=xyz`, 'mask'],
    ];
    for (const [qs, param] of cases) {
      const res = await request(server.app).get(`/upscale/${hash}?${qs}`);
      expect(res.status, qs).toBe(400);
      expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(res.body, qs).toMatchObject({ status: 400, code: 'INVALID_PARAM', param });
      expect(res.body.allowed, qs).toBeTruthy();
      expect(res.body.type).toBe('https://github.com/clarity-cdn/clarity-cdn#invalid_param');
    }
    expect(server.engineCalls()).toBe(calls);
  });

  it('404 for an unknown source or mask, 400 for a malformed path hash', async () => {
    expect((await request(server.app).get(`/upscale/${'f'.repeat(64)}`)).body).toMatchObject({
      status: 404,
      code: 'SOURCE_NOT_FOUND',
    });
    expect((await request(server.app).get('/upscale/abc')).body).toMatchObject({ status: 400, param: 'hash' });
  });

  it('cache hits are served while an upscale runs (inference is off the main thread)', async () => {
    const cached = await request(server.app).get(`/upscale/${hash}?format=webp&q=70`);
    expect(cached.status).toBe(200);
    const big = await upload(server, await makeImage(96, 96, { seed: 8 }));
    const slow = request(server.app).get(`/upscale/${big}?scale=4&format=png`).then((r) => r);
    await new Promise<void>((resolve) => {
      const check = () => (server.pipeline.stats().mastersInFlight > 0 ? resolve() : setImmediate(check));
      check();
    });
    const hit = await request(server.app).get(`/upscale/${hash}?format=webp&q=70`);
    expect(hit.headers['x-cache']).toBe('HIT; tier=memory');
    // The hit came back while the engine was still at work on the other image.
    expect(server.pipeline.stats().mastersInFlight).toBe(1);
    expect((await slow).status).toBe(200);
  });

  it('/metrics counts engine calls and reports the disk tier by kind', async () => {
    const res = await request(server.app).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain(`clarity_engine_calls_total{engine="local:esrgan-slim",outcome="OK"} ${server.engineCalls()}`);
    const master = /clarity_disk_bytes\{kind="master"\} (\d+)/.exec(res.text);
    expect(Number(master?.[1])).toBeGreaterThan(0);
    expect(res.text).toMatch(/clarity_disk_max_bytes \d+/);
  });

  it('a master larger than OUTPUT_MAX_PIXELS is refused before any work', async () => {
    const limited = await startTestServer({ OUTPUT_MAX_PIXELS: '1000' });
    try {
      const h = await upload(limited, await makeImage(24, 16));
      const res = await request(limited.app).get(`/upscale/${h}?scale=2`);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ code: 'OUTPUT_TOO_LARGE', param: 'scale_factor' });
      expect(limited.engineCalls()).toBe(0);
    } finally {
      await stopTestServer(limited);
    }
  });
});

describe('durability', () => {
  it('a new instance on the same CACHE_DIR serves a HIT with no engine call', async () => {
    const first = await startTestServer();
    const hash = await upload(first, await makeImage(24, 16, { seed: 3 }));
    const miss = await request(first.app).get(`/upscale/${hash}?format=webp`);
    expect(miss.headers['x-cache']).toBe('MISS');
    await stopTestServer(first, { keepDir: true });

    const second = await startTestServer({}, first.cacheDir);
    try {
      const hit = await request(second.app).get(`/upscale/${hash}?format=webp`).buffer(true);
      expect(hit.status).toBe(200);
      expect(hit.headers['x-cache']).toBe('HIT; tier=disk');
      expect(hit.headers['etag']).toBe(miss.headers['etag']);
      expect(second.engineCalls()).toBe(0);
    } finally {
      await stopTestServer(second);
    }
  });

  it('a corrupted disk entry is a miss: the engine runs again and the answer is right', async () => {
    const first = await startTestServer();
    const hash = await upload(first, await makeImage(24, 16, { seed: 4 }));
    await request(first.app).get(`/upscale/${hash}?format=png`);
    await stopTestServer(first, { keepDir: true });
    const entries = (await files(join(first.cacheDir, 'cache'))).filter((f) => /\/(master|variant)\//.test(f));
    expect(entries.length).toBe(2);
    for (const file of entries) {
      const bytes = await readFile(file);
      bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0xff;
      await writeFile(file, bytes);
    }

    const second = await startTestServer({}, first.cacheDir);
    try {
      const res = await request(second.app).get(`/upscale/${hash}?format=png`).buffer(true);
      expect(res.status).toBe(200);
      expect(res.headers['x-cache']).toBe('MISS');
      expect(second.engineCalls()).toBe(1);
      expect(await decode(res.body as Buffer)).toMatchObject({ format: 'png', width: 48, height: 32 });
    } finally {
      await stopTestServer(second);
    }
  });

  it('past REQUEST_TIMEOUT_MS: 504 with Retry-After, and the work still lands in the cache', async () => {
    const server = await startTestServer({ REQUEST_TIMEOUT_MS: '100' });
    try {
      const hash = await upload(server, await makeImage(64, 64, { seed: 5 }));
      const stored = server.waitForLog('master stored');
      const slow = await request(server.app).get(`/upscale/${hash}?scale=4&format=png`);
      expect(slow.status).toBe(504);
      expect(slow.body.code).toBe('UPSCALE_PENDING');
      expect(Number(slow.headers['retry-after'])).toBeGreaterThan(0);
      expect(slow.headers['cache-control']).toBe('no-store');
      await stored;
      const later = await request(server.app).get(`/upscale/${hash}?scale=4&format=png`).buffer(true);
      // It may join the conversion still under way, or hit the cache: either way no new engine call.
      expect(later.status).toBe(200);
      expect(server.engineCalls()).toBe(1);
      expect(await decode(later.body as Buffer)).toMatchObject({ width: 256, height: 256 });
    } finally {
      await stopTestServer(server);
    }
  });
});
