/**
 * The Segmind-compatible gateway, driven by a client that behaves as the official SDK does, against
 * the real app and the fake upstream: one upstream call per payload across /v1, /v2 and /upscale,
 * the upstream's error envelope, keys, image forms, and a restart in the middle of a job.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';
import { SegmindLikeClient } from '../helpers/segmind-sdk.js';

const CLIENT_KEY = 'gw-client-key-1';
let fake: FakeSegmind;
let origin: Server;
let originUrl: string;
let png: Buffer;
const started: TestServer[] = [];

beforeAll(async () => {
  fake = await createFakeSegmind();
  png = await makeImage(16, 12, { seed: 21 });
  origin = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'image/png' }).end(png));
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}/photo.png`;
});
afterEach(async () => {
  fake.releaseJobs();
  for (const s of started.splice(0)) await stopTestServer(s);
  fake.reset();
});
afterAll(async () => {
  await fake.close();
  origin.close();
  await once(origin, 'close');
});

/** A listening gateway (the SDK speaks HTTP to a base URL) and its client. */
async function gateway(env: Record<string, string> = {}, cacheDir?: string) {
  const server = await startTestServer(
    {
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '10',
      UPSTREAM_RETRIES: '1',
      GATEWAY_API_KEYS: `other-key-0,${CLIENT_KEY}`,
      SOURCE_ALLOW_PRIVATE: 'true',
      ...env,
    },
    cacheDir,
  );
  started.push(server);
  const { port } = await server.listen(0);
  const base = `http://127.0.0.1:${port}`;
  return { server, base, client: new SegmindLikeClient(CLIENT_KEY, base) };
}

const base64 = () => png.toString('base64');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('gateway', () => {
  it('the same payload twice through /v2 is one job and one upstream call', async () => {
    const { client } = await gateway();
    const payload = { image: base64(), scale_factor: 2, creativity: 0.4, output_format: 'webp' };
    const [a, b] = await Promise.all([client.run('clarity-upscaler', payload), client.run('clarity-upscaler', payload)]);
    expect(a.requestId).toBe(b.requestId);
    expect(a.submit).toMatchObject({ status: 'QUEUED', request_id: a.requestId });
    expect(String(a.submit.status_url)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v2\/requests\/[0-9a-f]{64}-webp\/status$/);
    expect(a.submit.poll_url).toBe(a.submit.status_url);
    expect(a.result).toMatchObject({ status: 'COMPLETED', error: null, metrics: { inference_time: expect.any(Number), cost: 0.05 } });
    expect(await sharp(a.image).metadata()).toMatchObject({ format: 'webp', width: 32, height: 24 });
    expect(fake.submits).toHaveLength(1);
    // The upstream saw our key, never the client's.
    expect(fake.submits[0]?.headers['x-api-key']).toBe(FAKE_SEGMIND_KEY);
  });

  it('/v1, /v2 and /upscale with the same payload make one upstream call in all', async () => {
    const { server, client } = await gateway();
    const sync = await client.sync('clarity-upscaler', { image: base64(), scale_factor: 2, seed: 5, output_format: 'jpg' });
    expect(sync.status).toBe(200);
    expect(sync.headers['content-type']).toBe('image/jpeg');
    expect(sync.headers['x-request-id']).toMatch(/^[0-9a-f]{64}-jpeg$/);
    expect(Number(sync.headers['x-cost'])).toBe(0.05);
    expect(await sharp(sync.body).metadata()).toMatchObject({ format: 'jpeg', width: 32, height: 24 });

    const v2 = await client.run('clarity-upscaler', { image: base64(), scale_factor: 2, seed: 5 });
    expect(v2.result.metrics).toEqual({ inference_time: 0, cost: 0, cache: 'HIT' });
    expect(await sharp(v2.image).metadata()).toMatchObject({ format: 'png', width: 32, height: 24 });
    const viaUpscale = await request(server.app).get(`/upscale/${sha256(png)}?scale=2&seed=5&format=png`);
    expect(viaUpscale.headers['x-cache']).toMatch(/^HIT/);
    // A cached answer says so the way the upstream reports money: no cost.
    const again = await client.sync('clarity-upscaler', { image: base64(), scale_factor: 2, seed: 5, output_format: 'jpg' });
    expect(again.headers).toMatchObject({ 'x-cost': '0', 'x-cache': 'HIT' });
    expect(fake.submits).toHaveLength(1);
  });

  it('a FAILED job is a 422 with the upstream reason, and is not paid for again', async () => {
    const { client } = await gateway();
    fake.failWhen((p) => p.seed === 666, { error: 'NSFW content detected' });
    const payload = { image: base64(), seed: 666 };
    const error = await client.run('clarity-upscaler', payload).catch((e: unknown) => e as { httpStatus: number; body: Record<string, unknown> });
    expect(error).toMatchObject({ httpStatus: 422, body: { status: 'FAILED', error: expect.stringContaining('NSFW content detected') } });
    const sync = await client.sync('clarity-upscaler', payload);
    expect(sync.status).toBe(422);
    expect(JSON.parse(sync.body.toString())).toEqual({ error: expect.stringContaining('NSFW content detected') });
    expect(fake.submits).toHaveLength(1);
  });

  it('keys, models, ids and fields are answered in the upstream envelope', async () => {
    const { base, client } = await gateway();
    const wrong = new SegmindLikeClient('not-a-key-123', base);
    const unauthorized = await wrong.submit('clarity-upscaler', { image: base64() });
    expect(unauthorized).toEqual({ status: 401, body: { error: 'Invalid API key' } });
    const otherModel = await client.submit('sdxl1.0-txt2img', { prompt: 'a fox' });
    expect(otherModel.status).toBe(404);
    expect(otherModel.body.error).toMatch(/only clarity-upscaler/);
    const invalid = await client.submit('clarity-upscaler', { image: base64(), creativity: 3 });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error).toMatch(/creativity.*0 to 1/);
    const unknownField = await client.submit('clarity-upscaler', { image: base64(), strength: 1 });
    expect(unknownField.status).toBe(400);
    expect(unknownField.body.error).toMatch(/strength/);
    const noImage = await client.submit('clarity-upscaler', { scale_factor: 2 });
    expect(noImage).toMatchObject({ status: 400, body: { error: expect.stringMatching(/image is required/) } });
    const unknownId = await fetch(`${base}/v2/requests/${'a'.repeat(64)}/status`, { headers: { 'x-api-key': CLIENT_KEY } });
    expect(unknownId.status).toBe(404);
    expect(await unknownId.json()).toEqual({ error: `Request ${'a'.repeat(64)} not found` });
    expect(fake.submits).toHaveLength(0);
  });

  it('image as a URL, base64 or a data URI is one source, one job', async () => {
    const { client } = await gateway();
    fake.holdJobs();
    const answers = await Promise.all(
      [originUrl, base64(), `data:image/png;base64,${base64()}`].map((image) => client.submit('clarity-upscaler', { image, seed: 9 })),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(new Set(answers.map((a) => a.body.request_id)).size).toBe(1);
    fake.releaseJobs();
    const done = await client.finish(answers[0]!.body);
    expect(await sharp(done.image).metadata()).toMatchObject({ width: 16, height: 12 });
    expect(fake.submits).toHaveLength(1);
  });

  it('a restart in the middle of a job: the same request id completes with no second submit', async () => {
    const dir = await tempDir();
    const first = await gateway({}, dir);
    fake.holdJobs();
    const { body: submit } = await first.client.submit('clarity-upscaler', { image: base64(), seed: 77 });
    await fake.waitForPolls(1);
    started.splice(started.indexOf(first.server), 1);
    await stopTestServer(first.server, { keepDir: true });

    const second = await gateway({}, dir);
    fake.releaseJobs();
    // The client still holds the first instance's URLs; the new instance answers the same id.
    const moved = Object.fromEntries(Object.entries(submit).map(([k, v]) => [k, typeof v === 'string' ? v.replace(first.base, second.base) : v]));
    const done = await second.client.finish(moved);
    expect(done.requestId).toBe(submit.request_id);
    expect(await sharp(done.image).metadata()).toMatchObject({ width: 16, height: 12 });
    expect(fake.submits).toHaveLength(1);
  });

  it('limits answer in the envelope: a miss rate per key, the body size', async () => {
    const { server, base, client } = await gateway({ CLIENT_MISS_RPM: '1', SOURCE_MAX_BYTES: '64KiB' });
    expect((await client.submit('clarity-upscaler', { image: base64(), seed: 1 })).status).toBe(200);
    const limited = await client.submit('clarity-upscaler', { image: base64(), seed: 2 });
    expect(limited.status).toBe(429);
    expect(limited.body.error).toMatch(/CLIENT_MISS_RPM/);
    // The same work again is a join, not a miss; another key has its own budget.
    expect((await client.submit('clarity-upscaler', { image: base64(), seed: 1 })).status).toBe(200);
    expect((await new SegmindLikeClient('other-key-0', base).submit('clarity-upscaler', { image: base64(), seed: 2 })).status).toBe(200);
    const huge = await client.submit('clarity-upscaler', { image: Buffer.alloc(200_000, 7).toString('base64') });
    expect(huge.status).toBe(413);
    expect(huge.body).toEqual({ error: expect.stringMatching(/larger than/) });
    await fake.waitForSubmits(2);
    await server.jobs.settled();
    expect(fake.submits).toHaveLength(2);
  });

  it('is off without keys, and GATEWAY_OPEN runs it on the local engine with no key at all', async () => {
    const off = await startTestServer();
    started.push(off);
    expect((await request(off.app).post('/v2/clarity-upscaler').send({ image: base64() })).status).toBe(404);

    const open = await startTestServer({ GATEWAY_OPEN: 'true' });
    started.push(open);
    const res = await request(open.app).post('/v1/clarity-upscaler').send({ image: base64(), output_format: 'webp' }).buffer(true);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('image/webp');
    // scale_factor defaults to 1, as upstream.
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 16, height: 12 });
  });
});
