/**
 * The local engine, model by model: time to upscale a 256×256 crop of the astronaut photo ×4,
 * peak RSS, and quality as PSNR against the original after a lanczos3 downscale (4× and 2×),
 * next to sharp's own lanczos3 upscale of the same input.
 *
 *   npx tsx bench/local-engine.ts            # all three models, markdown on stdout
 *   npx tsx bench/local-engine.ts --model esrgan-slim --json   # one model (what the parent runs)
 *
 * Each model runs in its own process so its RSS is its own, not what the previous one left behind.
 * The engine runs as configured by default: 2 workers, 128-px tiles, 16 px of overlap.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { createLocalEngine, MODEL_NAMES, type ModelName } from '../src/engines/local/index.js';
import type { Engine, SubmitGate } from '../src/engines/types.js';
import type { ClarityParams } from '../src/params/types.js';

const WORKERS = 2;
const TILE_SIZE = 128;
const TILE_OVERLAP = 16;

const gate: SubmitGate = { acquire: async () => {}, pauseUntil() {} };
const PARAMS: ClarityParams = {
  scale_factor: 4, creativity: 0.35, resemblance: 0.6, dynamic: 6, sharpen: 0, handfix: 'disabled', seed: 1337,
  num_inference_steps: 18, scheduler: 'DPM++ 3M SDE Karras', sd_model: 'juggernaut_reborn.safetensors [338b85bc4f]',
  custom_sd_model: '', prompt: '', negative_prompt: '', lora_links: '', tiling_width: 112, tiling_height: 144,
  downscaling: false, downscaling_resolution: 768,
};

const astronaut = readFileSync(new URL('../test/fixtures/astronaut.jpg', import.meta.url));

interface ModelReport {
  model: ModelName;
  /** ms of the first 256² ×4 call (model load and first-call overhead included). */
  warmupMs: number;
  /** ms of each timed 256² ×4 call after the warm-up. */
  runsMs: number[];
  peakRssMb: number;
  psnrX4: number;
  psnrX2: number;
}

async function upscale(engine: Engine, data: Buffer, scale: number): Promise<Buffer> {
  const { width, height } = await sharp(data).metadata();
  const result = await engine.upscale(
    {
      masterKey: 'bench',
      source: { hash: 'bench', data, width, height, format: 'png', hasAlpha: false },
      params: { ...PARAMS, scale_factor: scale },
    },
    { gate },
  );
  return sharp(result.data).removeAlpha().raw().toBuffer();
}

function psnr(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) throw new Error(`psnr: ${a.length} vs ${b.length} bytes`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
  return 10 * Math.log10((255 * 255) / (sum / a.length));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The original and its lanczos3 downscale by `factor`, as the model's input. */
async function degraded(factor: number): Promise<{ original: Buffer; small: Buffer }> {
  const original = await sharp(astronaut).removeAlpha().raw().toBuffer();
  const small = await sharp(astronaut)
    .resize(512 / factor, 512 / factor, { kernel: 'lanczos3' })
    .png()
    .toBuffer();
  return { original, small };
}

async function lanczosPsnr(factor: number): Promise<number> {
  const { original, small } = await degraded(factor);
  const up = await sharp(small).resize(512, 512, { kernel: 'lanczos3' }).removeAlpha().raw().toBuffer();
  return psnr(up, original);
}

async function benchModel(model: ModelName): Promise<ModelReport> {
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const engine = createLocalEngine({ model, workers: WORKERS, tileSize: TILE_SIZE, tileOverlap: TILE_OVERLAP });
  try {
    const crop = await sharp(astronaut).extract({ left: 128, top: 128, width: 256, height: 256 }).png().toBuffer();
    // thick takes ~10 s a tile: one timed run after the warm-up keeps the bench near a minute.
    const runs = model === 'esrgan-thick' ? 1 : 3;
    let started = performance.now();
    await upscale(engine, crop, 4);
    const warmupMs = performance.now() - started;
    const runsMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      started = performance.now();
      await upscale(engine, crop, 4);
      runsMs.push(performance.now() - started);
    }
    const quality: number[] = [];
    for (const factor of [4, 2]) {
      const { original, small } = await degraded(factor);
      quality.push(psnr(await upscale(engine, small, factor), original));
    }
    return { model, warmupMs, runsMs, peakRssMb: peakRss / 2 ** 20, psnrX4: quality[0]!, psnrX2: quality[1]! };
  } finally {
    clearInterval(sampler);
    await engine.close();
  }
}

function machine(): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown';
  const version = (name: string) =>
    (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string })
      .version;
  return (
    `${availableParallelism()} cores (nproc), ${cpu}, Node ${process.version}; ` +
    `@tensorflow/tfjs ${version('@tensorflow/tfjs')} + tfjs-backend-wasm ${version('@tensorflow/tfjs-backend-wasm')}, ` +
    `@upscalerjs/esrgan-* ${version('@upscalerjs/esrgan-slim')}, sharp ${version('sharp')}`
  );
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const only = args.includes('--model') ? (args[args.indexOf('--model') + 1] as ModelName) : undefined;
  if (only) {
    if (!MODEL_NAMES.includes(only)) throw new Error(`--model: expected one of ${MODEL_NAMES.join(', ')}`);
    const report = await benchModel(only);
    process.stdout.write(args.includes('--json') ? JSON.stringify(report) + '\n' : `${JSON.stringify(report, null, 2)}\n`);
    return;
  }

  const reports: ModelReport[] = [];
  for (const model of MODEL_NAMES) {
    process.stderr.write(`${model}…\n`);
    // Same node flags (tsx's loader among them), fresh process: RSS per model.
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), '--model', model, '--json'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 },
    );
    if (child.status !== 0) throw new Error(`${model}: bench process exited with ${child.status}`);
    reports.push(JSON.parse(child.stdout.trim().split('\n').pop()!) as ModelReport);
  }
  const [lanczosX4, lanczosX2] = [await lanczosPsnr(4), await lanczosPsnr(2)];

  const s = (ms: number) => (ms / 1000).toFixed(2);
  const lines = [
    `Machine: ${machine()}.`,
    '',
    `Engine as configured by default: ${WORKERS} worker threads, ${TILE_SIZE}-px tiles, ${TILE_OVERLAP} px of overlap.`,
    'Time: 256×256 centre crop of `test/fixtures/astronaut.jpg` upscaled ×4 to 1024×1024 PNG, end to end',
    '(decode, 4 tiles, stitch, encode); median of the timed runs after one warm-up call. Peak RSS: the',
    'whole process (main thread + workers), sampled every 50 ms, one process per model. PSNR: the 512×512',
    'photo shrunk 4× (or 2×) with lanczos3, upscaled back, against the original (RGB, dB, higher is better).',
    '',
    '| model | 256² ×4, s (median) | runs | first call, s | peak RSS, MB | PSNR ×4 (128²→512²) | PSNR ×2 (256²→512²) |',
    '|---|---|---|---|---|---|---|',
    ...reports.map(
      (r) =>
        `| ${r.model} | ${s(median(r.runsMs))} | ${r.runsMs.map(s).join(', ')} | ${s(r.warmupMs)} | ` +
        `${Math.round(r.peakRssMb)} | ${r.psnrX4.toFixed(2)} dB | ${r.psnrX2.toFixed(2)} dB |`,
    ),
    `| sharp lanczos3 | | | | | ${lanczosX4.toFixed(2)} dB | ${lanczosX2.toFixed(2)} dB |`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
