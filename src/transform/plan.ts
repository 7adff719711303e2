/**
 * Output planning: what the transform will produce, decided from values alone, before any image
 * work, so the variant key (and the ETag for a 304) is known without decoding anything.
 */
import type { VariantSpec } from '../params/canonical-key.js';
import type { OutputFormat, OutputParams } from '../params/types.js';
import { negotiateFormat } from './accept.js';

export interface OutputPlan extends VariantSpec {
  format: OutputFormat;
  fit: OutputParams['fit'];
  /** The format came from `Accept` (`format=auto`): responses carry `Vary: Accept`. */
  vary: boolean;
  /** MIME type of the encoded variant. */
  contentType: string;
}

/**
 * Encoder quality when the request gives none. avif's scale is not webp's: 50 there looks like
 * about 80 here. png is lossless, so its "quality" is a constant.
 */
export const DEFAULT_QUALITY: Readonly<Record<OutputFormat, number>> = Object.freeze({
  webp: 80,
  avif: 50,
  jpeg: 80,
  png: 100,
});

export const CONTENT_TYPES: Readonly<Record<OutputFormat, string>> = Object.freeze({
  webp: 'image/webp',
  avif: 'image/avif',
  jpeg: 'image/jpeg',
  png: 'image/png',
});

/**
 * Resolves negotiation and defaults into one canonical plan. Requests that would render the same
 * bytes get equal plans, so they share one variant key: png ignores `quality`, and `fit` only
 * matters when both `w` and `h` are set.
 */
export function planOutput(output: OutputParams, accept: string | undefined, hasAlpha: boolean): OutputPlan {
  const vary = output.format === 'auto';
  const format = vary ? negotiateFormat(accept, hasAlpha) : (output.format as OutputFormat);
  const quality = format === 'png' ? DEFAULT_QUALITY.png : (output.quality ?? DEFAULT_QUALITY[format]);
  const fit = output.w !== undefined && output.h !== undefined ? output.fit : 'inside';
  // Absent sizes are left out rather than set to undefined: the variant key hashes own properties.
  return {
    format,
    quality,
    ...(output.w !== undefined ? { width: output.w } : {}),
    ...(output.h !== undefined ? { height: output.h } : {}),
    fit,
    vary,
    contentType: CONTENT_TYPES[format],
  };
}

/**
 * Bumped whenever the output stage would write different bytes for the same plan (a new default,
 * a new sharp option): part of every variant key, so old variants are not served as new ones, and
 * instances on different versions sharing Redis do not overwrite each other's.
 */
export const ENCODER_VERSION = 1;

/** The encoder settings that change bytes without being part of the request. */
export interface EncoderSettings {
  /** `AVIF_EFFORT`. */
  avifEffort: number;
}

/**
 * The plan's cache identity alone. `variantKey` hashes every own property it is given, and `vary`
 * and `contentType` follow from how the format was chosen, not from the bytes: `format=webp` and
 * `format=auto` resolved to webp render the same variant and should share its key. The encoder's
 * own settings are in it: changing `AVIF_EFFORT` makes new AVIF variants rather than serving the
 * old ones (decided, rather than left to drift).
 */
export function variantSpec(plan: OutputPlan, encoder: EncoderSettings): VariantSpec {
  const { vary: _vary, contentType: _contentType, ...spec } = plan;
  return { ...spec, encoder: plan.format === 'avif' ? `v${ENCODER_VERSION}/effort${encoder.avifEffort}` : `v${ENCODER_VERSION}` };
}
