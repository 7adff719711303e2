/**
 * What makes a public deployment safe, through the real app with the local engine: signed URLs,
 * presets and ONLY_PRESETS, origin URLs behind the SSRF guard, HEAD without paid work, the
 * per-client miss limit, and the metrics an operator watches.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import type { LookupFunction } from 'node:net';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { PresetFileError } from '../../src/params/index.js';
import { signPath } from '../../src/security/index.js';
import { buildServer } from '../../src/server.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';

const KEY = 'current-key-0123456789';
const OLD_KEY = 'previous-key-0123456789';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const b64url = (text: string) => Buffer.from(text).toString('base64url');

async function upload(server: TestServer, body: Buffer): Promise<string> {
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(body);
  expect(res.status).toBeLessThan(300);
  return res.body.hash as string;
}

/** A supertest GET that keeps the body as bytes. */
const get = (server: TestServer, path: string) => request(server.app).get(path).buffer(true);

describe('signed URLs', () => {
  let server: TestServer;
  let hash: string;
  beforeAll(async () => {
    server = await startTestServer({ SIGNING_KEY: `${KEY},${OLD_KEY}` });
    hash = await upload(server, await makeImage(20, 14, { seed: 1 }));
  });
  afterAll(() => stopTestServer(server));

  it('serves a signed URL; refuses it unsigned or changed by one character, before any other work', async () => {
    const path = `/upscale/${hash}?scale=1&format=png`;
    const ok = await get(server, signPath(path, KEY));
    expect(ok.status).toBe(200);
    expect(await sharp(ok.body as Buffer).metadata()).toMatchObject({ width: 20, height: 14, format: 'png' });

    const missing = await get(server, path);
    expect(missing.status).toBe(403);
    expect(missing.body).toMatchObject({ code: 'SIGNATURE_REQUIRED', param: 'sig' });
    const changed = await get(server, signPath(path, KEY).replace('scale=1', 'scale=2'));
    expect(changed.status).toBe(403);
    expect(changed.body).toMatchObject({ code: 'INVALID_SIGNATURE', param: 'sig' });
    expect(changed.headers['cache-control']).toBe('no-store');

    // Before any other work: an unknown source and an invalid value are still a 403, not a 404/400.
    const calls = server.engineCalls();
    expect((await get(server, `/upscale/${'f'.repeat(64)}?scale=1`)).status).toBe(403);
    expect((await get(server, `/upscale/${hash}?scale=99`)).status).toBe(403);
    expect((await request(server.app).head(path)).status).toBe(403);
    expect(server.engineCalls()).toBe(calls);
  });

  it('verifies with a rotated key, and the signature is not part of the cache key', async () => {
    const path = `/upscale/${hash}?scale=1.5&format=webp`;
    const calls = server.engineCalls();
    const first = await get(server, signPath(path, KEY));
    const second = await get(server, signPath(path, OLD_KEY));
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(second.headers['etag']).toBe(first.headers['etag']);
    expect(second.headers['x-cache']).toBe('HIT; tier=memory');
    expect(server.engineCalls()).toBe(calls + 1);
    expect(first.headers['etag']).toMatch(/^"[0-9a-f]{64}"$/);
  });

  it('uploads need no signature (ADMIN_TOKEN guards them)', async () => {
    const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(await makeImage(8, 8, { seed: 4 }));
    expect(res.status).toBe(201);
  });
});

describe('presets', () => {
  let server: TestServer;
  let hash: string;
  let presetsFile: string;
  beforeAll(async () => {
    const dir = await tempDir();
    presetsFile = join(dir, 'presets.json');
    await writeFile(presetsFile, JSON.stringify({ crisp: { scale: 1.5, sharpen: 1, format: 'png' } }));
    server = await startTestServer({ PRESETS_FILE: presetsFile, ONLY_PRESETS: 'true' });
    hash = await upload(server, await makeImage(20, 14, { seed: 2 }));
  });
  afterAll(() => stopTestServer(server));

  it('a preset and an override equal to its own value make one master', async () => {
    const calls = server.engineCalls();
    const byPreset = await get(server, `/upscale/${hash}?preset=crisp`);
    expect(byPreset.status).toBe(200);
    expect(await sharp(byPreset.body as Buffer).metadata()).toMatchObject({ width: 30, height: 21, format: 'png' });
    // Output fields stay free under ONLY_PRESETS; a new size of the same master is a conversion.
    const resized = await get(server, `/upscale/${hash}?preset=crisp&w=10&format=webp`);
    expect(resized.status).toBe(200);
    expect(resized.headers['x-cache']).toBe('HIT; tier=memory+transform');
    expect(server.engineCalls()).toBe(calls + 1);
  });

  it('ONLY_PRESETS refuses upscale fields in the query, naming them', async () => {
    for (const qs of ['preset=crisp&sharpen=1', 'scale=2', 'creativity=0.3']) {
      const res = await get(server, `/upscale/${hash}?${qs}`);
      expect(res.status, qs).toBe(400);
      expect(res.body.code).toBe('INVALID_PARAM');
      expect(res.body.detail).toMatch(/presets only \(ONLY_PRESETS\)/);
    }
    const unknown = await get(server, `/upscale/${hash}?preset=hero`);
    expect(unknown.body).toMatchObject({ status: 400, param: 'preset', allowed: 'one of: crisp' });
  });

  it('without ONLY_PRESETS an override equal to the preset value is the same master key', async () => {
    const open = await startTestServer({ PRESETS_FILE: presetsFile });
    try {
      const h = await upload(open, await makeImage(20, 14, { seed: 2 }));
      const a = await get(open, `/upscale/${h}?preset=crisp`);
      const b = await get(open, `/upscale/${h}?preset=crisp&sharpen=1`);
      const c = await get(open, `/upscale/${h}?scale=1.5&sharpen=1&format=png`);
      expect(b.headers['etag']).toBe(a.headers['etag']);
      expect(c.headers['etag']).toBe(a.headers['etag']);
      expect(open.engineCalls()).toBe(1);
    } finally {
      await stopTestServer(open);
    }
  });

  it('a bad presets file stops the server with a message naming the preset and the field', async () => {
    const dir = await tempDir();
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ hero: { creativity: 7 } }));
    const config = loadConfig({ CACHE_DIR: dir, PRESETS_FILE: bad, UPSCALE_ENGINE: 'local' });
    await expect(buildServer(config)).rejects.toThrow(PresetFileError);
    await expect(buildServer(config)).rejects.toThrow(/preset hero, field creativity: creativity="7" is out of range/);
  });
});

describe('origin URLs', () => {
  let origin: Server;
  let originUrl: string;
  let originRequests = 0;
  let png: Buffer;
  /** `evil.test` resolves to loopback: the guard must refuse it, whatever the name looks like. */
  const lookup = ((hostname: string, options: object, callback: (...args: unknown[]) => void) => {
    if (hostname === 'evil.test') {
      return (options as { all?: boolean }).all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4);
    }
    callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
  }) as unknown as LookupFunction;

  beforeAll(async () => {
    png = await makeImage(18, 12, { seed: 5 });
    origin = createServer((req, res) => {
      originRequests += 1;
      if (req.url === '/a.png' || req.url === '/copy-of-a.png') {
        res.writeHead(200, { 'Content-Type': 'image/png', ETag: '"v1"' });
        return void res.end(png);
      }
      res.writeHead(404).end();
    });
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    origin.close();
    await once(origin, 'close');
  });

  it('refuses loopback, private, link-local, unspecified and mapped addresses, and names that resolve there', async () => {
    const server = await startTestServer({ SOURCE_ALLOWED_HOSTS: '*' }, undefined, { sourceLookup: lookup });
    try {
      const port = new URL(originUrl).port;
      const before = originRequests;
      for (const url of [
        `${originUrl}/a.png`,
        `http://10.1.2.3:${port}/a.png`,
        'http://169.254.169.254/latest/meta-data/',
        `http://[::1]:${port}/a.png`,
        `http://0.0.0.0:${port}/a.png`,
        `http://[::ffff:127.0.0.1]:${port}/a.png`,
        `http://evil.test:${port}/a.png`,
      ]) {
        const res = await request(server.app).post('/sources').send({ url });
        expect(res.status, url).toBe(403);
        expect(res.body, url).toMatchObject({ code: 'SOURCE_URL_FORBIDDEN', param: 'url' });
        const viaRoute = await get(server, `/upscale/url/${b64url(url)}?scale=1`);
        expect(viaRoute.status, url).toBe(403);
      }
      expect(originRequests).toBe(before);
      expect(server.engineCalls()).toBe(0);
      const metrics = (await request(server.app).get('/metrics')).text;
      expect(metrics).toContain('clarity_source_fetches_total{outcome="SOURCE_URL_FORBIDDEN"} 14');
    } finally {
      await stopTestServer(server);
    }
  });

  it('with SOURCE_ALLOW_PRIVATE, fetches, hashes and upscales; the same bytes from two URLs are one master', async () => {
    const server = await startTestServer({ SOURCE_ALLOW_PRIVATE: 'true', SOURCE_ALLOWED_HOSTS: '127.0.0.1' });
    try {
      const registered = await request(server.app).post('/sources').send({ url: `${originUrl}/a.png` });
      expect(registered.status).toBe(201);
      expect(registered.body).toMatchObject({ hash: sha256(png), width: 18, height: 12, format: 'png' });

      const first = await get(server, `/upscale/url/${b64url(`${originUrl}/a.png`)}?scale=2&format=png`);
      expect(first.status).toBe(200);
      expect(await sharp(first.body as Buffer).metadata()).toMatchObject({ width: 36, height: 24 });
      const copy = await get(server, `/upscale/url/${b64url(`${originUrl}/copy-of-a.png`)}?scale=2&format=png`);
      expect(copy.status).toBe(200);
      expect(copy.headers['x-cache']).toBe('HIT; tier=memory');
      expect(copy.headers['etag']).toBe(first.headers['etag']);
      // And the same as the hash route: one source, one master.
      const byHash = await get(server, `/upscale/${sha256(png)}?scale=2&format=png`);
      expect(byHash.headers['etag']).toBe(first.headers['etag']);
      expect(server.engineCalls()).toBe(1);

      const missing = await get(server, `/upscale/url/${b64url(`${originUrl}/nope.png`)}?scale=2`);
      expect(missing.status).toBe(404);
      expect(missing.body.code).toBe('ORIGIN_NOT_FOUND');
      const offList = await request(server.app).post('/sources').send({ url: 'http://localhost:1/a.png' });
      expect(offList.status).toBe(403);
      const badB64 = await get(server, '/upscale/url/!!!?scale=2');
      expect(badB64.body).toMatchObject({ status: 400, param: 'url' });
    } finally {
      await stopTestServer(server);
    }
  });

  it('GET /upscale/url is off without SOURCE_ALLOWED_HOSTS or signing', async () => {
    const server = await startTestServer({ SOURCE_ALLOW_PRIVATE: 'true' });
    try {
      const res = await get(server, `/upscale/url/${b64url(`${originUrl}/a.png`)}?scale=1`);
      expect(res.status).toBe(404);
      expect(res.body.detail).toMatch(/SOURCE_ALLOWED_HOSTS or SIGNING_KEY/);
    } finally {
      await stopTestServer(server);
    }
  });
});

describe('HEAD never starts paid work', () => {
  let server: TestServer;
  let hash: string;
  beforeAll(async () => {
    server = await startTestServer();
    hash = await upload(server, await makeImage(20, 14, { seed: 7 }));
  });
  afterAll(() => stopTestServer(server));

  it('a HEAD on a miss says MISS without running an engine; on a hit it is the GET without the body', async () => {
    const path = `/upscale/${hash}?scale=1.5&format=webp&seed=3`;
    const miss = await request(server.app).head(path);
    expect(miss.status).toBe(200);
    expect(miss.headers).toMatchObject({
      'x-cache': 'MISS',
      'cache-control': 'no-store',
      'content-type': 'image/webp',
      'x-upscale-ignored': 'seed',
    });
    expect(miss.headers['etag']).toBeUndefined();
    expect(server.engineCalls()).toBe(0);

    const body = await get(server, path);
    expect(body.status).toBe(200);
    expect(server.engineCalls()).toBe(1);
    const hit = await request(server.app).head(path);
    for (const name of ['content-type', 'content-length', 'etag', 'cache-control', 'x-upscale-engine']) {
      expect(hit.headers[name], name).toBe(body.headers[name]);
    }
    expect(hit.headers['x-cache']).toBe('HIT; tier=memory');
    expect(hit.text ?? '').toBe('');

    // Another size of the cached master: a conversion is free, so HEAD may run it.
    const other = await request(server.app).head(`/upscale/${hash}?scale=1.5&format=png&w=10`);
    expect(other.headers['x-cache']).toBe('HIT; tier=memory+transform');
    expect(Number(other.headers['content-length'])).toBeGreaterThan(0);
    expect(server.engineCalls()).toBe(1);
  });
});

describe('CLIENT_MISS_RPM', () => {
  it('answers 429 to a client past its cold misses, while hits, conversions and other clients go on', async () => {
    const server = await startTestServer({ CLIENT_MISS_RPM: '1', TRUST_PROXY: 'true' });
    try {
      const hash = await upload(server, await makeImage(20, 14, { seed: 8 }));
      const client = (path: string, ip: string) => get(server, path).set('X-Forwarded-For', ip);
      expect((await client(`/upscale/${hash}?scale=1&format=png`, '203.0.113.1')).status).toBe(200);
      const refused = await client(`/upscale/${hash}?scale=1.5&format=png`, '203.0.113.1');
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ code: 'TOO_MANY_MISSES', param: 'CLIENT_MISS_RPM' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(server.engineCalls()).toBe(1);

      const hit = await client(`/upscale/${hash}?scale=1&format=png`, '203.0.113.1');
      expect(hit.headers['x-cache']).toBe('HIT; tier=memory');
      const converted = await client(`/upscale/${hash}?scale=1&format=webp`, '203.0.113.1');
      expect(converted.headers['x-cache']).toBe('HIT; tier=memory+transform');
      const otherClient = await client(`/upscale/${hash}?scale=1.5&format=png`, '198.51.100.7');
      expect(otherClient.status).toBe(200);
      expect(server.engineCalls()).toBe(2);
    } finally {
      await stopTestServer(server);
    }
  });

  it('without TRUST_PROXY, X-Forwarded-For does not make a new client', async () => {
    const server = await startTestServer({ CLIENT_MISS_RPM: '1' });
    try {
      const hash = await upload(server, await makeImage(20, 14, { seed: 9 }));
      expect((await get(server, `/upscale/${hash}?scale=1&format=png`).set('X-Forwarded-For', '203.0.113.1')).status).toBe(200);
      expect((await get(server, `/upscale/${hash}?scale=1.5&format=png`).set('X-Forwarded-For', '198.51.100.7')).status).toBe(429);
    } finally {
      await stopTestServer(server);
    }
  });
});

describe('/metrics', () => {
  it('counts what happened: requests, answers by tier, joins, engine calls, source bytes', async () => {
    const server = await startTestServer();
    try {
      const hash = await upload(server, await makeImage(20, 14, { seed: 10 }));
      const path = `/upscale/${hash}?scale=1&format=png`;
      const burst = await Promise.all(Array.from({ length: 4 }, () => get(server, path)));
      expect(burst.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      await get(server, path);
      const etag = (await get(server, path)).headers['etag'] as string;
      expect((await request(server.app).get(path).set('If-None-Match', etag)).status).toBe(304);
      await get(server, `/upscale/${hash}?scale=9`);

      const text = (await request(server.app).get('/metrics')).text;
      const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}()[\]|+.]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
      expect(value('clarity_http_requests_total{route="/upscale/:hash",method="GET",status="200"}')).toBe(6);
      expect(value('clarity_http_requests_total{route="/upscale/:hash",method="GET",status="304"}')).toBe(1);
      expect(value('clarity_http_requests_total{route="/upscale/:hash",method="GET",status="400"}')).toBe(1);
      expect(value('clarity_http_requests_total{route="/sources",method="POST",status="201"}')).toBe(1);
      expect(value('clarity_singleflight_joins_total{kind="variant"}')).toBe(3);
      expect(value('clarity_upscale_answers_total{cache="MISS",tier="engine"}')).toBe(4);
      expect(value('clarity_upscale_answers_total{cache="HIT",tier="memory"}')).toBe(2);
      expect(value('clarity_upscale_answers_total{cache="HIT",tier="revalidated"}')).toBe(1);
      expect(value('clarity_engine_calls_total{engine="local:esrgan-slim",outcome="OK"}')).toBe(1);
      expect(value('clarity_engine_duration_seconds_count{engine="local:esrgan-slim",outcome="OK"}')).toBe(1);
      expect(value('clarity_limiter_wait_seconds_count{lane="visitor"}')).toBe(1);
      // Hits of a free engine save nothing.
      expect(value('clarity_upstream_saved_calls_total')).toBe(0);
      expect(value('clarity_disk_bytes{kind="source"}')).toBeGreaterThan(0);
      expect(value('clarity_source_entries')).toBe(1);
    } finally {
      await stopTestServer(server);
    }
  });
});

describe('warnings at start', () => {
  it('warns once about a paid engine without SIGNING_KEY and about open uploads on a public HOST', async () => {
    const paid = { UPSCALE_ENGINE: 'segmind', SEGMIND_API_KEY: 'SG_0123456789abcdef', SEGMIND_BASE_URL: 'http://127.0.0.1:9' };
    const open = await startTestServer({ ...paid, HOST: '0.0.0.0' });
    const closed = await startTestServer({ ...paid, HOST: '127.0.0.1', SIGNING_KEY: KEY, ADMIN_TOKEN: 'a-token-of-16-chars-or-more' });
    // Said when serving starts (an in-process CLI command that never listens says nothing).
    expect(open.logs()).not.toContain('SIGNING_KEY is not set');
    await open.listen(0);
    await closed.listen(0);
    try {
      const warnings = (server: TestServer) =>
        server
          .logs()
          .split('\n')
          .filter((line) => line.includes('"level":40'));
      expect(warnings(open).filter((l) => l.includes('SIGNING_KEY is not set'))).toHaveLength(1);
      expect(warnings(open).filter((l) => l.includes('ADMIN_TOKEN is not set'))).toHaveLength(1);
      expect(warnings(closed)).toEqual([]);
      // The key is named, never shown.
      expect(open.logs()).not.toContain('SG_0123456789abcdef');
    } finally {
      await stopTestServer(open);
      await stopTestServer(closed);
    }
  });
});
