/**
 * TensorFlow.js inside one worker thread: the wasm backend, the ESRGAN models read from their npm
 * packages on disk, one tile in, one tile out. Imported by the worker only; the main thread never
 * loads tfjs.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import type { ModelName } from './protocol.js';
import type { ModelScale } from './plan.js';

// tfjs and the model definitions are CommonJS; `require` gives their real export objects, where
// ESM named-export detection on the big tfjs bundle is not something to rely on. The model
// packages' ESM builds use extensionless imports and do not load under Node at all.
const require = createRequire(import.meta.url);

/** The parts of an UpscalerJS model definition (`@upscalerjs/<model>/<n>x`) this engine reads. */
interface ModelDefinition {
  scale: number;
  modelType: 'layers' | 'graph';
  inputRange: [number, number];
  outputRange: [number, number];
  /** Registers custom layers (thick: `MultiplyBeta`, `PixelShuffle<n>x`); must run before loading. */
  setup?: (tf: typeof TF) => void | Promise<void>;
  _internals: { path: string };
}

interface WeightsGroup {
  paths: string[];
  weights: TF.io.WeightsManifestEntry[];
}

export interface Upscaled {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** Upscales interleaved 8-bit RGB tiles with one ESRGAN model family. */
export interface Inference {
  upscale(scale: ModelScale, width: number, height: number, rgb: Uint8Array): Promise<Upscaled>;
}

/** The folder of an installed package: the nearest `package.json` above its resolved entry. */
async function packageRoot(name: string): Promise<string> {
  let dir = dirname(require.resolve(name));
  for (;;) {
    try {
      const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (manifest.name === name) return dir;
    } catch {
      // no package.json here: keep climbing
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the folder of package ${name}`);
    dir = parent;
  }
}

/**
 * A tfjs IO handler reading `model.json` and its weight shards from disk: no fetch, no network,
 * so the engine works offline and no URL can be redirected somewhere else.
 */
function fileHandler(modelJsonPath: string): TF.io.IOHandler {
  return {
    async load() {
      const json = JSON.parse(await readFile(modelJsonPath, 'utf8')) as {
        modelTopology: object;
        format?: string;
        generatedBy?: string;
        convertedBy?: string | null;
        weightsManifest: WeightsGroup[];
      };
      const weightSpecs: TF.io.WeightsManifestEntry[] = [];
      const shards: Buffer[] = [];
      for (const group of json.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const path of group.paths) shards.push(await readFile(join(dirname(modelJsonPath), path)));
      }
      const weights = Buffer.concat(shards);
      const artifacts: TF.io.ModelArtifacts = {
        modelTopology: json.modelTopology,
        weightSpecs,
        weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      };
      if (json.format !== undefined) artifacts.format = json.format;
      if (json.generatedBy !== undefined) artifacts.generatedBy = json.generatedBy;
      if (json.convertedBy != null) artifacts.convertedBy = json.convertedBy;
      return artifacts;
    },
  };
}

interface LoadedModel {
  model: TF.LayersModel;
  inputRange: [number, number];
  outputRange: [number, number];
}

/** Sets up tfjs on the wasm backend in this thread and returns the tile upscaler for `name`. */
export async function createInference(name: ModelName): Promise<Inference> {
  const tf = require('@tensorflow/tfjs') as typeof TF;
  const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  // The backend fetches its .wasm files relative to this prefix; a folder path (with its trailing
  // slash) makes it read them from disk in Node.
  wasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
  if (!(await tf.setBackend('wasm'))) throw new Error('the tfjs wasm backend failed to initialise');
  await tf.ready();

  const root = await packageRoot(`@upscalerjs/${name}`);
  const models = new Map<ModelScale, Promise<LoadedModel>>();

  async function load(scale: ModelScale): Promise<LoadedModel> {
    const definition = require(`@upscalerjs/${name}/${scale}x`) as ModelDefinition;
    if (definition.modelType !== 'layers') throw new Error(`${name} x${scale}: not a layers model`);
    // thick's custom layers must be registered before its topology can be deserialised.
    await definition.setup?.(tf);
    const model = await tf.loadLayersModel(fileHandler(join(root, definition._internals.path)));
    return { model, inputRange: definition.inputRange, outputRange: definition.outputRange };
  }

  return {
    async upscale(scale, width, height, rgb) {
      let pending = models.get(scale);
      if (!pending) {
        pending = load(scale);
        // A failed load is not cached, so a transient I/O error does not stick for the worker's life.
        pending.catch(() => models.delete(scale));
        models.set(scale, pending);
      }
      const { model, inputRange, outputRange } = await pending;

      // The model's range, not 0–255, is what it was trained on: thick wants [0, 1] and answers a
      // white image when fed 0–255, slim fed [0, 1] answers a black one.
      const [inLow, inHigh] = inputRange;
      const inStep = (inHigh - inLow) / 255;
      const input = new Float32Array(rgb.length);
      for (let i = 0; i < rgb.length; i++) input[i] = inLow + rgb[i]! * inStep;

      const output = tf.tidy(() => model.predict(tf.tensor4d(input, [1, height, width, 3])) as TF.Tensor);
      try {
        const [, outHeight, outWidth, channels] = output.shape;
        if (outHeight !== height * scale || outWidth !== width * scale || channels !== 3) {
          throw new Error(`${name} x${scale}: expected ${width * scale}×${height * scale}×3, got ${output.shape.join('×')}`);
        }
        const values = await output.data();
        // Outputs overshoot the range (−40 to 326 seen on 0–255 models): round and clip.
        const [outLow, outHigh] = outputRange;
        const outStep = 255 / (outHigh - outLow);
        const pixels = new Uint8Array(values.length);
        for (let i = 0; i < values.length; i++) {
          const v = Math.round((values[i]! - outLow) * outStep);
          pixels[i] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
        return { width: outWidth, height: outHeight, rgb: pixels };
      } finally {
        output.dispose();
      }
    },
  };
}
