/**
 * The job journal shared through Redis: a v2 job accepted (and billed) for instance A is resumed by
 * instance B, which has a CACHE_DIR of its own, so B can only know the job through Redis. What a
 * user sees: B answers the image, and the upstream was paid once.
 */
import { randomUUID } from 'node:crypto';
import sharp from 'sharp';
import request from 'supertest';
import { createClient } from '@redis/client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

let fake: FakeSegmind;
const prefix = `journal-shared-${randomUUID()}`;
const running = new Set<TestServer>();

beforeAll(async () => {
  fake = await createFakeSegmind();
});
afterEach(async () => {
  for (const server of running) await stopTestServer(server);
  running.clear();
  fake.reset();
});
afterAll(async () => {
  await fake.close();
  const client = createClient({ url: inject('redisUrl') });
  await client.connect();
  try {
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length > 0) await client.del(keys);
  } finally {
    client.destroy();
  }
});

/** A segmind instance on the suite's Redis, under this file's prefix, on a CACHE_DIR of its own. */
async function instance(): Promise<TestServer> {
  const server = await startTestServer({
    UPSCALE_ENGINE: 'segmind',
    SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
    SEGMIND_BASE_URL: fake.url,
    SEGMIND_MODE: 'async',
    SEGMIND_POLL_INTERVAL_MS: '10',
    UPSTREAM_RETRIES: '0',
    REDIS_URL: inject('redisUrl'),
    REDIS_PREFIX: prefix,
  });
  running.add(server);
  return server;
}

async function upload(server: TestServer, body: Buffer): Promise<string> {
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(body);
  expect(res.status).toBe(201);
  return res.body.hash as string;
}

describe('a job submitted by instance A', () => {
  it('is resumed by instance B (another CACHE_DIR, same Redis): one submit in all, B answers the image', async () => {
    const a = await instance();
    const png = await makeImage(12, 10, { seed: 5 });
    const hash = await upload(a, png);
    const url = `/upscale/${hash}?seed=77&format=png`;

    // A submits; the fake keeps the job PROCESSING, and A keeps polling it.
    fake.holdJobs();
    // `.then` sends the request now (supertest waits for a consumer otherwise).
    const onA = request(a.app).get(url).then((res) => res);
    await fake.waitForPolls(1);
    expect(fake.submits).toHaveLength(1);
    const [job] = [...fake.jobs.values()];
    expect(job?.state).not.toBe('COMPLETED');

    // A stops before the job completes.
    await stopTestServer(a);
    running.delete(a);
    // A's client is told to come back, not given an error to keep.
    const cut = await onA;
    expect(cut.status).toBe(503);
    expect(Number(cut.headers['retry-after'])).toBeGreaterThan(0);
    expect(a.logs()).toContain('segmind job submitted');

    const b = await instance();
    expect(b.cacheDir).not.toBe(a.cacheDir);
    // The same bytes give the same hash: B has the source whether or not Redis shared it.
    expect(await upload(b, png)).toBe(hash);
    const pollsBeforeB = fake.calls.polls;
    const onB = request(b.app).get(url).buffer(true).then((res) => res);
    // B polls A's job while it is still held: resumed, not submitted again.
    await fake.waitForPolls(pollsBeforeB + 1);
    expect(fake.submits).toHaveLength(1);
    fake.releaseJobs();

    const res = await onB;
    expect(res.status).toBe(200);
    expect(res.headers['x-upscale-engine']).toBe('segmind');
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 24, height: 20 });
    expect(fake.submits).toHaveLength(1);
    expect(fake.calls.billed).toBe(1);
    // Every poll B made was for A's request id, at the URL the upstream returned to A.
    const bPolls = fake.requests.filter((r) => r.route === 'GET /v2/requests/:id/status').slice(pollsBeforeB);
    expect(bPolls.length).toBeGreaterThan(0);
    for (const poll of bPolls) expect(poll.url).toBe(`/v2/requests/${job!.id}/status`);
    expect(b.logs()).toContain('resuming journaled segmind job');
    expect(b.logs()).toContain(job!.id);
  });
});
