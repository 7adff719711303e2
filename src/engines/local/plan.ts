/**
 * What the local engine will do with one payload, as functions of values: which model scale, what
 * the source is shrunk to first, the exact output size, how hard to sharpen.
 */

/** The scales the UpscalerJS ESRGAN packages ship models for (x8 exists, but `scale_factor` ≤ 4). */
export const MODEL_SCALES = [2, 3, 4] as const;
export type ModelScale = (typeof MODEL_SCALES)[number];

/**
 * The smallest model scale that reaches `scaleFactor`, so the model never has to be stretched
 * further by plain resampling; what it overshoots is taken back with a lanczos3 shrink, which
 * keeps its detail. Below 2 there is no smaller model: scale 1 runs x2 and halves (a clean-up pass).
 */
export function pickModelScale(scaleFactor: number): ModelScale {
  if (!(scaleFactor >= 1 && scaleFactor <= 4)) {
    throw new RangeError(`pickModelScale: expected a scale from 1 to 4, got ${scaleFactor}`);
  }
  return MODEL_SCALES.find((m) => m >= scaleFactor) ?? 4;
}

export interface Size {
  width: number;
  height: number;
}

/**
 * The size the source is shrunk to before the model when `downscaling` is on: longest edge at most
 * `maxEdge`, aspect ratio kept, never enlarged. Rounded like sharp's `fit: 'inside'`.
 */
export function downscaledSize(size: Size, downscaling: boolean, maxEdge: number): Size {
  const longest = Math.max(size.width, size.height);
  if (!downscaling || longest <= maxEdge) return size;
  const ratio = maxEdge / longest;
  return {
    width: Math.max(1, Math.round(size.width * ratio)),
    height: Math.max(1, Math.round(size.height * ratio)),
  };
}

/** The size of the result: each edge times `scaleFactor`, rounded, at least 1 px. */
export function outputSize(size: Size, scaleFactor: number): Size {
  return {
    width: Math.max(1, Math.round(size.width * scaleFactor)),
    height: Math.max(1, Math.round(size.height * scaleFactor)),
  };
}

/**
 * sharp `sharpen({ sigma })` for the `sharpen` parameter (0–10), or undefined for none.
 *
 * Mapping: sigma = 0.3 × sharpen, i.e. 0.3 px at 1 up to 3 px at 10. sigma is the radius of the
 * unsharp mask in output pixels; sharp's own mild default is 1 (≈ sharpen 3.3). Past ~3 px the
 * halos around edges become visible on a 4× upscale, which is where a user asking for 10 should
 * end up: the maximum is strong, not broken. The amounts (`m1`, `m2`) stay at sharp's defaults so
 * the one knob moves one thing.
 */
export function sharpenSigma(sharpen: number): number | undefined {
  if (!(sharpen > 0)) return undefined;
  return 0.3 * Math.min(sharpen, 10);
}
