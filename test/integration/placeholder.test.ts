/**
 * An `<img>` that never waits blank: a cold miss still at the upstream after PLACEHOLDER_AFTER_MS
 * is answered with a stand-in (no-store, no ETag, X-Upscale-Status: pending) while the real job
 * goes on; the first request after it lands gets the real image. Real app, fake upstream.
 */
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

let fake: FakeSegmind;
let server: TestServer | undefined;

beforeAll(async () => {
  fake = await createFakeSegmind();
});
afterEach(async () => {
  fake.releaseJobs();
  if (server) await stopTestServer(server);
  server = undefined;
  fake.reset();
});
afterAll(() => fake.close());

async function start(env: Record<string, string> = {}): Promise<{ server: TestServer; hash: string }> {
  server = await startTestServer({
    UPSCALE_ENGINE: 'segmind',
    SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
    SEGMIND_BASE_URL: fake.url,
    SEGMIND_POLL_INTERVAL_MS: '10',
    PLACEHOLDER_AFTER_MS: '50',
    ...env,
  });
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(await makeImage(16, 12));
  return { server, hash: res.body.hash as string };
}

const get = (server: TestServer, path: string) => request(server.app).get(path).buffer(true);

describe('placeholders', () => {
  it('a stand-in while the job runs, never a HIT; the real image, immutable, once it lands', async () => {
    const { server, hash } = await start();
    fake.holdJobs();
    const path = `/upscale/${hash}?scale=2&format=webp&placeholder=lanczos`;
    for (let i = 0; i < 2; i++) {
      const pending = await get(server, path);
      expect(pending.status).toBe(200);
      expect(pending.headers).toMatchObject({
        'x-upscale-status': 'pending',
        'cache-control': 'no-store',
        'x-cache': 'MISS',
        'x-upscale-engine': 'lanczos; placeholder',
        'content-type': 'image/webp',
      });
      expect(pending.headers['etag']).toBeUndefined();
      expect(await sharp(pending.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 32, height: 24 });
    }
    // Both requests joined the one job.
    expect(fake.submits).toHaveLength(1);

    const stored = server.waitForLog('master stored');
    fake.releaseJobs();
    await stored;
    const real = await get(server, path);
    expect(real.headers).toMatchObject({
      'x-upscale-status': 'final',
      'cache-control': 'public, max-age=31536000, immutable',
      'x-upscale-engine': 'segmind',
    });
    expect(real.headers['etag']).toMatch(/^"[0-9a-f]{64}"$/);
    expect(await sharp(real.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 32, height: 24 });
    // It may have joined the job's own conversion (MISS); from now on it is a plain HIT.
    const again = await get(server, path);
    expect(again.headers).toMatchObject({ 'x-cache': 'HIT; tier=memory', 'x-upscale-status': 'final', etag: real.headers['etag'] });
    expect(fake.submits).toHaveLength(1);
  });

  it('placeholder=local is the embedded ESRGAN at the requested size; PLACEHOLDER sets the default', async () => {
    const { server, hash } = await start({ PLACEHOLDER: 'local' });
    fake.holdJobs();
    const res = await get(server, `/upscale/${hash}?scale=2&format=png&w=24`);
    expect(res.headers).toMatchObject({ 'x-upscale-status': 'pending', 'x-upscale-engine': 'local:esrgan-slim; placeholder', 'cache-control': 'no-store' });
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 24, height: 18 });
    // A HEAD still says MISS: the stand-in is not the cached image.
    const head = await request(server.app).head(`/upscale/${hash}?scale=2&format=png&w=24`);
    expect(head.headers['x-cache']).toBe('MISS');
    expect(fake.submits).toHaveLength(1);
  });

  it('a cached master is converted and served final, whatever the placeholder setting', async () => {
    const { server, hash } = await start({ PLACEHOLDER: 'lanczos' });
    const first = await get(server, `/upscale/${hash}?scale=2&format=png&placeholder=none`);
    expect(first.headers['x-upscale-status']).toBe('final');
    const other = await get(server, `/upscale/${hash}?scale=2&format=webp&w=20`);
    expect(other.headers).toMatchObject({ 'x-upscale-status': 'final', 'x-cache': 'HIT; tier=memory+transform' });
    expect(fake.submits).toHaveLength(1);
  });

  it('a new AVIF variant is answered at once as a draft; the full-effort one replaces it', async () => {
    const { server, hash } = await start();
    const path = `/upscale/${hash}?scale=2&format=avif`;
    await get(server, `/upscale/${hash}?scale=2&format=png`);
    const stored = server.waitForLog('full-effort AVIF stored behind its draft');
    const draft = await get(server, path);
    expect(draft.headers).toMatchObject({ 'x-upscale-status': 'pending', 'cache-control': 'no-store', 'content-type': 'image/avif' });
    expect(draft.headers['etag']).toBeUndefined();
    expect(await sharp(draft.body as Buffer).metadata()).toMatchObject({ format: 'heif', width: 32, height: 24 });
    await stored;
    const final = await get(server, path);
    expect(final.headers).toMatchObject({ 'x-upscale-status': 'final', 'cache-control': 'public, max-age=31536000, immutable', 'x-cache': 'HIT; tier=memory' });
    expect(final.headers['etag']).toMatch(/^"[0-9a-f]{64}"$/);
    expect(fake.submits).toHaveLength(1);
  });
});
