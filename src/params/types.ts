import type { FITS, OUTPUT_FORMATS, PLACEHOLDERS, SCHEDULERS, SD_MODELS } from './table.js';

/** The Clarity Upscaler payload, every field under its upstream name, defaults filled. */
export interface ClarityParams {
  scale_factor: number;
  creativity: number;
  resemblance: number;
  dynamic: number;
  sharpen: number;
  handfix: 'disabled' | 'hands_only' | 'image_and_hands';
  seed: number;
  num_inference_steps: number;
  scheduler: (typeof SCHEDULERS)[number];
  sd_model: (typeof SD_MODELS)[number];
  custom_sd_model: string;
  prompt: string;
  negative_prompt: string;
  lora_links: string;
  /** Source hash of the mask image; undefined: no mask. */
  mask?: string;
  tiling_width: number;
  tiling_height: number;
  downscaling: boolean;
  downscaling_resolution: number;
}

export type OutputFormat = Exclude<(typeof OUTPUT_FORMATS)[number], 'auto'>;

/** What the client asked of the output stage. */
export interface OutputParams {
  format: (typeof OUTPUT_FORMATS)[number];
  /** Undefined: the format's own default. */
  quality?: number;
  w?: number;
  h?: number;
  fit: (typeof FITS)[number];
  /** A stand-in for a cold miss (not part of any key: it never changes the final image). Undefined: `PLACEHOLDER`. */
  placeholder?: (typeof PLACEHOLDERS)[number];
}

/** A validated `/upscale/:hash` request. */
export interface UpscaleRequest {
  /** sha256 hex of the source image. */
  source: string;
  clarity: ClarityParams;
  output: OutputParams;
  /** Fields the client set explicitly (canonical names), to report those an engine ignores. */
  given: readonly string[];
}
