/**
 * The segmind engine through the real app, against the fake upstream on loopback: what the
 * upstream receives, how often it is paid, and what each of its answers looks like to a client.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, FAULTS, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { DOCUMENTED_DEFAULTS } from '../helpers/upstream-defaults.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';

let fake: FakeSegmind;
const servers: TestServer[] = [];
/** Every log line of every server in this file: the key must be in none. */
let allLogs = '';

beforeAll(async () => {
  fake = await createFakeSegmind();
});
afterEach(async () => {
  for (const s of servers.splice(0)) {
    allLogs += s.logs();
    await stopTestServer(s);
  }
  fake.reset();
});
afterAll(async () => {
  await fake.close();
  expect(allLogs.length).toBeGreaterThan(1000);
  expect(allLogs).not.toContain(FAKE_SEGMIND_KEY);
});

async function segmindServer(env: Record<string, string> = {}, cacheDir?: string): Promise<TestServer> {
  const server = await startTestServer(
    {
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '10',
      UPSTREAM_RETRIES: '1',
      ...env,
    },
    cacheDir,
  );
  servers.push(server);
  return server;
}

async function upload(server: TestServer, body: Buffer): Promise<string> {
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(body);
  expect(res.status).toBeLessThan(300);
  return res.body.hash as string;
}

/** Every response body and header of `res`, as text: where a leaked key would show. */
const exposed = (res: request.Response) => JSON.stringify(res.headers) + (res.text ?? '') + JSON.stringify(res.body ?? '');

const EVERY_PARAM =
  'scale=1.5&creativity=0.4&resemblance=1.2&dynamic=8&sharpen=2&handfix=hands_only&seed=42&steps=25' +
  '&scheduler=Euler%20a&model=flat2DAnimerge_v45Sharp.safetensors' +
  '&custom_sd_model=https%3A%2F%2Fexample.com%2Fm.safetensors&prompt=a%20fox&negative_prompt=blurry' +
  '&lora_links=https%3A%2F%2Fexample.com%2Fa,https%3A%2F%2Fexample.com%2Fb' +
  '&tiling_width=128&tiling_height=160&downscaling=true&downscaling_resolution=512&format=png';

describe.each(['async', 'sync'] as const)('SEGMIND_MODE=%s', (mode) => {
  it('sends the exact payload: every field under its upstream name and type, the image inline', async () => {
    const server = await segmindServer({ SEGMIND_MODE: mode });
    const png = await makeImage(24, 16);
    const maskPng = await makeImage(24, 16, { seed: 9 });
    const hash = await upload(server, png);
    const mask = await upload(server, maskPng);

    const res = await request(server.app).get(`/upscale/${hash}?${EVERY_PARAM}&mask=${mask}`).buffer(true);
    expect(res.status).toBe(200);
    expect(res.headers['x-upscale-engine']).toBe('segmind');
    expect(res.headers['x-upscale-ignored']).toBeUndefined();
    expect(fake.submits).toHaveLength(1);
    const submit = fake.submits[0]!;
    expect(submit.route).toBe(mode === 'async' ? 'POST /v2/clarity-upscaler' : 'POST /v1/clarity-upscaler');
    expect(submit.headers['x-api-key']).toBe(FAKE_SEGMIND_KEY);
    expect(submit.body).toEqual({
      image: png.toString('base64'),
      mask: maskPng.toString('base64'),
      scale_factor: 1.5,
      creativity: 0.4,
      resemblance: 1.2,
      dynamic: 8,
      sharpen: 2,
      handfix: 'hands_only',
      seed: 42,
      num_inference_steps: 25,
      scheduler: 'Euler a',
      sd_model: 'flat2DAnimerge_v45Sharp.safetensors',
      custom_sd_model: 'https://example.com/m.safetensors',
      prompt: 'a fox',
      negative_prompt: 'blurry',
      lora_links: 'https://example.com/a,https://example.com/b',
      tiling_width: 128,
      tiling_height: 160,
      downscaling: true,
      downscaling_resolution: 512,
      output_format: 'png',
    });
    // With a mask the upstream answers at the input size.
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 24, height: 16 });
    expect(exposed(res)).not.toContain(FAKE_SEGMIND_KEY);
  });

  it('fills the documented defaults for a bare URL', async () => {
    const server = await segmindServer({ SEGMIND_MODE: mode });
    const hash = await upload(server, await makeImage(20, 10));
    const res = await request(server.app).get(`/upscale/${hash}?format=webp`).buffer(true);
    expect(res.status).toBe(200);
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 40, height: 20 });
    const { image, ...rest } = fake.submits[0]!.body as Record<string, unknown>;
    expect(typeof image).toBe('string');
    expect(rest).toEqual({ ...DOCUMENTED_DEFAULTS, output_format: 'png' });
  });

  it('30 identical concurrent requests make one submit', async () => {
    const server = await segmindServer({ SEGMIND_MODE: mode });
    const hash = await upload(server, await makeImage(16, 16));
    fake.holdJobs();
    const all = Promise.all(
      Array.from({ length: 30 }, () => request(server.app).get(`/upscale/${hash}?creativity=0.5`).set('Accept', 'image/webp')),
    );
    await fake.waitForSubmits(1);
    fake.releaseJobs();
    const responses = await all;
    expect(responses.map((r) => r.status)).toEqual(Array(30).fill(200));
    expect(fake.submits).toHaveLength(1);
    expect(fake.calls.billed).toBe(1);
  });

  it('distinct requests never exceed UPSTREAM_CONCURRENCY jobs in flight', async () => {
    const server = await segmindServer({ SEGMIND_MODE: mode, UPSTREAM_CONCURRENCY: '2' });
    const hash = await upload(server, await makeImage(16, 16));
    fake.holdJobs();
    const all = Promise.all(
      Array.from({ length: 6 }, (_, seed) => request(server.app).get(`/upscale/${hash}?seed=${seed}&format=png`)),
    );
    await fake.waitForConcurrent(2);
    expect(server.pipeline.stats().limiter).toMatchObject({ active: 2, pending: 4 });
    fake.releaseJobs();
    const responses = await all;
    expect(responses.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect(fake.submits).toHaveLength(6);
    expect(fake.concurrentJobs.max).toBe(2);
  });
});

describe('upstream failures as a client sees them', () => {
  it.each([
    ['401 bad key', 502, 'UPSTREAM_AUTH', 1, FAULTS.unauthorized()],
    ['403 model not permitted', 502, 'UPSTREAM_AUTH', 1, FAULTS.forbidden()],
    ['406 out of credits', 502, 'UPSTREAM_AUTH', 1, FAULTS.insufficientCredits()],
    ['410 model retired', 502, 'UPSTREAM_AUTH', 1, FAULTS.retired()],
    ['400 invalid parameter', 422, 'UPSTREAM_INVALID_REQUEST', 1, FAULTS.badRequest('Invalid value for tiling_width')],
    ['500 past the retries', 503, 'UPSTREAM_UNAVAILABLE', 2, FAULTS.serverError(500)],
    ['502 HTML past the retries', 503, 'UPSTREAM_UNAVAILABLE', 2, FAULTS.htmlBadGateway()],
  ] as const)('%s → %i %s after %i submit(s)', async (_name, status, code, submits, fault) => {
    const server = await segmindServer();
    const hash = await upload(server, await makeImage(16, 16));
    fake.inject('submit', fault, 10);
    const res = await request(server.app).get(`/upscale/${hash}?format=png`);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.body.code).toBe(code);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.text).not.toMatch(/<html|<!DOCTYPE/i);
    expect(exposed(res)).not.toContain(FAKE_SEGMIND_KEY);
    if (status === 503) expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(fake.submits).toHaveLength(submits);
    if (status === 502) expect(server.logs()).toMatch(/"level":50/);
  });

  it('a FAILED payload answers 422 with the reason and is not paid for again, even after a restart', async () => {
    const server = await segmindServer();
    const hash = await upload(server, await makeImage(16, 16));
    fake.failWhen((payload) => payload.seed === 7, { error: 'Image flagged by the content filter' });
    const first = await request(server.app).get(`/upscale/${hash}?seed=7&format=png`);
    expect(first.status).toBe(422);
    expect(first.body).toMatchObject({ code: 'UPSTREAM_REJECTED' });
    expect(first.body.detail).toContain('content filter');
    const again = await request(server.app).get(`/upscale/${hash}?seed=7&format=webp`);
    expect(again.status).toBe(422);
    expect(fake.submits).toHaveLength(1);

    await stopTestServer(servers.pop()!, { keepDir: true });
    const restarted = await segmindServer({}, server.cacheDir);
    const afterRestart = await request(restarted.app).get(`/upscale/${hash}?seed=7&format=png`);
    expect(afterRestart.status).toBe(422);
    expect(afterRestart.body.detail).toContain('content filter');
    expect(fake.submits).toHaveLength(1);
    // Another payload is not affected.
    expect((await request(restarted.app).get(`/upscale/${hash}?seed=8&format=png`)).status).toBe(200);
  });

  it('a 429 storm pauses every call and ends in success', async () => {
    const server = await segmindServer({ UPSTREAM_RETRIES: '4' });
    const hash = await upload(server, await makeImage(16, 16));
    fake.inject('submit', FAULTS.rateLimited({ retryAfter: '1' }), 3);
    // `.then` sends the request now (supertest waits for a consumer otherwise).
    const get = (seed: number) => request(server.app).get(`/upscale/${hash}?seed=${seed}&format=png`).then((r) => r);
    const first = get(1);
    // Wait for the engine to have read the first 429: the limiter is then paused for everyone.
    const pausedUntil = await new Promise<number>((resolve) => {
      const check = () => {
        const until = server.pipeline.stats().limiter.pausedUntil;
        if (until > 0) resolve(until);
        else setImmediate(check);
      };
      check();
    });
    const others = [get(2), get(3)];
    const responses = await Promise.all([first, ...others]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(fake.submits).toHaveLength(6);
    expect(fake.calls.billed).toBe(3);
    // No submit of any request (the others' first ones included) arrived before that pause ended.
    const after = fake.submits.slice(1).map((s) => s.at);
    expect(Math.min(...after)).toBeGreaterThanOrEqual(pausedUntil - 5);
  });

  it('UPSTREAM_DAILY_LIMIT answers 503 once spent, without a submit', async () => {
    const server = await segmindServer({ UPSTREAM_DAILY_LIMIT: '1' });
    const hash = await upload(server, await makeImage(16, 16));
    expect((await request(server.app).get(`/upscale/${hash}?seed=1&format=png`)).status).toBe(200);
    const spent = await request(server.app).get(`/upscale/${hash}?seed=2&format=png`);
    expect(spent.status).toBe(503);
    expect(spent.body.code).toBe('DAILY_LIMIT_REACHED');
    expect(Number(spent.headers['retry-after'])).toBeGreaterThan(0);
    expect(fake.submits).toHaveLength(1);
    // Cached results are still served.
    expect((await request(server.app).get(`/upscale/${hash}?seed=1&format=webp`)).status).toBe(200);
  });
});

describe('UPSTREAM_FALLBACK=local', () => {
  it('serves a local result, briefly cached, while the upstream answers 406; the real one once it recovers', async () => {
    const server = await segmindServer({ UPSTREAM_FALLBACK: 'local' });
    const hash = await upload(server, await makeImage(16, 16));
    fake.inject('submit', FAULTS.insufficientCredits(), 100);

    const degraded = await request(server.app).get(`/upscale/${hash}?format=png`).buffer(true);
    expect(degraded.status).toBe(200);
    expect(degraded.headers['x-upscale-engine']).toBe('local:esrgan-slim; fallback');
    expect(degraded.headers['cache-control']).toBe('public, max-age=300');
    expect(await sharp(degraded.body as Buffer).metadata()).toMatchObject({ width: 32, height: 32 });
    const cachedFallback = await request(server.app).get(`/upscale/${hash}?format=png`);
    expect(cachedFallback.headers['x-upscale-engine']).toBe('local:esrgan-slim; fallback');
    expect(fake.submits).toHaveLength(2);

    fake.clearFaults();
    // A fallback is never stored as the segmind master: with the TTL of 0, the next request asks again.
    const noCache = await segmindServer({ UPSTREAM_FALLBACK: 'local', FALLBACK_TTL_SECONDS: '0' }, await tempDir());
    const h2 = await upload(noCache, await makeImage(16, 16));
    fake.inject('submit', FAULTS.unauthorized(), 1);
    expect((await request(noCache.app).get(`/upscale/${h2}?format=png`)).headers['x-upscale-engine']).toBe(
      'local:esrgan-slim; fallback',
    );
    const recovered = await request(noCache.app).get(`/upscale/${h2}?format=png`);
    expect(recovered.status).toBe(200);
    expect(recovered.headers['x-upscale-engine']).toBe('segmind');
    expect(recovered.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('also while the upstream stays down past the retries', async () => {
    const server = await segmindServer({ UPSTREAM_FALLBACK: 'local', UPSTREAM_RETRIES: '0' });
    const hash = await upload(server, await makeImage(16, 16));
    fake.inject('submit', FAULTS.serverError(502), 5);
    const res = await request(server.app).get(`/upscale/${hash}?format=png`);
    expect(res.status).toBe(200);
    expect(res.headers['x-upscale-engine']).toBe('local:esrgan-slim; fallback');
  });
});

describe('a process killed mid-poll', () => {
  it('restarted on the same CACHE_DIR, resumes the journaled job with zero new submits', async () => {
    const cacheDir = await tempDir();
    const env = {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      CACHE_DIR: cacheDir,
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '10',
      LOG_LEVEL: 'info',
    };
    // A real process, so that SIGKILL leaves what a crash leaves.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /"port":(\d+)/.exec(out);
        if (match) resolve(Number(match[1]));
      });
      child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${out}`)));
    });
    const base = `http://127.0.0.1:${port}`;
    const png = await makeImage(16, 16);
    const uploaded = await fetch(`${base}/sources`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
    const { hash } = (await uploaded.json()) as { hash: string };

    fake.holdJobs();
    const pending = fetch(`${base}/upscale/${hash}?format=png`).catch(() => undefined);
    await fake.waitForPolls(1);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    await pending;
    expect(fake.submits).toHaveLength(1);
    allLogs += out;

    const restarted = await segmindServer({}, cacheDir);
    fake.releaseJobs();
    const res = await request(restarted.app).get(`/upscale/${hash}?format=png`).buffer(true);
    expect(res.status).toBe(200);
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ width: 32, height: 32 });
    expect(fake.submits).toHaveLength(1);
    expect(fake.calls.billed).toBe(1);
  });
});
