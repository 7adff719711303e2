/**
 * The fast lane answers hot hits and their 304s before Express with exactly the full path's
 * answer, and nothing it has not seen the full path validate: other URLs, other Accept headers,
 * unsigned or changed URLs, placeholders, oversize headers all go to Express.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signPath } from '../../src/security/index.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

const KEY = 'fast-lane-signing-key-01';
/** Headers that differ per answer by design. */
const PER_REQUEST = new Set(['x-request-id', 'date', 'connection', 'keep-alive']);
const comparable = (headers: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => !PER_REQUEST.has(name)));

let server: TestServer;
let hash: string;
beforeAll(async () => {
  server = await startTestServer({ SIGNING_KEY: KEY, MAX_HEADER_BYTES: '8KiB' });
  const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(await makeImage(20, 14, { seed: 3, alpha: false }));
  hash = res.body.hash as string;
});
afterAll(() => stopTestServer(server));

const answered = () => server.fastLane.stats().answered;

describe('fast lane', () => {
  it('answers a repeated hit with the full path’s exact headers and bytes, and its 304', async () => {
    const first = signPath(`/upscale/${hash}?scale=1&format=webp&seed=4`, KEY);
    const miss = await request(server.app).get(first).buffer(true);
    expect(miss.headers['x-cache']).toBe('MISS');
    // The same image under another spelling of its URL: new to the fast lane, a memory hit for Express.
    const path = signPath(`/upscale/${hash}?seed=4&format=webp&scale=1`, KEY);
    const before = answered();
    const full = await request(server.app).get(path).set('X-Request-Id', 'via-express').buffer(true);
    expect(full.headers['x-cache']).toBe('HIT; tier=memory');
    expect(answered()).toBe(before);
    // Express served it, so it is remembered: this one never reaches Express.
    const fast = await request(server.app).get(path).set('X-Request-Id', 'via-fast-lane').buffer(true);
    expect(answered()).toBe(before + 1);
    expect(comparable(fast.headers)).toEqual(comparable(full.headers));
    expect(fast.headers['x-request-id']).toBe('via-fast-lane');
    expect(Buffer.compare(fast.body as Buffer, full.body as Buffer)).toBe(0);

    const revalidation = await request(server.app).get(path).set('If-None-Match', full.headers['etag'] as string);
    expect(revalidation.status).toBe(304);
    expect(answered()).toBe(before + 2);
    expect(revalidation.headers).toMatchObject({ etag: full.headers['etag'], 'cache-control': 'public, max-age=31536000, immutable', 'x-cache': 'HIT; revalidated' });
    const head = await request(server.app).head(path);
    expect(comparable(head.headers)).toEqual(comparable(full.headers));
    expect(answered()).toBe(before + 3);
  });

  it('never answers what Express has not validated: unsigned, altered, other Accept, other method', async () => {
    const path = signPath(`/upscale/${hash}?scale=1&seed=5`, KEY);
    const webpAccept = 'image/webp,*/*';
    await request(server.app).get(path).set('Accept', webpAccept);
    const before = answered();
    expect((await request(server.app).get(path).set('Accept', webpAccept)).headers['content-type']).toBe('image/webp');
    expect(answered()).toBe(before + 1);
    // Another Accept is another negotiation: the full path answers it (and negotiates JPEG).
    const jpeg = await request(server.app).get(path).set('Accept', '*/*');
    expect(jpeg.headers['content-type']).toBe('image/jpeg');
    expect(jpeg.headers['vary']).toBe('Accept');
    expect(answered()).toBe(before + 1);

    const unsigned = await request(server.app).get(`/upscale/${hash}?scale=1&seed=5`).set('Accept', webpAccept);
    expect(unsigned.status).toBe(403);
    const altered = await request(server.app).get(path.replace('seed=5', 'seed=6')).set('Accept', webpAccept);
    expect(altered.status).toBe(403);
    const deleted = await request(server.app).delete(path);
    expect(deleted.status).toBe(405);
    expect(answered()).toBe(before + 1);
  });

  it('leaves oversize headers to Express (431), and is counted in /metrics', async () => {
    const path = signPath(`/upscale/${hash}?scale=1&format=png&seed=7`, KEY);
    await request(server.app).get(path);
    const before = answered();
    const big = await request(server.app).get(path).set('X-Big', 'a'.repeat(9000));
    expect(big.status).toBe(431);
    expect(answered()).toBe(before);
    await request(server.app).get(path);
    const metrics = (await request(server.app).get('/metrics')).text;
    expect(Number(/^clarity_fast_lane_answers_total (\d+)$/m.exec(metrics)?.[1])).toBe(answered());
    expect(Number(/^clarity_fast_lane_entries (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  });
});
