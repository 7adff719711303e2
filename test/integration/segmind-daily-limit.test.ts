/**
 * UPSTREAM_DAILY_LIMIT across a restart: the day's count lives in CACHE_DIR, so a restarted
 * process does not hand out a fresh budget. What a user sees: a 503 with Retry-After, and the
 * upstream is not called.
 */
import sharp from 'sharp';
import request from 'supertest';
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

let fake: FakeSegmind;
const running: TestServer[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  fake = await createFakeSegmind({ pollsBeforeComplete: 0 });
});
afterEach(async () => {
  for (const server of running.splice(0)) await stopTestServer(server, { keepDir: true });
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  fake.reset();
});
afterAll(async () => {
  await fake.close();
});

async function limited(cacheDir?: string): Promise<TestServer> {
  const server = await startTestServer(
    {
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '10',
      UPSTREAM_RETRIES: '0',
      UPSTREAM_DAILY_LIMIT: '1',
    },
    cacheDir,
  );
  running.push(server);
  if (!dirs.includes(server.cacheDir)) dirs.push(server.cacheDir);
  return server;
}

describe('UPSTREAM_DAILY_LIMIT', () => {
  it('survives a restart on the same CACHE_DIR: the spent budget stays spent', async () => {
    const first = await limited();
    const png = await makeImage(10, 8);
    const uploaded = await request(first.app).post('/sources').set('Content-Type', 'image/png').send(png);
    expect(uploaded.status).toBe(201);
    const hash = uploaded.body.hash as string;

    const paid = await request(first.app).get(`/upscale/${hash}?seed=1&format=png`).buffer(true);
    expect(paid.status).toBe(200);
    expect(await sharp(paid.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 20, height: 16 });
    expect(fake.submits).toHaveLength(1);

    await stopTestServer(running.pop()!, { keepDir: true });
    const restarted = await limited(first.cacheDir);

    // Another payload would be another submit: refused, without calling the upstream.
    const spent = await request(restarted.app).get(`/upscale/${hash}?seed=2&format=png`);
    expect(spent.status).toBe(503);
    expect(spent.headers['content-type']).toContain('application/problem+json');
    expect(spent.body.code).toBe('DAILY_LIMIT_REACHED');
    expect(Number(spent.headers['retry-after'])).toBeGreaterThan(0);
    expect(fake.submits).toHaveLength(1);

    // What was paid for before the restart is still served, from disk.
    const cached = await request(restarted.app).get(`/upscale/${hash}?seed=1&format=png`);
    expect(cached.status).toBe(200);
    expect(fake.submits).toHaveLength(1);
  });
});
