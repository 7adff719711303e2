/**
 * The Segmind engine against the fake upstream (test/fakes/segmind.ts) over loopback: real undici,
 * real sockets, real sharp. Every upstream answer of UPSTREAM.md, asserting what was paid for
 * (submit counters of the fake) as much as what came back. Engine-level only; the app-level
 * behaviour (single-flight, failure memory, fallback) is tested through createApp elsewhere.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createDiskJournal,
  createSegmindEngine,
  UpstreamAuthError,
  UpstreamInvalidRequestError,
  UpstreamRejectedError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
  type SegmindEngineOptions,
} from '../../src/engines/segmind/index.js';
import type { Engine, EngineInput, SourceImage, SubmitGate } from '../../src/engines/types.js';
import { CdnError } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import type { ClarityParams } from '../../src/params/types.js';
import { createFakeSegmind, FAKE_SEGMIND_KEY, FAULTS, type Fault, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { DOCUMENTED_DEFAULTS } from '../helpers/upstream-defaults.js';

const KEY = FAKE_SEGMIND_KEY;
const RETRIES = 2;

// Every log line of every engine in this file: the key must appear in none (checked in afterAll).
const logLines: string[] = [];
const logger = createLogger('debug', { write: (line: string) => void logLines.push(line) });
/** Every error any engine threw here: the key must appear in none of their fields. */
const thrown: unknown[] = [];

/** A real gate, small: counts admissions, records and honours pauses. */
function testGate(onAcquire?: (n: number) => Promise<void> | void) {
  let pausedUntil = 0;
  const gate = {
    acquires: 0,
    pauses: [] as number[],
    async acquire(signal?: AbortSignal) {
      gate.acquires++;
      await onAcquire?.(gate.acquires);
      const wait = pausedUntil - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      signal?.throwIfAborted();
    },
    pauseUntil(epochMs: number) {
      gate.pauses.push(epochMs);
      pausedUntil = Math.max(pausedUntil, epochMs);
    },
  } satisfies SubmitGate & Record<string, unknown>;
  return gate;
}

const DEFAULTS: ClarityParams = DOCUMENTED_DEFAULTS;

/** What the upstream must receive for `i`: the image inline, every field as given, always PNG. */
const expectedPayload = (i: EngineInput) => ({ image: i.source.data.toString('base64'), ...i.params, output_format: 'png' });

async function sourceImage(width = 24, height = 16, seed = 0): Promise<SourceImage> {
  const data = await makeImage(width, height, { seed });
  return { hash: createHash('sha256').update(data).digest('hex'), data, width, height, format: 'png', hasAlpha: false };
}

let source: SourceImage;
const input = (params: Partial<ClarityParams> = {}, extra: Partial<EngineInput> = {}): EngineInput => ({
  masterKey: randomBytes(32).toString('hex'),
  source,
  params: { ...DEFAULTS, ...params },
  ...extra,
});

let fake: FakeSegmind;
let journalDir: string;
const engines: Engine[] = [];

function engine(overrides: Partial<SegmindEngineOptions> = {}): Engine {
  const e = createSegmindEngine({
    apiKey: KEY,
    baseUrl: fake.url,
    mode: 'async',
    pollIntervalMs: 20,
    timeoutMs: 10_000,
    retries: RETRIES,
    imageDelivery: 'base64',
    journal: createDiskJournal(journalDir),
    logger,
    retryPolicy: { baseDelayMs: 5, maxDelayMs: 40 },
    requestTimeoutMs: 5_000,
    ...overrides,
  });
  engines.push(e);
  return e;
}

/** Runs the engine, recording any error for the secret check. */
async function run(e: Engine, i: EngineInput, gate: SubmitGate, signal?: AbortSignal) {
  try {
    return await e.upscale(i, { gate, ...(signal ? { signal } : {}) });
  } catch (error) {
    thrown.push(error);
    throw error;
  }
}

async function failure(promise: Promise<unknown>): Promise<CdnError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CdnError);
  return error as CdnError;
}

beforeAll(async () => {
  source = await sourceImage();
});

beforeEach(async () => {
  fake = await createFakeSegmind({ pollsBeforeComplete: 2 });
  journalDir = await mkdtemp(join(tmpdir(), 'segmind-journal-'));
});

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  await fake.close();
  await rm(journalDir, { recursive: true, force: true });
});

afterAll(() => {
  // Lines were written (the check below is not vacuous), and none holds the key.
  expect(logLines.length).toBeGreaterThan(50);
  expect(logLines.some((l) => l.includes('segmind job submitted'))).toBe(true);
  expect(logLines.filter((l) => l.includes(KEY))).toEqual([]);
  for (const error of thrown) {
    const e = error as CdnError & { cause?: unknown };
    const text = JSON.stringify({ ...e, message: e.message, detail: e.detail, cause: String(e.cause), causeCode: (e.cause as { code?: string } | undefined)?.code });
    expect(text).not.toContain(KEY);
  }
});

describe('v2 (async)', () => {
  it('submits the exact payload with the key, polls, downloads, and returns PNG at input × scale', async () => {
    const gate = testGate();
    const i = input({ scale_factor: 2 });
    const result = await run(engine(), i, gate);

    expect(result).toMatchObject({ engine: 'segmind', paid: true, width: 48, height: 32, cost: 0.05, remainingCredits: 99.95 });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(0);
    const meta = await sharp(result.data).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 48, height: 32 });

    expect(fake.calls).toMatchObject({ submitsV2: 1, submitsV1: 0, billed: 1, polls: 3, results: 1, downloads: 1 });
    expect(gate.acquires).toBe(1);
    expect(gate.pauses).toEqual([]);
    const [submit] = fake.submits;
    expect(submit?.headers['x-api-key']).toBe(KEY);
    expect(submit?.headers['content-type']).toBe('application/json');
    expect(submit?.body).toEqual(expectedPayload(i));
    // Status and result reads carry the key (same origin); the image host gets none.
    for (const r of fake.requests.filter((r) => r.route.startsWith('GET /v2/'))) expect(r.headers['x-api-key']).toBe(KEY);
    const download = fake.requests.find((r) => r.route === 'GET /outputs/:id');
    expect(download?.headers['x-api-key']).toBeUndefined();
  });

  it('sends every field set, under its upstream name and type', async () => {
    const mask = await sourceImage(24, 16, 3);
    const params: ClarityParams = {
      scale_factor: 1.5,
      creativity: 0.6,
      resemblance: 1.1,
      dynamic: 9,
      sharpen: 2,
      handfix: 'hands_only',
      seed: 99,
      num_inference_steps: 25,
      scheduler: 'Euler a',
      sd_model: 'epicrealism_naturalSinRC1VAE.safetensors [84d76a0328]',
      custom_sd_model: 'https://models.example.com/x.safetensors',
      prompt: 'sharp',
      negative_prompt: 'soft',
      lora_links: 'https://models.example.com/l.safetensors',
      mask: mask.hash,
      tiling_width: 96,
      tiling_height: 192,
      downscaling: true,
      downscaling_resolution: 512,
    };
    const result = await run(engine(), input(params, { mask }), testGate());
    expect(fake.submits[0]?.body).toEqual({
      image: source.data.toString('base64'),
      scale_factor: 1.5,
      creativity: 0.6,
      resemblance: 1.1,
      dynamic: 9,
      sharpen: 2,
      handfix: 'hands_only',
      seed: 99,
      num_inference_steps: 25,
      scheduler: 'Euler a',
      sd_model: 'epicrealism_naturalSinRC1VAE.safetensors [84d76a0328]',
      custom_sd_model: 'https://models.example.com/x.safetensors',
      prompt: 'sharp',
      negative_prompt: 'soft',
      lora_links: 'https://models.example.com/l.safetensors',
      mask: mask.data.toString('base64'),
      tiling_width: 96,
      tiling_height: 192,
      downscaling: true,
      downscaling_resolution: 512,
      output_format: 'png',
    });
    // With a mask the upstream keeps the input size (UPSTREAM.md).
    expect(result).toMatchObject({ width: 24, height: 16 });
  });

  it('delivers the source as {PUBLIC_BASE_URL}/sources/<hash>, which the upstream fetches', async () => {
    const fetched: string[] = [];
    const sources: Server = createServer((req, res) => {
      fetched.push(req.url ?? '');
      if (req.url === `/sources/${source.hash}`) res.writeHead(200, { 'content-type': 'image/png' }).end(source.data);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => sources.listen(0, '127.0.0.1', resolve));
    const publicBaseUrl = `http://127.0.0.1:${(sources.address() as { port: number }).port}`;
    try {
      const result = await run(engine({ imageDelivery: 'url', publicBaseUrl }), input({ scale_factor: 3 }), testGate());
      expect((fake.submits[0]?.body as { image: string }).image).toBe(`${publicBaseUrl}/sources/${source.hash}`);
      expect(fetched).toEqual([`/sources/${source.hash}`]);
      expect(result).toMatchObject({ width: 72, height: 48 });
    } finally {
      await new Promise((resolve) => sources.close(resolve));
    }
  });

  it('re-encodes an output the upstream sent in another format as PNG', async () => {
    await fake.close();
    fake = await createFakeSegmind({ forceOutputFormat: 'webp' });
    const result = await run(engine(), input({ scale_factor: 2 }), testGate());
    expect(await sharp(result.data).metadata()).toMatchObject({ format: 'png', width: 48, height: 32 });
  });

  it('journals the job right after the submit, before polling, until the result is stored', async () => {
    fake.holdJobs();
    const i = input();
    const pending = run(engine(), i, testGate());
    await fake.waitForPolls(1);
    const journal = createDiskJournal(journalDir);
    const entry = await journal.get(i.masterKey);
    const job = [...fake.jobs.values()][0];
    expect(entry).toEqual({
      masterKey: i.masterKey,
      requestId: job?.id,
      statusUrl: `${fake.url}/v2/requests/${job?.id}/status`,
      responseUrl: `${fake.url}/v2/requests/${job?.id}`,
      submittedAt: expect.any(Number),
      sources: [i.source.hash],
      params: i.params,
    });
    fake.releaseJobs();
    const result = await pending;
    expect(await journal.get(i.masterKey)).toBeDefined(); // still there: not stored yet
    await result.onStored?.();
    expect(await journal.get(i.masterKey)).toBeUndefined();
    expect(await readdir(journalDir)).toEqual([]);
  });

  it('keeps distinct jobs in flight at once (the fake counts them)', async () => {
    fake.holdJobs();
    const e = engine();
    const sources = await Promise.all([1, 2, 3].map((seed) => sourceImage(16, 16, seed)));
    const all = sources.map((s) => run(e, input({}, { source: s }), testGate()));
    await fake.waitForConcurrent(3);
    expect(fake.concurrentJobs).toEqual({ current: 3, max: 3 });
    fake.releaseJobs();
    const results = await Promise.all(all);
    expect(results.map((r) => [r.width, r.height])).toEqual([[32, 32], [32, 32], [32, 32]]);
    expect(fake.concurrentJobs.current).toBe(0);
    expect(fake.calls.submitsV2).toBe(3);
  });
});

describe('v1 (sync)', () => {
  it('posts to /v1, reads the raw image and the accounting headers', async () => {
    const gate = testGate();
    const i = input({ scale_factor: 2 });
    const result = await run(engine({ mode: 'sync' }), i, gate);
    expect(result).toMatchObject({ engine: 'segmind', paid: true, width: 48, height: 32, cost: 0.05, remainingCredits: 99.95 });
    expect(await sharp(result.data).metadata()).toMatchObject({ format: 'png' });
    expect(fake.calls).toMatchObject({ submitsV1: 1, submitsV2: 0, polls: 0, results: 0, downloads: 0, billed: 1 });
    expect(fake.submits[0]?.headers['x-api-key']).toBe(KEY);
    expect(fake.submits[0]?.body).toEqual(expectedPayload(i));
    expect(gate.acquires).toBe(1);
    expect(await readdir(journalDir).catch(() => [])).toEqual([]);
  });

  it('reads x-credits-consumed when the cost comes under that name', async () => {
    await fake.close();
    fake = await createFakeSegmind({ costHeader: 'x-credits-consumed', cost: 0.07 });
    const result = await run(engine({ mode: 'sync' }), input({ scale_factor: 1 }), testGate());
    expect(result).toMatchObject({ cost: 0.07, remainingCredits: 99.93, width: 24, height: 16 });
  });

  it('re-encodes a JPEG answer as PNG', async () => {
    await fake.close();
    fake = await createFakeSegmind({ forceOutputFormat: 'jpg' });
    const result = await run(engine({ mode: 'sync' }), input({ scale_factor: 2 }), testGate());
    expect(await sharp(result.data).metadata()).toMatchObject({ format: 'png', width: 48, height: 32 });
  });

  it('holds the answer until the job is released, counting it in flight', async () => {
    fake.holdJobs();
    const pending = run(engine({ mode: 'sync' }), input(), testGate());
    await fake.waitForConcurrent(1);
    fake.releaseJobs();
    await expect(pending).resolves.toMatchObject({ width: 48 });
    expect(fake.concurrentJobs).toEqual({ current: 0, max: 1 });
  });
});

interface SubmitFaultRow {
  name: string;
  fault: Fault;
  error: new (...args: never[]) => CdnError;
  status: number;
  code: string;
  /** Submits the fake sees: 1 for final answers, RETRIES + 1 for retried ones. */
  submits: number;
  /** gate.pauseUntil calls (429 only). */
  pauses: number;
  detail: RegExp;
  reason?: string;
  ambiguous?: boolean;
}

const SUBMIT_FAULTS: SubmitFaultRow[] = [
  { name: '400 with error', fault: FAULTS.badRequest('Invalid value for creativity'), error: UpstreamInvalidRequestError, status: 422, code: 'UPSTREAM_INVALID_REQUEST', submits: 1, pauses: 0, detail: /Invalid value for creativity/ },
  { name: '401', fault: FAULTS.unauthorized(), error: UpstreamAuthError, status: 502, code: 'UPSTREAM_AUTH', submits: 1, pauses: 0, detail: /SEGMIND_API_KEY/, reason: 'key' },
  { name: '403', fault: FAULTS.forbidden(), error: UpstreamAuthError, status: 502, code: 'UPSTREAM_AUTH', submits: 1, pauses: 0, detail: /HTTP 403/, reason: 'forbidden' },
  { name: '406 plain text Insufficient credits', fault: FAULTS.insufficientCredits(), error: UpstreamAuthError, status: 502, code: 'UPSTREAM_AUTH', submits: 1, pauses: 0, detail: /Insufficient credits/, reason: 'credits' },
  { name: '406 spend limit', fault: FAULTS.spendLimit(), error: UpstreamAuthError, status: 502, code: 'UPSTREAM_AUTH', submits: 1, pauses: 0, detail: /spend limit/, reason: 'credits' },
  { name: '410', fault: FAULTS.retired(), error: UpstreamAuthError, status: 502, code: 'UPSTREAM_AUTH', submits: 1, pauses: 0, detail: /retired/, reason: 'retired' },
  { name: '405 HTML', fault: FAULTS.methodNotAllowedHtml(), error: UpstreamAuthError, status: 502, code: 'UPSTREAM_AUTH', submits: 1, pauses: 0, detail: /HTML page.*SEGMIND_BASE_URL/, reason: 'protocol' },
  { name: '422 FAILED on submit', fault: FAULTS.failed('content blocked'), error: UpstreamRejectedError, status: 422, code: 'UPSTREAM_REJECTED', submits: 1, pauses: 0, detail: /content blocked/ },
  { name: '429 with Retry-After 0, every time', fault: FAULTS.rateLimited({ retryAfter: '0' }), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: RETRIES + 1, detail: /HTTP 429 through 2 retries/ },
  { name: '429 with neither header, every time', fault: FAULTS.rateLimited(), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: RETRIES + 1, detail: /HTTP 429/ },
  { name: '500, every time', fault: FAULTS.serverError(500), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: 0, detail: /HTTP 500 through 2 retries/ },
  { name: '502, every time', fault: FAULTS.serverError(502), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: 0, detail: /HTTP 502/ },
  { name: '504, every time', fault: FAULTS.serverError(504), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: 0, detail: /HTTP 504/ },
  { name: 'plain-text 500, every time', fault: FAULTS.plainTextServerError(500), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: 0, detail: /HTTP 500/ },
  { name: 'HTML 502, every time', fault: FAULTS.htmlBadGateway(), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: RETRIES + 1, pauses: 0, detail: /HTTP 502/ },
  { name: 'connection destroyed after the request arrived (billed)', fault: FAULTS.destroy(true), error: UpstreamUnavailableError, status: 503, code: 'UPSTREAM_UNAVAILABLE', submits: 1, pauses: 0, detail: /may have been accepted and billed, so it was not resubmitted/, ambiguous: true },
];

describe.each(['async', 'sync'] as const)('submit faults (%s)', (mode) => {
  it.each(SUBMIT_FAULTS)('$name → $status $code after $submits submit(s)', async (row) => {
    const injected = RETRIES + 3;
    fake.inject('submit', row.fault, injected);
    const gate = testGate();
    const error = await failure(run(engine({ mode }), input(), gate));
    expect(error).toBeInstanceOf(row.error);
    expect(error).toMatchObject({ status: row.status, code: row.code });
    expect(error.detail).toMatch(row.detail);
    expect(error.detail).not.toMatch(/<|>/);
    if (row.reason) expect((error as UpstreamAuthError).reason).toBe(row.reason);
    if (row.ambiguous !== undefined) expect((error as UpstreamUnavailableError).ambiguous).toBe(row.ambiguous);
    if (row.status === 503) expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(1);

    // Exactly the documented number of attempts, each admitted by the gate, and nothing after.
    expect(fake.calls.submitsV1 + fake.calls.submitsV2).toBe(row.submits);
    expect(mode === 'async' ? fake.calls.submitsV2 : fake.calls.submitsV1).toBe(row.submits);
    expect(fake.pendingFaults('submit')).toBe(injected - row.submits);
    expect(gate.acquires).toBe(row.submits);
    expect(gate.pauses).toHaveLength(row.pauses);
    expect(fake.calls.polls + fake.calls.results + fake.calls.downloads).toBe(0);
    if (row.error === UpstreamAuthError) {
      expect(logLines.some((l) => l.includes('"level":50') && l.includes('UPSTREAM_AUTH') && l.includes(`"reason":"${row.reason}"`))).toBe(true);
    }
  });
});

describe('retries that end in success', () => {
  it('429 with Retry-After: pauses the whole gate for that long, then succeeds', async () => {
    fake.inject('submit', FAULTS.rateLimited({ retryAfter: '1' }));
    const gate = testGate();
    const started = Date.now();
    const result = await run(engine(), input(), gate);
    expect(result.width).toBe(48);
    expect(fake.calls.submitsV2).toBe(2);
    expect(gate.acquires).toBe(2);
    expect(gate.pauses).toHaveLength(1);
    expect(gate.pauses[0]! - started).toBeGreaterThanOrEqual(950);
    expect(gate.pauses[0]! - started).toBeLessThan(1500);
    const [first, second] = fake.submits;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(950);
  });

  it('429 with x-rate-limit-reset-at-utc: waits until then', async () => {
    const resetAt = new Date(Date.now() + 400).toISOString();
    fake.inject('submit', FAULTS.rateLimited({ resetAt }));
    const gate = testGate();
    await run(engine({ mode: 'sync' }), input(), gate);
    expect(fake.calls.submitsV1).toBe(2);
    expect(Math.abs(gate.pauses[0]! - Date.parse(resetAt))).toBeLessThan(60);
    expect(fake.submits[1]!.at).toBeGreaterThanOrEqual(Date.parse(resetAt) - 20);
  });

  it('429 with neither: exponential backoff with jitter, the gate paused each time', async () => {
    fake.inject('submit', FAULTS.rateLimited(), 2);
    const gate = testGate();
    const result = await run(engine({ random: () => 1 }), input(), gate);
    expect(result.width).toBe(48);
    expect(fake.calls.submitsV2).toBe(3);
    expect(gate.pauses).toHaveLength(2);
  });

  it('a Retry-After past the job deadline fails at once with that Retry-After', async () => {
    fake.inject('submit', FAULTS.rateLimited({ retryAfter: '120' }));
    const gate = testGate();
    const error = await failure(run(engine({ timeoutMs: 5_000 }), input(), gate));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect(error.retryAfterSeconds).toBe(120);
    expect(fake.calls.submitsV2).toBe(1);
    expect(gate.pauses).toHaveLength(1);
  });

  it.each([
    ['500', FAULTS.serverError(500)],
    ['502', FAULTS.serverError(502)],
    ['504', FAULTS.serverError(504)],
    ['plain-text 500', FAULTS.plainTextServerError()],
  ])('%s once, then success: two submits, one billed job', async (_name, fault) => {
    fake.inject('submit', fault);
    const gate = testGate();
    await run(engine(), input(), gate);
    expect(fake.calls).toMatchObject({ submitsV2: 2, billed: 1 });
    expect(gate.acquires).toBe(2);
    expect(gate.pauses).toEqual([]);
  });

  it('connection refused before sending is retried through the gate, then succeeds', async () => {
    // A port with nothing behind it; the fake starts there when the second attempt is admitted.
    const port = fake.port;
    await fake.close();
    const gate = testGate(async (n) => {
      if (n === 2) fake = await createFakeSegmind({ port });
    });
    const result = await run(engine({ baseUrl: `http://127.0.0.1:${port}` }), input(), gate);
    expect(result.width).toBe(48);
    expect(gate.acquires).toBe(2);
    expect(fake.calls.submitsV2).toBe(1);
  });

  it('connection refused every time: retries, then 503 (not ambiguous: nothing was sent)', async () => {
    const port = fake.port;
    await fake.close();
    const gate = testGate();
    const error = await failure(run(engine({ baseUrl: `http://127.0.0.1:${port}` }), input(), gate));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect((error as UpstreamUnavailableError).ambiguous).toBe(false);
    expect(error.detail).toMatch(/ECONNREFUSED through 2 retries/);
    expect(gate.acquires).toBe(RETRIES + 1);
    fake = await createFakeSegmind(); // for afterEach
  });

  it('a submit that gets no answer in time is not resubmitted (it may be billed)', async () => {
    fake.inject('submit', FAULTS.hang());
    const gate = testGate();
    const error = await failure(run(engine({ requestTimeoutMs: 300 }), input(), gate));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect((error as UpstreamUnavailableError).ambiguous).toBe(true);
    expect(fake.calls.submitsV2).toBe(1);
    expect(gate.acquires).toBe(1);
  });

  it('a job deadline hit during the submit says the job may be billed', async () => {
    fake.inject('submit', FAULTS.hang());
    const error = await failure(run(engine({ timeoutMs: 300 }), input(), testGate()));
    expect(error).toBeInstanceOf(UpstreamTimeoutError);
    expect(error.detail).toMatch(/may have been accepted and billed/);
    expect(fake.calls.submitsV2).toBe(1);
  });
});

describe('free calls: polls, results, downloads', () => {
  it.each([
    ['poll', '500', FAULTS.serverError(500)],
    ['poll', 'plain-text 502', FAULTS.plainTextServerError(502)],
    ['poll', 'connection destroyed', FAULTS.destroy()],
    ['poll', '404 right after the submit (upstream lag)', FAULTS.notFound()],
    ['result', '504', FAULTS.serverError(504)],
    ['result', 'HTML 502', FAULTS.htmlBadGateway()],
    ['download', '500', FAULTS.serverError(500)],
    ['download', 'connection destroyed', FAULTS.destroy()],
  ] as const)('%s %s: retried without a new submit', async (target, _name, fault) => {
    fake.inject(target, fault, RETRIES);
    const gate = testGate();
    const result = await run(engine(), input(), gate);
    expect(result.width).toBe(48);
    expect(fake.calls.submitsV2).toBe(1);
    expect(gate.acquires).toBe(1);
    expect(fake.pendingFaults(target)).toBe(0);
  });

  it('a 429 on a poll pauses the gate too (the rate limit is the account\'s)', async () => {
    fake.inject('poll', FAULTS.rateLimited({ retryAfter: '0' }));
    const gate = testGate();
    await run(engine(), input(), gate);
    expect(gate.pauses).toHaveLength(1);
    expect(fake.calls.submitsV2).toBe(1);
  });

  it('a poll that hangs times out per call and is retried', async () => {
    fake.inject('poll', FAULTS.hang());
    const result = await run(engine({ requestTimeoutMs: 200 }), input(), testGate());
    expect(result.width).toBe(48);
    expect(fake.calls.submitsV2).toBe(1);
  });

  it('polls failing past the retries: 503, the job stays journaled, and the next call resumes it for free', async () => {
    fake.inject('poll', FAULTS.serverError(502), RETRIES + 1);
    const i = input();
    const error = await failure(run(engine(), i, testGate()));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect(error.detail).toMatch(/stays journaled/);
    expect(await createDiskJournal(journalDir).get(i.masterKey)).toBeDefined();

    const gate = testGate();
    const result = await run(engine(), i, gate);
    expect(result.width).toBe(48);
    expect(fake.calls.submitsV2).toBe(1);
    expect(gate.acquires).toBe(0);
  });

  it('an output that is not an image is an error, not a resubmit', async () => {
    fake.inject('download', FAULTS.notAnImage());
    const i = input();
    const error = await failure(run(engine(), i, testGate()));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect(error.detail).toMatch(/is not an image/);
    expect(fake.calls.submitsV2).toBe(1);
    expect(await createDiskJournal(journalDir).get(i.masterKey)).toBeDefined();
  });

  it('an output over the size limit is refused unread', async () => {
    const error = await failure(run(engine({ maxOutputBytes: 64 }), input(), testGate()));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect(error.detail).toMatch(/larger than 64 bytes/);
    expect(fake.calls.submitsV2).toBe(1);
  });

  it('a v1 image over the size limit is not resubmitted (it was billed)', async () => {
    const error = await failure(run(engine({ mode: 'sync', maxOutputBytes: 64 }), input(), testGate()));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect((error as UpstreamUnavailableError).ambiguous).toBe(true);
    expect(error.detail).toMatch(/more than 64 bytes/);
    expect(fake.calls.submitsV1).toBe(1);
  });

  it('a v1 200 that is not an image is not resubmitted', async () => {
    fake.inject('submit', FAULTS.notAnImage());
    const error = await failure(run(engine({ mode: 'sync' }), input(), testGate()));
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect((error as UpstreamUnavailableError).ambiguous).toBe(true);
    expect(fake.calls.submitsV1).toBe(1);
  });

  it('a 401 on a poll is final and keeps the journal entry', async () => {
    fake.inject('poll', FAULTS.unauthorized(), 5);
    const i = input();
    const error = await failure(run(engine(), i, testGate()));
    expect(error).toBeInstanceOf(UpstreamAuthError);
    expect(fake.calls.polls).toBe(1);
    expect(await createDiskJournal(journalDir).get(i.masterKey)).toBeDefined();
  });
});

describe('FAILED jobs', () => {
  it.each([422, 200] as const)('FAILED served as HTTP %i → 422 UPSTREAM_REJECTED with the reason, journal cleared, one submit', async (status) => {
    fake.failWhen((p) => p.seed === 666, { error: 'Image flagged by the content filter', status });
    const i = input({ seed: 666 });
    const error = await failure(run(engine(), i, testGate()));
    expect(error).toBeInstanceOf(UpstreamRejectedError);
    expect(error).toMatchObject({ status: 422, code: 'UPSTREAM_REJECTED' });
    expect(error.detail).toBe('the upstream could not process this image: Image flagged by the content filter');
    expect(fake.calls.submitsV2).toBe(1);
    expect(fake.calls.downloads).toBe(0);
    expect(await createDiskJournal(journalDir).get(i.masterKey)).toBeUndefined();
  });

  it('an input the upstream cannot decode ends FAILED', async () => {
    const junk = { ...source, data: Buffer.from('not an image at all'), hash: 'f'.repeat(64) };
    const error = await failure(run(engine(), input({}, { source: junk }), testGate()));
    expect(error).toBeInstanceOf(UpstreamRejectedError);
    expect(error.detail).toMatch(/Could not process the input image/);
    expect(fake.calls.submitsV2).toBe(1);
  });

  it('v1: a FAILED answer is final too', async () => {
    fake.failWhen(() => true, { error: 'blocked' });
    const error = await failure(run(engine({ mode: 'sync' }), input(), testGate()));
    expect(error).toBeInstanceOf(UpstreamRejectedError);
    expect(fake.calls.submitsV1).toBe(1);
  });

  it('a payload the upstream refuses as invalid (a wrong type would be one) is 422 naming the field', async () => {
    const error = await failure(run(engine(), input({ tiling_width: 100 }), testGate()));
    expect(error).toBeInstanceOf(UpstreamInvalidRequestError);
    expect(error.param).toBe('tiling_width');
    expect(fake.calls).toMatchObject({ submitsV2: 1, billed: 0 });
  });
});

describe('the journal across restarts', () => {
  /** Engine A submits, polls, and is killed mid-poll (its signal aborts): the job stays journaled. */
  async function crashMidPoll(i: EngineInput): Promise<string> {
    fake.holdJobs();
    const controller = new AbortController();
    const pending = run(engine(), i, testGate(), controller.signal);
    await fake.waitForPolls(3);
    controller.abort(new Error('process killed'));
    await expect(pending).rejects.toThrow('process killed');
    const entry = await createDiskJournal(journalDir).get(i.masterKey);
    expect(entry).toBeDefined();
    return entry!.requestId;
  }

  it('a new engine on the same journal resumes the job with zero submits', async () => {
    const i = input();
    const requestId = await crashMidPoll(i);
    fake.releaseJobs();
    const gate = testGate();
    const result = await run(engine(), i, gate);
    expect(result).toMatchObject({ width: 48, height: 32, paid: true, cost: 0.05 });
    expect(fake.calls).toMatchObject({ submitsV2: 1, billed: 1 });
    expect(gate.acquires).toBe(0);
    expect(fake.requests.at(-1)?.route).toBe('GET /outputs/:id');
    expect(fake.requests.some((r) => r.url === `/v2/requests/${requestId}`)).toBe(true);
    await result.onStored?.();
    expect(await createDiskJournal(journalDir).get(i.masterKey)).toBeUndefined();
  });

  it('resumes even in sync mode: the journaled URLs are absolute', async () => {
    const i = input();
    await crashMidPoll(i);
    fake.releaseJobs();
    await run(engine({ mode: 'sync' }), i, testGate());
    expect(fake.calls).toMatchObject({ submitsV2: 1, submitsV1: 0 });
  });

  it('a 404 on the journaled id (expired) is the one case that submits again: exactly once', async () => {
    const i = input();
    const oldId = await crashMidPoll(i);
    fake.expire(oldId);
    fake.releaseJobs();
    const gate = testGate();
    const result = await run(engine(), i, gate);
    expect(result.width).toBe(48);
    expect(fake.calls.submitsV2).toBe(2);
    expect(gate.acquires).toBe(1);
    const entry = await createDiskJournal(journalDir).get(i.masterKey);
    expect(entry?.requestId).not.toBe(oldId);
  });

  it('the job timeout leaves the job journaled; the next call picks it up', async () => {
    fake.holdJobs();
    const i = input();
    const error = await failure(run(engine({ timeoutMs: 300 }), i, testGate()));
    expect(error).toBeInstanceOf(UpstreamTimeoutError);
    expect(error).toMatchObject({ status: 504, code: 'UPSTREAM_TIMEOUT' });
    expect(error.detail).toMatch(/next request resumes it/);
    fake.releaseJobs();
    const gate = testGate();
    await run(engine(), i, gate);
    expect(fake.calls.submitsV2).toBe(1);
    expect(gate.acquires).toBe(0);
  });
});

describe('the key', () => {
  it('is cut from a detail even when the upstream echoes it', async () => {
    fake.inject('submit', FAULTS.badRequest(`bad request for ${KEY}`));
    const error = await failure(run(engine(), input(), testGate()));
    expect(error.detail).toBe('the upstream refused the payload: bad request for [redacted]');
  });

  it('is not sent where an answer points outside the API origin', async () => {
    // A response_url on another origin (here: another port) gets no key.
    const other = await createFakeSegmind({ apiKey: 'SG_ffffffffffffffff' });
    try {
      const i = input();
      await createDiskJournal(journalDir).put(i.masterKey, {
        masterKey: i.masterKey,
        requestId: 'req-x',
        statusUrl: `${other.url}/v2/requests/req-x/status`,
        responseUrl: `${other.url}/v2/requests/req-x`,
        submittedAt: Date.now(),
      });
      await failure(run(engine(), i, testGate()));
      expect(other.requests.length).toBeGreaterThan(0);
      expect(other.requests.every((r) => r.headers['x-api-key'] === undefined)).toBe(true);
    } finally {
      await other.close();
    }
  });
});

describe('the fake upstream itself', () => {
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${fake.url}${path}`, { headers });
    return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
  };

  it('answers 401 without the key, or with Authorization: Bearer', async () => {
    expect((await get('/v2/requests/x/status')).status).toBe(401);
    expect((await get('/v2/requests/x/status', { authorization: `Bearer ${KEY}` })).status).toBe(401);
  });

  it('answers 404 {"error":"Request … not found"} for an unknown id', async () => {
    expect(await get('/v2/requests/nope/status', { 'x-api-key': KEY })).toMatchObject({
      status: 404,
      body: '{"error":"Request nope not found"}',
    });
  });

  it('answers 405 with an HTML page to a GET on a submit route', async () => {
    const res = await get('/v2/clarity-upscaler', { 'x-api-key': KEY });
    expect(res.status).toBe(405);
    expect(res.type).toBe('text/html');
  });

  it('validates types as documented: a string where a number belongs is a 400 naming the field', async () => {
    const res = await fetch(`${fake.url}/v2/clarity-upscaler`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ image: source.data.toString('base64'), scale_factor: '2' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'Invalid value for scale_factor: expected a number, got string' });
    expect(fake.calls.billed).toBe(0);
  });
});
