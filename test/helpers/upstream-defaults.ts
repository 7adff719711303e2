/**
 * The Clarity Upscaler's documented defaults (../shared/UPSTREAM.md), written out here rather than
 * read from src/params, so that a wrong default in the parameter table fails the tests.
 * Only `scale_factor` is ours: 2, the original model's default (Segmind's API would use 1).
 */
import type { ClarityParams } from '../../src/params/types.js';

export const DOCUMENTED_DEFAULTS: ClarityParams = {
  scale_factor: 2,
  creativity: 0.35,
  resemblance: 0.6,
  dynamic: 6,
  sharpen: 0,
  handfix: 'disabled',
  seed: 1337,
  num_inference_steps: 18,
  scheduler: 'DPM++ 3M SDE Karras',
  sd_model: 'juggernaut_reborn.safetensors [338b85bc4f]',
  custom_sd_model: '',
  prompt: 'masterpiece, best quality, highres, <lora:more_details:0.5> <lora:SDXLrender_v2.0:1>',
  negative_prompt: '(worst quality, low quality, normal quality:2) JuggernautNegative-neg',
  lora_links: '',
  tiling_width: 112,
  tiling_height: 144,
  downscaling: false,
  downscaling_resolution: 768,
};
