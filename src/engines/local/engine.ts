/**
 * The embedded engine: ESRGAN (UpscalerJS models, tfjs on wasm) in worker threads, so the product
 * works offline and in tests. sharp decodes, shrinks, resizes to the exact size, sharpens, carries
 * the alpha channel and encodes; the model only ever sees RGB tiles.
 */
import sharp from 'sharp';
import { CdnError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { PARAMS, type EngineName, type ParamName } from '../../params/table.js';
import type { ClarityParams } from '../../params/types.js';
import type { Engine, EngineContext, EngineInput, EngineResult } from '../types.js';
import { LocalEngineError } from './errors.js';
import { downscaledSize, outputSize, pickModelScale, sharpenSigma } from './plan.js';
import { WorkerPool } from './pool.js';
import { MODEL_NAMES, type ModelName } from './protocol.js';
import { cropPixels, planTiles, stitchTile } from './tiles.js';

export interface LocalEngineOptions {
  /** UpscalerJS model family (`LOCAL_MODEL`): slim is fast, thick ~20× slower and sharper. */
  model: ModelName;
  /** Inference worker threads (`LOCAL_WORKERS`); more than the cores only adds memory. */
  workers: number;
  /** Longest tile edge fed to the model, in source px (`LOCAL_TILE_SIZE`); bounds memory per inference. */
  tileSize: number;
  /** Context px around each tile, cropped after upscaling (`LOCAL_TILE_OVERLAP`); 16 hides seams. */
  tileOverlap: number;
  logger?: Logger;
}

/** The clarity fields whose table entry lists the local engine: the rest are reported ignored. */
const HONORED = new Set<string>(
  (Object.entries(PARAMS) as [ParamName, (typeof PARAMS)[ParamName]][])
    .filter(([, spec]) => spec.group === 'clarity' && (spec.engines as readonly EngineName[]).includes('local'))
    .map(([name]) => name),
);

function checkOptions(options: LocalEngineOptions): void {
  const problems: string[] = [];
  if (!(MODEL_NAMES as readonly string[]).includes(options.model)) {
    problems.push(`model: expected one of ${MODEL_NAMES.join(', ')}, got ${String(options.model)}`);
  }
  for (const [name, min] of [['workers', 1], ['tileSize', 1], ['tileOverlap', 0]] as const) {
    const value = options[name];
    if (!Number.isInteger(value) || value < min) problems.push(`${name}: expected an integer ≥ ${min}, got ${value}`);
  }
  if (problems.length > 0) throw new TypeError(`createLocalEngine: ${problems.join('; ')}`);
}

export function createLocalEngine(options: LocalEngineOptions): Engine {
  checkOptions(options);
  const { model, tileSize, tileOverlap, logger } = options;
  const id = `local:${model}`;
  const pool = new WorkerPool({ model, size: options.workers, ...(logger ? { logger } : {}) });

  /** Decoded, oriented, optionally shrunk source as raw sRGB, split into RGB and alpha. */
  async function decode(data: Buffer, params: ClarityParams) {
    const meta = await sharp(data).metadata();
    // PNG output carries no EXIF: orient now, or a phone photo comes out on its side.
    const oriented = { width: meta.autoOrient.width, height: meta.autoOrient.height };
    const size = downscaledSize(oriented, params.downscaling, params.downscaling_resolution);
    let image = sharp(data).autoOrient();
    if (size.width !== oriented.width || size.height !== oriented.height) {
      image = image.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' });
    }
    const { data: pixels, info } = await image
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = info;
    if (channels === 3) return { width, height, rgb: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length) };
    if (channels !== 4) throw new Error(`unexpected ${channels} channels after sRGB conversion`);
    const count = width * height;
    const rgb = new Uint8Array(count * 3);
    const alpha = Buffer.alloc(count);
    for (let p = 0; p < count; p++) {
      rgb[p * 3] = pixels[p * 4]!;
      rgb[p * 3 + 1] = pixels[p * 4 + 1]!;
      rgb[p * 3 + 2] = pixels[p * 4 + 2]!;
      alpha[p] = pixels[p * 4 + 3]!;
    }
    return { width, height, rgb, alpha };
  }

  /** Runs every tile through the pool, at most one per worker in flight for this job. */
  async function infer(rgb: Uint8Array, width: number, height: number, scale: 2 | 3 | 4, signal?: AbortSignal) {
    const tiles = planTiles(width, height, tileSize, tileOverlap);
    const outWidth = width * scale;
    const output = new Uint8Array(outWidth * height * scale * 3);
    // Feeding tiles lane by lane instead of queueing them all keeps several jobs interleaved on
    // the workers, and a failed or aborted job stops dispatching at once.
    let next = 0;
    let failed = false;
    const lane = async (): Promise<void> => {
      while (next < tiles.length && !failed) {
        signal?.throwIfAborted();
        const tile = tiles[next++]!;
        const job = {
          scale,
          width: tile.input.width,
          height: tile.input.height,
          rgb: cropPixels(rgb, width, 3, tile.input),
        };
        try {
          const result = await pool.run(job, signal);
          stitchTile(output, outWidth, result.rgb, tile, scale, 3);
        } catch (error) {
          failed = true;
          throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(pool.size, tiles.length) }, lane));
    return { output, tiles: tiles.length };
  }

  async function upscale(input: EngineInput, context: EngineContext): Promise<EngineResult> {
    const started = performance.now();
    const { signal } = context;
    const { params } = input;
    signal?.throwIfAborted();
    // One submission for the global limiter, like one upstream call: it bounds how many images
    // are decoded and held in memory at once, not only the inference.
    await context.gate.acquire(signal);
    try {
      const source = await decode(input.source.data, params);
      const modelScale = pickModelScale(params.scale_factor);
      const { output, tiles } = await infer(source.rgb, source.width, source.height, modelScale, signal);
      const target = outputSize(source, params.scale_factor);

      let rgb = sharp(output, {
        raw: { width: source.width * modelScale, height: source.height * modelScale, channels: 3 },
      });
      if (target.width !== source.width * modelScale || target.height !== source.height * modelScale) {
        rgb = rgb.resize(target.width, target.height, { fit: 'fill', kernel: 'lanczos3' });
      }
      const sigma = sharpenSigma(params.sharpen);
      if (sigma !== undefined) rgb = rgb.sharpen({ sigma });

      let image = rgb;
      if (source.alpha) {
        // The model knows nothing of transparency: alpha takes the plain lanczos3 route and is
        // joined back after the RGB is final, so sharpening never touches it.
        const raw = { width: target.width, height: target.height, channels: 1 as const };
        const [rgbPixels, alphaPixels] = await Promise.all([
          rgb.raw().toBuffer(),
          sharp(source.alpha, { raw: { width: source.width, height: source.height, channels: 1 } })
            .resize(target.width, target.height, { fit: 'fill', kernel: 'lanczos3' })
            // sharp writes a one-band image as sRGB (three bands) unless told to keep one.
            .extractChannel(0)
            .raw()
            .toBuffer(),
        ]);
        image = sharp(rgbPixels, { raw: { ...raw, channels: 3 } }).joinChannel(alphaPixels, { raw });
      }
      const data = await image.png().toBuffer();
      const elapsedMs = Math.round(performance.now() - started);
      logger?.debug(
        { engine: id, masterKey: input.masterKey, modelScale, tiles, width: target.width, height: target.height, elapsedMs },
        'local upscale done',
      );
      return { data, width: target.width, height: target.height, engine: id, paid: false, elapsedMs };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof CdnError) throw error;
      logger?.error({ engine: id, masterKey: input.masterKey, err: error }, 'local upscale failed');
      throw new LocalEngineError({ detail: 'The local upscaler failed on this image.', cause: error });
    }
  }

  return {
    id,
    honors: HONORED,
    paid: false,
    upscale,
    close: () => pool.close(),
  };
}
