/**
 * Every clarity field at the edges of its range, through the real app to the fake upstream.
 *
 * The bounds below are written out by hand from ../shared/UPSTREAM.md, not read from src/params,
 * and the fake checks each value against UPSTREAM.md on its own (test/fakes/segmind.ts does not
 * import src/params). So a range in our table that is wider than the upstream's fails here (the
 * fake answers 400, we answer 422), and one that is narrower fails too (we answer 400).
 *
 * Where UPSTREAM.md gives no bound, the bound is a deliberate one of ours, marked "ours" below:
 * scale_factor 1–4 (the upstream takes any number > 0), seed 0–4294967295 and
 * downscaling_resolution 64–4096 (any integer upstream), and the text lengths (none upstream).
 */
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeSegmind, FAKE_SEGMIND_KEY, SCHEDULERS, SD_MODELS, type FakeSegmind } from '../fakes/segmind.js';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

const HANDFIX = ['disabled', 'hands_only', 'image_and_hands'];

/** An http URL of exactly `length` characters. */
function urlOfLength(length: number, name = 'a'): string {
  const head = `https://models.example.com/${name}/`;
  const tail = '.safetensors';
  return head + 'x'.repeat(length - head.length - tail.length) + tail;
}
/** Words and spaces, exactly `length` characters. */
const textOfLength = (length: number) => 'crisp details and fine texture '.repeat(Math.ceil(length / 31)).slice(0, length);

interface Accepted {
  field: string;
  label: string;
  query: string;
  /** What the upstream must receive, with its JSON type. */
  sent: number | string | boolean;
}
const at = (field: string, query: string, sent: number | string | boolean, label = query): Accepted => ({ field, label, query, sent });

const ACCEPTED: Accepted[] = [
  at('scale_factor', '1', 1), // ours
  at('scale_factor', '4', 4), // ours
  at('creativity', '0', 0),
  at('creativity', '1', 1),
  at('resemblance', '0', 0),
  at('resemblance', '3', 3),
  at('dynamic', '1', 1),
  at('dynamic', '50', 50),
  at('sharpen', '0', 0),
  at('sharpen', '10', 10),
  at('seed', '0', 0), // ours
  at('seed', '4294967295', 4294967295), // ours
  at('num_inference_steps', '1', 1),
  at('num_inference_steps', '100', 100),
  at('tiling_width', '16', 16),
  at('tiling_width', '256', 256),
  at('tiling_height', '16', 16),
  at('tiling_height', '256', 256),
  at('downscaling_resolution', '64', 64), // ours
  at('downscaling_resolution', '4096', 4096), // ours
  at('downscaling', 'true', true),
  at('downscaling', 'false', false),
  ...HANDFIX.map((v) => at('handfix', v, v)),
  ...SCHEDULERS.map((v) => at('scheduler', v, v)),
  ...SD_MODELS.map((v) => at('sd_model', v, v)),
  at('prompt', '', '', 'empty'),
  at('prompt', textOfLength(2000), textOfLength(2000), '2000 characters (ours)'),
  at('negative_prompt', '', '', 'empty'),
  at('negative_prompt', textOfLength(2000), textOfLength(2000), '2000 characters (ours)'),
  at('custom_sd_model', urlOfLength(2048), urlOfLength(2048), 'a URL of 2048 characters (ours)'),
  at('lora_links', `${urlOfLength(2048, 'a')},${urlOfLength(2047, 'b')}`, `${urlOfLength(2048, 'a')},${urlOfLength(2047, 'b')}`, '4096 characters of URLs (ours)'),
];

/** One step past each bound (one unit, 0.01 for decimals, 16 for tiling), or a value not in the list. */
const REFUSED: { field: string; label: string; query: string }[] = [
  ...(
    [
      ['scale_factor', '0.99'],
      ['scale_factor', '4.01'],
      ['creativity', '-0.01'],
      ['creativity', '1.01'],
      ['resemblance', '-0.01'],
      ['resemblance', '3.01'],
      ['dynamic', '0.99'],
      ['dynamic', '50.01'],
      ['sharpen', '-0.01'],
      ['sharpen', '10.01'],
      ['seed', '-1'],
      ['seed', '4294967296'],
      ['num_inference_steps', '0'],
      ['num_inference_steps', '101'],
      ['tiling_width', '0'],
      ['tiling_width', '272'],
      ['tiling_height', '0'],
      ['tiling_height', '272'],
      ['downscaling_resolution', '63'],
      ['downscaling_resolution', '4097'],
      ['downscaling', 'yes'],
      ['handfix', 'hands'],
      ['scheduler', 'DPM++ 3M SDE karras'],
      ['sd_model', 'juggernaut_reborn.safetensors'],
    ] as const
  ).map(([field, query]) => ({ field, label: query, query })),
  { field: 'prompt', label: '2001 characters', query: textOfLength(2001) },
  { field: 'negative_prompt', label: '2001 characters', query: textOfLength(2001) },
  { field: 'custom_sd_model', label: 'a URL of 2049 characters', query: urlOfLength(2049) },
  { field: 'lora_links', label: '4097 characters of URLs', query: `${urlOfLength(2048, 'a')},${urlOfLength(2048, 'b')}` },
];

let fake: FakeSegmind;
let server: TestServer;
let hash: string;
/** Distinct seeds for the cases that are not about the seed, so that each payload is a new job. */
let nextSeed = 1000;

beforeAll(async () => {
  // Completes at the first poll: one poll per case.
  fake = await createFakeSegmind({ pollsBeforeComplete: 0 });
  server = await startTestServer({
    UPSCALE_ENGINE: 'segmind',
    SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
    SEGMIND_BASE_URL: fake.url,
    SEGMIND_POLL_INTERVAL_MS: '10',
    UPSTREAM_RETRIES: '0',
    UPSTREAM_RPM: '100000',
    UPSTREAM_CONCURRENCY: '8',
  });
  const uploaded = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(await makeImage(8, 6));
  expect(uploaded.status).toBe(201);
  hash = uploaded.body.hash as string;
});
afterAll(async () => {
  await stopTestServer(server);
  await fake.close();
});

// Concurrent, to keep the file fast: each case is told from the others by its seed, unique per case.
describe.concurrent('each bound reaches the upstream as sent', () => {
  it.for(ACCEPTED)('$field = $label', async ({ field, query, sent }, { expect }) => {
    const seed = field === 'seed' ? (sent as number) : nextSeed++;
    const params = new URLSearchParams({ seed: String(seed), [field]: query, format: 'png' });

    const res = await request(server.app).get(`/upscale/${hash}?${params}`).buffer(true);
    expect(res.status).toBe(200);
    const mine = fake.submits.filter((s) => (s.body as { seed?: unknown }).seed === seed);
    expect(mine).toHaveLength(1);
    const body = mine[0]!.body as Record<string, unknown>;
    expect(body[field]).toStrictEqual(sent);
    if (field === 'scale_factor') {
      expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 8 * (sent as number), height: 6 * (sent as number) });
    }
  });
});

describe('one step outside is refused before the upstream', () => {
  it.for(REFUSED)('$field = $label', async ({ field, query }) => {
    const submits = fake.submits.length;
    const res = await request(server.app).get(`/upscale/${hash}?${new URLSearchParams({ [field]: query, format: 'png' })}`);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.body).toMatchObject({ code: 'INVALID_PARAM', param: field });
    expect(fake.submits).toHaveLength(submits);
  });
});
