/**
 * One table of every parameter `/upscale/:hash` accepts. The parser, the canonical keys, the README
 * parameter table and the engines' "ignored" lists all read these entries, so they cannot drift.
 * Field names are the upstream's own (`../shared/UPSTREAM.md`); aliases are shorter spellings.
 */
import type { ClarityParams, OutputParams } from './types.js';

export type EngineName = 'segmind' | 'local';

interface BaseSpec {
  /** Query aliases that resolve to this field (`scale` → `scale_factor`). */
  aliases?: readonly string[];
  group: 'clarity' | 'output';
  /** Engines that act on the field; the others keep it in the cache key and report it ignored. */
  engines: readonly EngineName[];
  description: string;
}

export interface NumberSpec extends BaseSpec {
  kind: 'int' | 'float';
  min: number;
  max: number;
  /** Values must be multiples of this (tiling sizes). */
  step?: number;
  default?: number;
}
export interface EnumSpec extends BaseSpec {
  kind: 'enum';
  values: readonly string[];
  default?: string;
}
export interface BoolSpec extends BaseSpec {
  kind: 'bool';
  default: boolean;
}
export interface TextSpec extends BaseSpec {
  kind: 'text';
  maxLength: number;
  /** `url`: each comma-separated item must be an http(s) URL. */
  format?: 'url' | 'url-list';
  default: string;
}
/** A source hash (sha256 hex) of an image registered through `POST /sources`. */
export interface HashSpec extends BaseSpec {
  kind: 'hash';
  default?: undefined;
}
export type ParamSpec = NumberSpec | EnumSpec | BoolSpec | TextSpec | HashSpec;

export const SCHEDULERS = [
  'DPM++ 2M Karras', 'DPM++ SDE Karras', 'DPM++ 2M SDE Exponential', 'DPM++ 2M SDE Karras', 'Euler a', 'Euler',
  'LMS', 'Heun', 'DPM2', 'DPM2 a', 'DPM++ 2S a', 'DPM++ 2M', 'DPM++ SDE', 'DPM++ 2M SDE', 'DPM++ 2M SDE Heun',
  'DPM++ 2M SDE Heun Karras', 'DPM++ 2M SDE Heun Exponential', 'DPM++ 3M SDE', 'DPM++ 3M SDE Karras',
  'DPM++ 3M SDE Exponential', 'DPM fast', 'DPM adaptive', 'LMS Karras', 'DPM2 Karras', 'DPM2 a Karras',
  'DPM++ 2S a Karras', 'Restart', 'DDIM', 'PLMS', 'UniPC',
] as const;

export const SD_MODELS = [
  'epicrealism_naturalSinRC1VAE.safetensors [84d76a0328]',
  'juggernaut_reborn.safetensors [338b85bc4f]',
  'flat2DAnimerge_v45Sharp.safetensors',
] as const;

export const OUTPUT_FORMATS = ['auto', 'webp', 'avif', 'jpeg', 'png'] as const;
export const FITS = ['inside', 'cover', 'contain', 'fill', 'outside'] as const;
export const PLACEHOLDERS = ['local', 'lanczos', 'none'] as const;

const BOTH = ['segmind', 'local'] as const;
const SEGMIND = ['segmind'] as const;

/** Largest `w`/`h`: the edge limit of WebP (16383) is the tightest of the output encoders. */
export const MAX_EDGE = 16383;

export const PARAMS = {
  scale_factor: {
    kind: 'float', group: 'clarity', aliases: ['scale'], engines: BOTH, min: 1, max: 4, default: 2,
    description: 'Upscale factor. Above 2 the upstream runs several passes (and bills them).',
  },
  creativity: {
    kind: 'float', group: 'clarity', engines: SEGMIND, min: 0, max: 1, default: 0.35,
    description: 'Denoising strength: how much new detail the diffusion model may invent.',
  },
  resemblance: {
    kind: 'float', group: 'clarity', engines: SEGMIND, min: 0, max: 3, default: 0.6,
    description: 'ControlNet tile weight: how closely the result follows the source.',
  },
  dynamic: {
    kind: 'float', group: 'clarity', engines: SEGMIND, min: 1, max: 50, default: 6,
    description: 'CFG scale ("HDR"): contrast and punch of the invented detail.',
  },
  sharpen: {
    kind: 'float', group: 'clarity', engines: BOTH, min: 0, max: 10, default: 0,
    description: 'Sharpening applied to the result (0 = none).',
  },
  handfix: {
    kind: 'enum', group: 'clarity', engines: SEGMIND, values: ['disabled', 'hands_only', 'image_and_hands'],
    default: 'disabled', description: 'Repair hands.',
  },
  seed: {
    kind: 'int', group: 'clarity', engines: SEGMIND, min: 0, max: 4294967295, default: 1337,
    description: 'Random seed; the same seed and payload give the same image.',
  },
  num_inference_steps: {
    kind: 'int', group: 'clarity', aliases: ['steps'], engines: SEGMIND, min: 1, max: 100, default: 18,
    description: 'Diffusion steps.',
  },
  scheduler: {
    kind: 'enum', group: 'clarity', engines: SEGMIND, values: SCHEDULERS, default: 'DPM++ 3M SDE Karras',
    description: 'Diffusion sampler.',
  },
  sd_model: {
    kind: 'enum', group: 'clarity', aliases: ['model'], engines: SEGMIND, values: SD_MODELS,
    default: 'juggernaut_reborn.safetensors [338b85bc4f]', description: 'Stable Diffusion checkpoint.',
  },
  custom_sd_model: {
    kind: 'text', group: 'clarity', engines: SEGMIND, maxLength: 2048, format: 'url', default: '',
    description: 'URL of a .safetensors checkpoint used instead of `sd_model`.',
  },
  prompt: {
    kind: 'text', group: 'clarity', engines: SEGMIND, maxLength: 2000,
    default: 'masterpiece, best quality, highres, <lora:more_details:0.5> <lora:SDXLrender_v2.0:1>',
    description: 'What the invented detail should look like.',
  },
  negative_prompt: {
    kind: 'text', group: 'clarity', engines: SEGMIND, maxLength: 2000,
    default: '(worst quality, low quality, normal quality:2) JuggernautNegative-neg',
    description: 'What the invented detail should avoid.',
  },
  lora_links: {
    kind: 'text', group: 'clarity', engines: SEGMIND, maxLength: 4096, format: 'url-list', default: '',
    description: 'Comma-separated URLs of LoRA weights.',
  },
  mask: {
    kind: 'hash', group: 'clarity', engines: SEGMIND,
    description: 'Hash of a registered source image; its white areas keep the original.',
  },
  tiling_width: {
    kind: 'int', group: 'clarity', engines: SEGMIND, min: 16, max: 256, step: 16, default: 112,
    description: 'Diffusion tile width (multiples of 16).',
  },
  tiling_height: {
    kind: 'int', group: 'clarity', engines: SEGMIND, min: 16, max: 256, step: 16, default: 144,
    description: 'Diffusion tile height (multiples of 16).',
  },
  downscaling: {
    kind: 'bool', group: 'clarity', engines: BOTH, default: false,
    description: 'Downscale the source before upscaling (faster, cheaper on large sources).',
  },
  downscaling_resolution: {
    kind: 'int', group: 'clarity', engines: BOTH, min: 64, max: 4096, default: 768,
    description: 'Longest edge of the source after `downscaling`.',
  },
  format: {
    kind: 'enum', group: 'output', engines: BOTH, values: OUTPUT_FORMATS, default: 'auto',
    description: 'Output format; `auto` picks from `Accept` (avif > webp > jpeg, png when the image has alpha).',
  },
  quality: {
    kind: 'int', group: 'output', aliases: ['q'], engines: BOTH, min: 1, max: 100,
    description: 'Encoder quality; default per format (webp 80, avif 50, jpeg 80; png is lossless).',
  },
  w: {
    kind: 'int', group: 'output', aliases: ['width'], engines: BOTH, min: 1, max: MAX_EDGE,
    description: 'Output width in px; never enlarges beyond the upscaled master.',
  },
  h: {
    kind: 'int', group: 'output', aliases: ['height'], engines: BOTH, min: 1, max: MAX_EDGE,
    description: 'Output height in px; never enlarges beyond the upscaled master.',
  },
  fit: {
    kind: 'enum', group: 'output', engines: BOTH, values: FITS, default: 'inside',
    description: 'How `w` and `h` together apply (sharp\'s fit): `inside` keeps the whole image.',
  },
  placeholder: {
    kind: 'enum', group: 'output', engines: BOTH, values: PLACEHOLDERS,
    description: 'A cold miss not ready after `PLACEHOLDER_AFTER_MS` is answered at once with a stand-in (`local`: the embedded ESRGAN, `lanczos`: a resize), `no-store`, while the real job goes on. Default `PLACEHOLDER`.',
  },
} as const satisfies Record<string, ParamSpec>;

export type ParamName = keyof typeof PARAMS;

/** The query key that names a preset (`?preset=hero`). */
export const PRESET_KEY = 'preset';

/** Query parameters that are not fields: the preset name and the signature. */
export const RESERVED_KEYS = [PRESET_KEY, 'sig'] as const;

// Ties the table to the parameter types in both directions: every field has an entry, every
// entry is a field, and each entry's kind matches the field's type.
type KindOf<T> = T extends number ? 'int' | 'float' : T extends boolean ? 'bool' : 'enum' | 'text' | 'hash';
type Checked<Params, Group extends string> = {
  [K in keyof Params]-?: { group: Group; kind: KindOf<NonNullable<Params[K]>> };
};
PARAMS satisfies Checked<ClarityParams, 'clarity'> & Checked<OutputParams, 'output'>;
export type _TableCoversTypes = [Exclude<ParamName, keyof ClarityParams | keyof OutputParams>] extends [never]
  ? true
  : never;
const _tableCoversTypes: _TableCoversTypes = true;
void _tableCoversTypes;
