/** Small generated test images, made with real sharp. */
import sharp from 'sharp';
import { readFileSync } from 'node:fs';

/** A smooth RGB gradient with some structure, `width`×`height`, encoded as `format`. */
export async function makeImage(
  width = 32,
  height = 24,
  options: { format?: 'png' | 'jpeg' | 'webp'; alpha?: boolean; seed?: number } = {},
): Promise<Buffer> {
  const channels = options.alpha ? 4 : 3;
  const seed = options.seed ?? 0;
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      raw[i] = (x * 255) / Math.max(1, width - 1);
      raw[i + 1] = (y * 255) / Math.max(1, height - 1);
      raw[i + 2] = ((x ^ y) * 16 + seed * 37) & 255;
      if (channels === 4) raw[i + 3] = x < width / 2 ? 255 : 96;
    }
  }
  const image = sharp(raw, { raw: { width, height, channels } });
  const format = options.format ?? 'png';
  return format === 'jpeg' ? image.jpeg().toBuffer() : format === 'webp' ? image.webp().toBuffer() : image.png().toBuffer();
}

/** The one real photo of the suite (see test/fixtures/README.md): 512×512 JPEG. */
export function astronautJpeg(): Buffer {
  return readFileSync(new URL('../fixtures/astronaut.jpg', import.meta.url));
}
