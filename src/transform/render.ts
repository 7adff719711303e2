/**
 * The output stage: one master in, one encoded variant out, with sharp. The only I/O is sharp's
 * thread pool; everything it does was decided by `planOutput`.
 */
import sharp from 'sharp';
import type { OutputPlan } from './plan.js';
import { TransformError } from './errors.js';

export interface RenderOptions {
  /** AVIF encoder effort, 0-9. sharp's default of 4 takes seconds per image (PERFORMANCE.md). */
  avifEffort: number;
  /** Largest master decoded, in pixels; default: sharp's own limit (16383², about 268 MP). */
  maxPixels?: number;
}

export interface RenderedVariant {
  data: Buffer;
  width: number;
  height: number;
  contentType: string;
}

/** Largest edge each encoder writes (WebP's format limit; JPEG's 16-bit header, less libjpeg's margin). */
const MAX_EDGE: Readonly<Record<OutputPlan['format'], number>> = { webp: 16383, jpeg: 65500, avif: 65536, png: 2 ** 31 - 1 };

/** JPEG has no alpha, and letterbox padding should not add any: both become white. */
const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };

/**
 * zlib level 6: level 9 costs several times the CPU for a few percent on photographic content,
 * which an upscaled master always is.
 */
const PNG_COMPRESSION_LEVEL = 6;

/**
 * Encodes `master` as `plan` says: EXIF orientation applied, never enlarged beyond the master,
 * every metadata block (EXIF, XMP, IPTC, ICC) stripped: sharp's default, kept by never calling
 * `withMetadata`/`keep*`, because a photo's EXIF can carry GPS and camera serials. Any sharp
 * failure is a `TransformError`.
 */
export async function renderVariant(master: Buffer, plan: OutputPlan, options: RenderOptions): Promise<RenderedVariant> {
  try {
    let image = sharp(master, options.maxPixels !== undefined ? { limitInputPixels: options.maxPixels } : {}).rotate();
    if (plan.width !== undefined || plan.height !== undefined) {
      image = image.resize({
        ...(plan.width !== undefined ? { width: plan.width } : {}),
        ...(plan.height !== undefined ? { height: plan.height } : {}),
        fit: plan.fit,
        withoutEnlargement: true,
        background: WHITE,
      });
    } else {
      // A whole master past the encoder's edge limit is shrunk to fit rather than refused.
      const edge = MAX_EDGE[plan.format];
      const meta = await sharp(master).metadata();
      if (Math.max(meta.width ?? 0, meta.height ?? 0) > edge) {
        image = image.resize({ width: edge, height: edge, fit: 'inside', withoutEnlargement: true });
      }
    }
    switch (plan.format) {
      case 'jpeg':
        image = image.flatten({ background: WHITE }).jpeg({ quality: plan.quality, mozjpeg: true });
        break;
      case 'webp':
        image = image.webp({ quality: plan.quality });
        break;
      case 'avif':
        image = image.avif({ quality: plan.quality, effort: options.avifEffort });
        break;
      case 'png':
        image = image.png({ compressionLevel: PNG_COMPRESSION_LEVEL });
        break;
    }
    const { data, info } = await image.toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, contentType: plan.contentType };
  } catch (error) {
    throw new TransformError({
      detail: `the upscaled image could not be converted to ${plan.format}`,
      cause: error,
    });
  }
}

/** Whether `image` decodes in full (not only its header): tells a corrupt master from an encoder limit. */
export async function decodes(image: Buffer): Promise<boolean> {
  return sharp(image, { failOn: 'error', limitInputPixels: false })
    .raw()
    .toBuffer()
    .then(
      () => true,
      () => false,
    );
}
