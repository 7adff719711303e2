/**
 * Cluster mode (`CLUSTER_MODE=bullmq`) in one process: two instances on one real Redis share one
 * queue, one upstream budget and one de-duplication, against the fake upstream.
 */
import { randomUUID } from 'node:crypto';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

let fake: FakeSegmind;
const started: TestServer[] = [];
beforeAll(async () => {
  fake = await createFakeSegmind();
});
afterEach(async () => {
  fake.releaseJobs();
  for (const s of started.splice(0)) await stopTestServer(s);
  fake.reset();
});
afterAll(() => fake.close());

async function instance(prefix: string, env: Record<string, string> = {}) {
  const server = await startTestServer({
    UPSCALE_ENGINE: 'segmind',
    SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
    SEGMIND_BASE_URL: fake.url,
    SEGMIND_POLL_INTERVAL_MS: '10',
    UPSTREAM_RETRIES: '2',
    REDIS_URL: inject('redisUrl'),
    REDIS_PREFIX: prefix,
    CLUSTER_MODE: 'bullmq',
    ...env,
  });
  started.push(server);
  return server;
}

describe('cluster mode', () => {
  it('identical misses on two instances make one upstream call; distinct ones stay under the cluster concurrency', async () => {
    const prefix = `cl-${randomUUID()}`;
    const a = await instance(prefix, { UPSTREAM_CONCURRENCY: '2' });
    const b = await instance(prefix, { UPSTREAM_CONCURRENCY: '2' });
    const png = await makeImage(16, 12, { seed: 41 });
    const hash = (await request(a.app).post('/sources').set('Content-Type', 'image/png').send(png)).body.hash as string;
    fake.holdJobs();
    const requests = Array.from({ length: 12 }, (_, i) =>
      request(i % 2 ? a.app : b.app)
        .get(`/upscale/${hash}?scale=2&seed=${i % 4}&format=png`)
        .buffer(true)
        // Sent now: a supertest request starts only once something awaits it.
        .then((r) => r),
    );
    await fake.waitForConcurrent(2);
    fake.releaseJobs();
    const answers = await Promise.all(requests);
    expect(answers.map((r) => r.status)).toEqual(Array(12).fill(200));
    for (const r of answers) expect(await sharp(r.body as Buffer).metadata()).toMatchObject({ width: 32, height: 24 });
    expect(fake.submits).toHaveLength(4);
    expect(fake.concurrentJobs.max).toBeLessThanOrEqual(2);
    const ready = (await request(a.app).get('/readyz')).body.checks.queue;
    expect(ready).toMatchObject({ ok: true, detail: expect.stringMatching(/^2 workers/) });
  });
});
