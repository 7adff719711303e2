/**
 * The local engine end to end: real ESRGAN (slim) in real worker threads, real sharp. Images are
 * tiny so the whole file stays fast on two shared cores; the one real photo checks quality.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalEngine } from '../../src/engines/local/index.js';
import { LocalEngineError } from '../../src/engines/local/errors.js';
import type { Engine, EngineResult, SubmitGate } from '../../src/engines/types.js';
import type { ClarityParams } from '../../src/params/types.js';
import { astronautJpeg, makeImage } from '../helpers/images.js';
import { DOCUMENTED_DEFAULTS } from '../helpers/upstream-defaults.js';

const gate: SubmitGate = { acquire: async () => {}, pauseUntil() {} };

const DEFAULTS = DOCUMENTED_DEFAULTS;

async function run(
  engine: Engine,
  data: Buffer,
  params: Partial<ClarityParams> = {},
  context: { signal?: AbortSignal; gate?: SubmitGate } = {},
): Promise<EngineResult> {
  const meta = await sharp(data).metadata();
  return engine.upscale(
    {
      masterKey: 'test',
      source: { hash: 'test', data, width: meta.width, height: meta.height, format: meta.format, hasAlpha: !!meta.hasAlpha },
      params: { ...DEFAULTS, ...params },
    },
    { gate: context.gate ?? gate, ...(context.signal ? { signal: context.signal } : {}) },
  );
}

/** Raw RGB (alpha dropped) of an encoded image. */
async function rgbOf(data: Buffer): Promise<{ pixels: Buffer; width: number; height: number }> {
  const { data: pixels, info } = await sharp(data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { pixels, width: info.width, height: info.height };
}

function psnr(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
  const mse = sum / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

async function meanRgb(data: Buffer): Promise<number[]> {
  const { channels } = await sharp(data).stats();
  return channels.slice(0, 3).map((c) => c.mean);
}

let engine: Engine; // slim, tiles of 16 px: a 40×30 image takes 6 tiles
let untiled: Engine; // slim, one tile whatever the size

beforeAll(() => {
  engine = createLocalEngine({ model: 'esrgan-slim', workers: 2, tileSize: 16, tileOverlap: 8 });
  untiled = createLocalEngine({ model: 'esrgan-slim', workers: 1, tileSize: 1024, tileOverlap: 0 });
});
afterAll(async () => {
  await Promise.all([engine?.close(), untiled?.close()]);
});

describe('local engine (esrgan-slim)', () => {
  it('names itself and honors exactly the clarity fields the table gives it', () => {
    expect(engine.id).toBe('local:esrgan-slim');
    expect([...engine.honors].sort()).toEqual(['downscaling', 'downscaling_resolution', 'scale_factor', 'sharpen']);
  });

  it.each([
    [1, 24, 16],
    [2, 48, 32],
    [2.5, 60, 40],
    [3, 72, 48],
    [4, 96, 64],
  ])('scale_factor %s turns 24×16 into a %i×%i PNG', async (scale, width, height) => {
    const result = await run(engine, await makeImage(24, 16), { scale_factor: scale });
    expect(result).toMatchObject({ width, height, engine: 'local:esrgan-slim', paid: false });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(0);
    const meta = await sharp(result.data).metadata();
    expect([meta.format, meta.width, meta.height, meta.hasAlpha]).toEqual(['png', width, height, false]);
  });

  it('looks like the input: same mean colour (a wrong model range gives black or white)', async () => {
    const input = await makeImage(40, 30, { seed: 3 });
    const result = await run(engine, input, { scale_factor: 2 });
    const [got, want] = await Promise.all([meanRgb(result.data), meanRgb(input)]);
    for (let c = 0; c < 3; c++) expect(Math.abs(got[c]! - want[c]!)).toBeLessThan(4);
  });

  it('keeps the alpha channel: opaque stays opaque, translucent stays translucent', async () => {
    // makeImage: alpha 255 on the left half, 96 on the right.
    const result = await run(engine, await makeImage(40, 30, { alpha: true }), { scale_factor: 3 });
    expect([result.width, result.height]).toEqual([120, 90]);
    const { data, info } = await sharp(result.data).raw().toBuffer({ resolveWithObject: true });
    expect(info.channels).toBe(4);
    const alphaAt = (x: number, y: number) => data[(y * info.width + x) * 4 + 3];
    for (const y of [0, 45, 89]) {
      expect(alphaAt(5, y)).toBe(255);
      expect(alphaAt(40, y)).toBe(255);
      expect(alphaAt(80, y)).toBe(96);
      expect(alphaAt(115, y)).toBe(96);
    }
  });

  it('downscaling shrinks the source to downscaling_resolution before upscaling, only when larger', async () => {
    const input = await makeImage(40, 30);
    const shrunk = await run(engine, input, { scale_factor: 2, downscaling: true, downscaling_resolution: 64 });
    expect([shrunk.width, shrunk.height]).toEqual([80, 60]);
    const large = await makeImage(100, 75);
    const big = await run(engine, large, { scale_factor: 2, downscaling: true, downscaling_resolution: 64 });
    expect([big.width, big.height]).toEqual([128, 96]);
    const off = await run(engine, large, { scale_factor: 1, downscaling: false, downscaling_resolution: 64 });
    expect([off.width, off.height]).toEqual([100, 75]);
  });

  it('sharpen makes edges crisper without moving the colours', async () => {
    const input = await makeImage(40, 30, { seed: 5 });
    const [plain, sharp10] = await Promise.all([
      run(engine, input, { scale_factor: 2 }),
      run(engine, input, { scale_factor: 2, sharpen: 10 }),
    ]);
    expect([sharp10.width, sharp10.height]).toEqual([80, 60]);
    const [a, b] = await Promise.all([rgbOf(plain.data), rgbOf(sharp10.data)]);
    expect(psnr(a.pixels, b.pixels)).toBeLessThan(45); // it did something
    const [ma, mb] = await Promise.all([meanRgb(plain.data), meanRgb(sharp10.data)]);
    for (let c = 0; c < 3; c++) expect(Math.abs(ma[c]! - mb[c]!)).toBeLessThan(3);
    // More local contrast: the sharpened image's pixels stray further from a blurred copy of it.
    const energy = async (png: Buffer) => {
      const { pixels } = await rgbOf(png);
      const blurred = await sharp(png).removeAlpha().blur(1.5).raw().toBuffer();
      return 1 / psnr(pixels, blurred);
    };
    expect(await energy(sharp10.data)).toBeGreaterThan(await energy(plain.data));
  });

  it('tiled output matches the untiled one: the overlap hides every seam', async () => {
    const input = await makeImage(40, 30, { seed: 7 });
    const [tiled, whole] = await Promise.all([
      run(engine, input, { scale_factor: 4 }),
      run(untiled, input, { scale_factor: 4 }),
    ]);
    const [a, b] = await Promise.all([rgbOf(tiled.data), rgbOf(whole.data)]);
    let maxDiff = 0;
    for (let i = 0; i < a.pixels.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.pixels[i]! - b.pixels[i]!));
    const db = psnr(a.pixels, b.pixels);
    console.log(`tiled vs untiled (40×30 ×4, 16-px tiles, 8 px overlap): max diff ${maxDiff}, PSNR ${db.toFixed(1)} dB`);
    expect(maxDiff <= 1 || db > 45).toBe(true);
  });

  it('beats lanczos3 on a real photo: astronaut 512² → 128² → ×4, PSNR against the original', async () => {
    const original = await sharp(astronautJpeg()).removeAlpha().raw().toBuffer();
    const small = await sharp(astronautJpeg()).resize(128, 128, { kernel: 'lanczos3' }).png().toBuffer();
    const lanczos = await sharp(small).resize(512, 512, { kernel: 'lanczos3' }).removeAlpha().raw().toBuffer();
    const result = await run(untiled, small, { scale_factor: 4 });
    const esrgan = (await rgbOf(result.data)).pixels;
    const [dbModel, dbLanczos] = [psnr(esrgan, original), psnr(lanczos, original)];
    console.log(`astronaut ×4: esrgan-slim ${dbModel.toFixed(2)} dB, sharp lanczos3 ${dbLanczos.toFixed(2)} dB`);
    expect(dbModel).toBeGreaterThan(dbLanczos);
  });

  it('finishes concurrent jobs on two workers', async () => {
    const inputs = await Promise.all([1, 2, 3, 4].map((seed) => makeImage(24 + seed * 4, 16, { seed })));
    const results = await Promise.all(inputs.map((input, i) => run(engine, input, { scale_factor: 1 + i * 0.75 })));
    expect(results.map((r) => [r.width, r.height])).toEqual([
      [28, 16],
      [56, 28],
      [90, 40],
      [130, 52],
    ]);
  });

  it('takes one gate admission per job, with the job signal', async () => {
    const calls: (AbortSignal | undefined)[] = [];
    const counting: SubmitGate = { acquire: async (signal) => void calls.push(signal), pauseUntil() {} };
    const controller = new AbortController();
    await run(engine, await makeImage(40, 30), { scale_factor: 2 }, { gate: counting, signal: controller.signal });
    expect(calls).toEqual([controller.signal]);
  });

  it('stops on abort: rejects with the reason, and the engine goes on working', async () => {
    await expect(
      run(engine, await makeImage(24, 16), {}, { signal: AbortSignal.abort(new Error('shutdown')) }),
    ).rejects.toThrow('shutdown');
    const controller = new AbortController();
    const job = run(engine, await makeImage(64, 64), { scale_factor: 4 }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('timed out')), 50);
    await expect(job).rejects.toThrow('timed out');
    const after = await run(engine, await makeImage(24, 16), { scale_factor: 2 });
    expect([after.width, after.height]).toEqual([48, 32]);
  });

  it('answers an undecodable source with LOCAL_ENGINE_FAILED, no stack in the detail', async () => {
    const error = await engine
      .upscale(
        {
          masterKey: 'bad',
          source: { hash: 'bad', data: Buffer.from('not an image'), width: 1, height: 1, format: 'png', hasAlpha: false },
          params: DEFAULTS,
        },
        { gate },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LocalEngineError);
    expect(error).toMatchObject({ status: 500, code: 'LOCAL_ENGINE_FAILED', title: 'Local upscaling failed' });
    const { detail, cause } = error as LocalEngineError;
    expect(detail).not.toMatch(/\n\s+at |sharp|Input buffer/);
    expect(cause).toBeInstanceOf(Error);
  });
});

describe('local engine (esrgan-thick)', () => {
  it('loads its custom layers and keeps the colours (its range is [0, 1], not [0, 255])', async () => {
    const thick = createLocalEngine({ model: 'esrgan-thick', workers: 1, tileSize: 128, tileOverlap: 16 });
    try {
      const input = await makeImage(16, 12, { seed: 2 });
      const result = await run(thick, input, { scale_factor: 2 });
      expect([result.engine, result.width, result.height]).toEqual(['local:esrgan-thick', 32, 24]);
      const [got, want] = await Promise.all([meanRgb(result.data), meanRgb(input)]);
      for (let c = 0; c < 3; c++) expect(Math.abs(got[c]! - want[c]!)).toBeLessThan(6);
    } finally {
      await thick.close();
    }
  });
});
