/**
 * Several instances share what each paid for through a real Redis, and keep serving when it
 * fails. Each instance has its own CACHE_DIR, so a HIT on B for A's work can only come from Redis.
 */
import { randomUUID } from 'node:crypto';
import sharp from 'sharp';
import request from 'supertest';
import { createClient } from '@redis/client';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';
import { startRedis, type RedisProcess } from '../helpers/redis.js';

const started: TestServer[] = [];
const redises: RedisProcess[] = [];

async function instance(redisUrl: string, prefix: string, env: Record<string, string> = {}, cacheDir?: string) {
  const server = await startTestServer({ REDIS_URL: redisUrl, REDIS_PREFIX: prefix, REDIS_TIMEOUT_MS: '200', ...env }, cacheDir);
  started.push(server);
  return server;
}

async function upload(server: TestServer, body: Buffer): Promise<string> {
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(body);
  expect(res.status).toBe(201);
  return res.body.hash as string;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => stopTestServer(s)));
  await Promise.all(redises.splice(0).map((r) => r.stop()));
});

describe('shared Redis tier', () => {
  it("instance B serves instance A's master as a Redis HIT, and upscales a source uploaded to A", async () => {
    const prefix = `t-${randomUUID()}`;
    const a = await instance(inject('redisUrl'), prefix);
    const b = await instance(inject('redisUrl'), prefix);
    const hash = await upload(a, await makeImage(24, 16, { seed: 11 }));

    const onA = await request(a.app).get(`/upscale/${hash}?format=webp`);
    expect(onA.headers['x-cache']).toBe('MISS');

    const onB = await request(b.app).get(`/upscale/${hash}?format=webp`).buffer(true);
    expect(onB.status).toBe(200);
    expect(onB.headers['x-cache']).toBe('HIT; tier=redis');
    expect(onB.headers['etag']).toBe(onA.headers['etag']);
    expect(b.engineCalls()).toBe(0);

    // Another variant on B: the master comes from Redis, only the conversion runs.
    const resized = await request(b.app).get(`/upscale/${hash}?format=png&w=20`).buffer(true);
    expect(resized.headers['x-cache']).toMatch(/^HIT; tier=(redis|memory)\+transform$/);
    expect(b.engineCalls()).toBe(0);

    // A source uploaded to A only, never requested on B: B still upscales it.
    const other = await upload(a, await makeImage(20, 20, { seed: 12 }));
    const made = await request(b.app).get(`/upscale/${other}?format=png`).buffer(true);
    expect(made.status).toBe(200);
    expect(made.headers['x-cache']).toBe('MISS');
    expect(await sharp(made.body as Buffer).metadata()).toMatchObject({ width: 40, height: 40 });
    expect(b.engineCalls()).toBe(1);
  });

  it('Redis killed mid-run: no 5xx, nothing lost; the tier is used again once Redis is back', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const prefix = `t-${randomUUID()}`;
    const a = await instance(redis.url, prefix);
    const before = await upload(a, await makeImage(24, 16, { seed: 21 }));
    const during = await upload(a, await makeImage(24, 16, { seed: 22 }));
    expect((await request(a.app).get(`/upscale/${before}?format=png`)).status).toBe(200);

    await redis.stop({ crash: true });
    const made = await request(a.app).get(`/upscale/${during}?format=png`);
    expect(made.status).toBe(200);
    expect(made.headers['x-cache']).toBe('MISS');
    expect((await request(a.app).get(`/upscale/${before}?format=png`)).status).toBe(200);
    const ready = await request(a.app).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.checks.redis.ok).toBe(false);
    expect(JSON.stringify(ready.body)).not.toContain(redis.url);
    expect(a.logs()).toMatch(/"level":40[^\n]*[Rr]edis/);

    // Nothing lost: the master made during the outage is on disk, for a restarted instance too.
    await stopTestServer(a, { keepDir: true });
    started.splice(started.indexOf(a), 1);
    const restarted = await instance(redis.url, prefix, {}, a.cacheDir);
    const fromDisk = await request(restarted.app).get(`/upscale/${during}?format=png`);
    expect(fromDisk.status).toBe(200);
    expect(fromDisk.headers['x-cache']).toBe('HIT; tier=disk');
    expect(restarted.engineCalls()).toBe(0);

    // Redis comes back (empty): the instance connects (a fresh connection resets the breaker) and
    // writes reach it again.
    await redis.start();
    await restarted.waitForLog('redis connected');
    expect((await request(restarted.app).get('/readyz')).body.checks.redis.ok).toBe(true);
    const fresh = await upload(restarted, await makeImage(16, 16, { seed: 23 }));
    expect((await request(restarted.app).get(`/upscale/${fresh}?format=png`)).headers['x-cache']).toBe('MISS');
    const other = await instance(redis.url, prefix);
    const viaRedis = await request(other.app).get(`/upscale/${fresh}?format=png`);
    expect(viaRedis.headers['x-cache']).toBe('HIT; tier=redis');
    expect(other.engineCalls()).toBe(0);
  });

  it('a flushed Redis is refilled from disk on the next hit', async () => {
    const redisUrl = inject('redisUrl');
    const prefix = `t-${randomUUID()}`;
    const a = await instance(redisUrl, prefix, { CACHE_MEMORY_MAX_BYTES: '1' });
    const hash = await upload(a, await makeImage(24, 16, { seed: 31 }));
    await request(a.app).get(`/upscale/${hash}?format=png`);

    const client = createClient({ url: redisUrl });
    await client.connect();
    // Promotion is off the response path: Redis itself says when the key is written again
    // (keyspace notifications for string commands, on a connection of this test's own).
    await client.configSet('notify-keyspace-events', 'K$');
    const subscriber = client.duplicate();
    await subscriber.connect();
    try {
      const keys = await client.keys(`${prefix}*`);
      expect(keys.length).toBeGreaterThan(0);
      await client.del(keys);
      let written!: () => void;
      const variantWritten = new Promise<void>((resolve) => (written = resolve));
      await subscriber.pSubscribe(`__keyspace@*__:${prefix}*variant*`, (event) => {
        if (event === 'set') written();
      });
      const refilled = await request(a.app).get(`/upscale/${hash}?format=png`);
      expect(refilled.headers['x-cache']).toBe('HIT; tier=disk');
      expect(a.engineCalls()).toBe(1);
      await variantWritten;
      expect((await client.keys(`${prefix}*variant*`)).length).toBe(1);
    } finally {
      await subscriber.quit();
      await client.quit();
    }
  });
});
