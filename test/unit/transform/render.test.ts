import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { OutputParams } from '../../../src/params/types.js';
import { planOutput, renderVariant, TransformError, type OutputPlan } from '../../../src/transform/index.js';
import { makeImage } from '../../helpers/images.js';

// Effort 0 keeps AVIF encodes of these tiny images in milliseconds.
const OPTIONS = { avifEffort: 0 };
const plan = (o: Partial<OutputParams>): OutputPlan => planOutput({ format: 'png', fit: 'inside', ...o }, undefined, false);

let opaque: Buffer; // 40×20, no alpha
let transparent: Buffer; // 40×20, left half opaque, right half alpha 96

beforeAll(async () => {
  opaque = await makeImage(40, 20);
  transparent = await makeImage(40, 20, { alpha: true });
});

async function render(master: Buffer, p: OutputPlan) {
  const result = await renderVariant(master, p, OPTIONS);
  const meta = await sharp(result.data).metadata();
  // The reported size is the encoded one.
  expect([result.width, result.height]).toEqual([meta.width, meta.height]);
  return { result, meta };
}

describe('renderVariant', () => {
  it.each([
    ['jpeg', 'jpeg', 'image/jpeg'],
    ['png', 'png', 'image/png'],
    ['webp', 'webp', 'image/webp'],
    // libheif reports AVIF as heif with av1 compression.
    ['avif', 'heif', 'image/avif'],
  ] as const)('encodes %s', async (format, decodedAs, contentType) => {
    const { result, meta } = await render(opaque, plan({ format }));
    expect(meta.format).toBe(decodedAs);
    if (format === 'avif') expect(meta.compression).toBe('av1');
    expect(result.contentType).toBe(contentType);
    expect([result.width, result.height]).toEqual([40, 20]);
  });

  it.each([
    ['w only', { w: 10 }, [10, 5]],
    ['h only', { h: 5 }, [10, 5]],
    ['w+h inside', { w: 10, h: 10, fit: 'inside' }, [10, 5]],
    ['w+h contain (padded)', { w: 10, h: 10, fit: 'contain' }, [10, 10]],
    ['w+h cover (cropped)', { w: 10, h: 10, fit: 'cover' }, [10, 10]],
    ['w+h fill (stretched)', { w: 10, h: 10, fit: 'fill' }, [10, 10]],
    ['w+h outside', { w: 10, h: 10, fit: 'outside' }, [20, 10]],
    ['w larger than the master', { w: 400 }, [40, 20]],
    ['h larger than the master', { h: 400 }, [40, 20]],
    ['w+h larger than the master, cover', { w: 400, h: 400, fit: 'cover' }, [40, 20]],
    ['w+h larger than the master, fill', { w: 400, h: 400, fit: 'fill' }, [40, 20]],
  ] as const)('resizes: %s', async (_name, size, [width, height]) => {
    const { meta } = await render(opaque, plan({ format: 'webp', ...size }));
    expect([meta.width, meta.height]).toEqual([width, height]);
  });

  it('applies EXIF orientation and strips every metadata block', async () => {
    // 40×20 pixels stored, orientation 6: displayed as 20×40.
    const rotated = await sharp(opaque).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const input = await sharp(rotated).metadata();
    expect(input.orientation).toBe(6);
    expect(input.exif).toBeDefined();

    for (const format of ['jpeg', 'png', 'webp', 'avif'] as const) {
      const { meta } = await render(rotated, plan({ format }));
      expect([meta.width, meta.height]).toEqual([20, 40]);
      expect(meta.orientation).toBeUndefined();
      expect(meta.exif).toBeUndefined();
      expect(meta.xmp).toBeUndefined();
      expect(meta.iptc).toBeUndefined();
      expect(meta.icc).toBeUndefined();
    }
    // Resizing applies to the oriented image.
    const { meta } = await render(rotated, plan({ format: 'webp', w: 10 }));
    expect([meta.width, meta.height]).toEqual([10, 20]);
  });

  it('strips XMP too', async () => {
    const tagged = await sharp(opaque).withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>').jpeg().toBuffer();
    expect((await sharp(tagged).metadata()).xmp).toBeDefined();
    const { meta } = await render(tagged, plan({ format: 'jpeg' }));
    expect(meta.xmp).toBeUndefined();
  });

  it.each(['png', 'webp', 'avif'] as const)('keeps alpha in %s', async (format) => {
    const { result, meta } = await render(transparent, plan({ format }));
    expect(meta.hasAlpha).toBe(true);
    // The right half stays translucent (alpha 96; lossy encoders may move it a little).
    const { data, info } = await sharp(result.data).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const alphaAt = (x: number, y: number) => data[(y * info.width + x) * info.channels + 3];
    expect(alphaAt(35, 10)).toBeLessThan(128);
    expect(alphaAt(5, 10)).toBe(255);
  });

  it('flattens alpha onto white for jpeg', async () => {
    const { result, meta } = await render(transparent, plan({ format: 'jpeg' }));
    expect(meta.hasAlpha).toBe(false);
    // Pixel (39, 0) is (255, 0, 0) at alpha 96: over white it is pink, over black it would be dark.
    const { data, info } = await sharp(result.data).raw().toBuffer({ resolveWithObject: true });
    const i = 39 * info.channels;
    expect(data[i]).toBeGreaterThan(200);
    expect(data[i + 1]).toBeGreaterThan(120);
  });

  it('encodes with the planned quality', async () => {
    const photo = await makeImage(64, 64, { seed: 3 });
    const low = await renderVariant(photo, plan({ format: 'jpeg', quality: 10 }), OPTIONS);
    const high = await renderVariant(photo, plan({ format: 'jpeg', quality: 95 }), OPTIONS);
    expect(low.data.length).toBeLessThan(high.data.length);
  });

  it.each([
    ['garbage bytes', Buffer.from('definitely not an image')],
    ['an empty buffer', Buffer.alloc(0)],
  ])('turns a master that does not decode (%s) into a TransformError', async (_name, master) => {
    const error = await renderVariant(master, plan({ format: 'webp' }), OPTIONS).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransformError);
    expect(error).toMatchObject({ status: 500, code: 'TRANSFORM_FAILED' });
    expect((error as TransformError).cause).toBeInstanceOf(Error);
  });

  it('turns a truncated master into a TransformError', async () => {
    const whole = await makeImage(64, 64, { format: 'jpeg' });
    const error = await renderVariant(whole.subarray(0, whole.length >> 1), plan({ format: 'png' }), OPTIONS).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TransformError);
  });

  it('refuses a master over maxPixels', async () => {
    const error = await renderVariant(opaque, plan({ format: 'png' }), { ...OPTIONS, maxPixels: 100 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TransformError);
  });
});

describe('renderVariant at the encoders\' edge limits', () => {
  it('a whole master wider than WebP allows is shrunk to 16383 px, not refused', async () => {
    const wide = await sharp({ create: { width: 16400, height: 8, channels: 3, background: '#808080' } }).png().toBuffer();
    const out = await renderVariant(wide, planOutput({ format: 'webp', fit: 'inside' }, undefined, false), { avifEffort: 0 });
    const meta = await sharp(out.data).metadata();
    expect(meta).toMatchObject({ format: 'webp', width: 16383 });
    expect(out.width).toBe(16383);
  });
});
