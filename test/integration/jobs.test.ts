/**
 * The jobs API through the real app against the fake upstream: one job per master, batches,
 * dry-run quotes that match the real run, webhooks, lanes, and jobs that survive a restart.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhook, WEBHOOK_SIGNATURE_HEADER } from '../../src/jobs/index.js';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';

const SIGNING_KEY = 'jobs-test-signing-key-0123';
const ADMIN = 'jobs-test-admin-token-0123';
let fake: FakeSegmind;
const servers: TestServer[] = [];

beforeAll(async () => {
  fake = await createFakeSegmind();
});
afterEach(async () => {
  for (const s of servers.splice(0)) await stopTestServer(s);
  fake.reset();
});
afterAll(() => fake.close());

async function segmindServer(env: Record<string, string> = {}, cacheDir?: string): Promise<TestServer> {
  const server = await startTestServer(
    {
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '10',
      UPSTREAM_RETRIES: '1',
      UPSTREAM_PRICE_USD: '0.05',
      ...env,
    },
    cacheDir,
  );
  servers.push(server);
  return server;
}

async function upload(server: TestServer, seed = 0): Promise<string> {
  const res = await request(server.app)
    .post('/sources')
    .set('Content-Type', 'image/png')
    .set('Authorization', `Bearer ${ADMIN}`)
    .send(await makeImage(16, 12, { seed }));
  expect(res.status).toBeLessThan(300);
  return res.body.hash as string;
}

const post = (server: TestServer, body: unknown, query = '') =>
  request(server.app).post(`/jobs${query}`).set('Content-Type', 'application/json').send(JSON.stringify(body));

/** Polls GET /jobs/:id until the job is final: each poll is an answer the client sees. */
async function final(server: TestServer, id: string) {
  await server.jobs.wait(id);
  const res = await request(server.app).get(`/jobs/${id}`);
  expect(res.status).toBe(200);
  return res.body as Record<string, unknown>;
}

describe('POST /jobs', () => {
  it('the same job twice is one job and one upstream call; its status, result and variants are served', async () => {
    const server = await segmindServer({ SIGNING_KEY, ADMIN_TOKEN: ADMIN });
    const hash = await upload(server);
    fake.holdJobs();
    const job = { source: hash, params: { scale: 2, creativity: 0.4 }, variants: [{ format: 'webp', w: 20 }] };
    const auth = (r: request.Test) => r.set('Authorization', `Bearer ${ADMIN}`);
    expect((await post(server, job)).status).toBe(401);
    const first = await auth(post(server, job));
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{64}$/), status: expect.stringMatching(/QUEUED|PROCESSING/) });
    expect(first.headers['location']).toBe(first.body.status_url);
    await fake.waitForSubmits(1);
    const second = await auth(post(server, { ...job, params: { scale_factor: 2, creativity: '0.40' } }));
    expect(second.body.id).toBe(first.body.id);
    expect((await request(server.app).get(`/jobs/${first.body.id}`)).body.status).toBe('PROCESSING');
    const early = await request(server.app).get(`/jobs/${first.body.id}/result`);
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('JOB_NOT_READY');

    fake.releaseJobs();
    const done = await final(server, first.body.id as string);
    expect(done).toMatchObject({ status: 'COMPLETED', error: null, engine: 'segmind', params: { scale_factor: 2, creativity: 0.4 } });
    expect(fake.submits).toHaveLength(1);
    const result = await request(server.app).get(`/jobs/${first.body.id}/result`).buffer(true);
    expect(result.status).toBe(200);
    expect(await sharp(result.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 32, height: 24 });
    // The variant URL is a signed /upscale URL of the same master: a HIT, no new call.
    const variants = done.variants as { url: string; format: string; w: number }[];
    expect(variants).toHaveLength(1);
    const variantPath = new URL(variants[0]!.url).pathname + new URL(variants[0]!.url).search;
    expect(variantPath).toMatch(/&sig=/);
    const variant = await request(server.app).get(variantPath).buffer(true);
    expect(variant.status).toBe(200);
    expect(variant.headers['x-cache']).toBe('HIT; tier=memory');
    expect(await sharp(variant.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 20, height: 15 });
    expect(fake.submits).toHaveLength(1);
  });

  it('a batch of 20 with 5 duplicates makes 15 calls, and one bad item gets its own error', async () => {
    const server = await segmindServer();
    const hash = await upload(server, 1);
    const items: unknown[] = Array.from({ length: 20 }, (_, i) => ({ source: hash, params: { seed: i % 15 } }));
    items.push({ source: hash, params: { creativity: 7 } });
    const res = await post(server, items);
    expect(res.status).toBe(200);
    const answers = res.body.items as { index: number; status: number; job?: { id: string }; problem?: Record<string, unknown> }[];
    expect(answers).toHaveLength(21);
    expect(answers[20]).toMatchObject({ index: 20, status: 400, problem: { code: 'INVALID_PARAM', param: 'params.creativity' } });
    const ids = new Set(answers.slice(0, 20).map((a) => a.job?.id));
    expect(ids.size).toBe(15);
    await Promise.all([...ids].map((id) => server.jobs.wait(id as string)));
    expect(fake.submits).toHaveLength(15);
    expect(fake.calls.billed).toBe(15);
  });

  it('dry_run makes no call, and its count is what the real run then makes', async () => {
    const server = await segmindServer();
    const hash = await upload(server, 2);
    const warm = await post(server, { source: hash, params: { seed: 100 } });
    await server.jobs.wait(warm.body.id);
    expect(fake.submits).toHaveLength(1);

    const batch = [
      { source: hash, params: { seed: 100 } }, // cached
      { source: hash, params: { seed: 101 } },
      { source: hash, params: { seed: 102 } },
      { source: hash, params: { seed: 101 } }, // duplicate of item 1
      { source: 'f'.repeat(64), params: {} }, // unknown source
    ];
    const quote = await post(server, batch, '?dry_run=true');
    expect(quote.status).toBe(200);
    expect(quote.body.items.slice(0, 4)).toMatchObject([
      { index: 0, cached: true, upstream_calls: 0, cost_usd: 0, engine: 'segmind' },
      { index: 1, cached: false, upstream_calls: 1, cost_usd: 0.05 },
      { index: 2, cached: false, upstream_calls: 1, cost_usd: 0.05 },
      { index: 3, cached: false, upstream_calls: 0, duplicate_of: 1 },
    ]);
    expect(quote.body.items[4]).toMatchObject({ index: 4, status: 404, problem: { code: 'SOURCE_NOT_FOUND' } });
    expect(quote.body.total).toEqual({ upstream_calls: 2, cost_usd: 0.1 });
    expect(fake.submits).toHaveLength(1);

    const real = await post(server, batch);
    await Promise.all((real.body.items as { job?: { id: string } }[]).flatMap((i) => (i.job ? [server.jobs.wait(i.job.id)] : [])));
    expect(fake.submits).toHaveLength(1 + quote.body.total.upstream_calls);
  });

  it('a FAILED job says so in the upstream words and is not paid for again', async () => {
    const server = await segmindServer();
    const hash = await upload(server, 3);
    fake.failWhen((payload) => payload.seed === 666, { error: 'NSFW content detected' });
    const job = { source: hash, params: { seed: 666 } };
    const res = await post(server, job);
    const done = await final(server, res.body.id);
    expect(done).toMatchObject({ status: 'FAILED', code: 'UPSTREAM_REJECTED', error: expect.stringContaining('NSFW content detected') });
    const again = await post(server, job);
    expect(again.body.status).toBe('FAILED');
    expect(fake.submits).toHaveLength(1);
  });
});

describe('webhooks', () => {
  let receiver: Server;
  let url: string;
  const deliveries: { body: string; headers: IncomingMessage['headers']; answered: number }[] = [];
  let failures = 0;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const answered = failures > 0 ? 500 : 200;
        if (failures > 0) failures -= 1;
        deliveries.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers, answered });
        res.writeHead(answered).end();
      });
    });
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook?token=t0k3n`;
  });
  afterAll(async () => {
    receiver.close();
    await once(receiver, 'close');
  });

  it('a receiver that fails once gets exactly one successful, correctly signed delivery', async () => {
    const server = await segmindServer({ SIGNING_KEY, ADMIN_TOKEN: ADMIN, SOURCE_ALLOW_PRIVATE: 'true' });
    const hash = await upload(server, 4);
    failures = 1;
    const res = await post(server, { source: hash, params: { seed: 7 }, webhook: url }).set('Authorization', `Bearer ${ADMIN}`);
    expect(res.status).toBe(202);
    expect(res.body.webhook).toEqual([{ url, status: 'pending', attempts: 0 }]);
    await server.jobs.wait(res.body.id);
    await server.waitForLog('webhook delivered');

    expect(deliveries.map((d) => d.answered)).toEqual([500, 200]);
    const ok = deliveries[1]!;
    expect(ok.body).toBe(deliveries[0]!.body);
    expect(JSON.parse(ok.body)).toMatchObject({ id: res.body.id, status: 'COMPLETED' });
    expect(verifyWebhook(ok.body, String(ok.headers[WEBHOOK_SIGNATURE_HEADER]), [SIGNING_KEY])).toBe(true);
    expect(verifyWebhook(ok.body, String(ok.headers[WEBHOOK_SIGNATURE_HEADER]), ['another-key-0123456789'])).toBe(false);
    const job = (await request(server.app).get(`/jobs/${res.body.id}`)).body;
    expect(job.webhook).toEqual([{ url, status: 'delivered', attempts: 2 }]);
    // The token in the webhook URL is never logged.
    expect(server.logs()).not.toContain('t0k3n');
  });
});

describe('lanes', () => {
  it('a warm run of 40 jobs delays an interactive miss by at most one upstream slot', async () => {
    const server = await segmindServer({ UPSTREAM_CONCURRENCY: '2', UPSTREAM_RPM: '10000' });
    const hash = await upload(server, 5);
    fake.holdJobs();
    const warm = await post(server, Array.from({ length: 40 }, (_, i) => ({ source: hash, params: { seed: 1000 + i }, lane: 'warm' })));
    expect(warm.status).toBe(200);
    await fake.waitForConcurrent(2);
    // The held jobs poll the fake every 10 ms: each poll is an event to re-check the limiter on.
    await fake.waitFor(() => server.pipeline.stats().limiter.pending === 38);
    expect(server.pipeline.stats().limiter.pendingByLane).toEqual({ visitor: 0, jobs: 0, warm: 38 });
    const ids = (warm.body.items as { job: { id: string } }[]).map((i) => i.job.id);
    const statuses = await Promise.all(ids.map(async (id) => (await request(server.app).get(`/jobs/${id}`)).body));
    expect(statuses.filter((s) => s.status === 'PROCESSING')).toHaveLength(2);
    const queuedJobs = statuses.filter((s) => s.status === 'QUEUED');
    // Every waiting job knows its place in line (38 places, each once) and a guess of its wait.
    expect(queuedJobs.map((s) => s.queue.position).sort((a: number, b: number) => a - b)).toEqual(Array.from({ length: 38 }, (_, i) => i + 1));
    for (const s of queuedJobs) expect(s.queue).toMatchObject({ lane: 'warm', estimated_wait_seconds: expect.any(Number) });
    const last = queuedJobs.find((s) => s.queue.position === 38);
    expect(last.queue.estimated_wait_seconds).toBeGreaterThan(queuedJobs.find((s) => s.queue.position === 1).queue.estimated_wait_seconds);

    const visitor = request(server.app).get(`/upscale/${hash}?seed=7777&format=png`).buffer(true);
    const answered = visitor.then((r) => r);
    await fake.waitFor(() => server.pipeline.stats().limiter.pendingByLane.visitor === 1);
    fake.releaseJobs();
    const res = await answered;
    expect(res.status).toBe(200);
    // Two warm jobs held the two slots; the visitor took the next one that freed.
    const order = fake.submits.map((s) => (s.body as { seed: number }).seed);
    expect(order.indexOf(7777)).toBe(2);
    await Promise.all(ids.map((id) => server.jobs.wait(id)));
    expect(fake.submits).toHaveLength(41);
  });
});

describe('restart', () => {
  it('a job journaled before a restart completes at start, with no new submit and no new request', async () => {
    const dir = await tempDir();
    const first = await segmindServer({}, dir);
    const hash = await upload(first, 6);
    fake.holdJobs();
    const res = await post(first, { source: hash, params: { seed: 42 } });
    await fake.waitForPolls(1);
    servers.splice(servers.indexOf(first), 1);
    await stopTestServer(first, { keepDir: true });
    expect(fake.submits).toHaveLength(1);

    const second = await segmindServer({}, dir);
    // Nobody asks the new instance for the image: it resumes the journaled job at start.
    fake.releaseJobs();
    await second.jobs.wait(res.body.id);
    expect(second.jobs.get(res.body.id).status).toBe('COMPLETED');
    expect(fake.submits).toHaveLength(1);
    expect(fake.calls.billed).toBe(1);
    const result = await request(second.app).get(`/jobs/${res.body.id}/result`).buffer(true);
    expect(await sharp(result.body as Buffer).metadata()).toMatchObject({ width: 32, height: 24 });
  });
});
