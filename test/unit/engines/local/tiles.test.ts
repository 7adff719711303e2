import { describe, expect, it } from 'vitest';
import { cropPixels, planTiles, stitchTile, type Rect } from '../../../../src/engines/local/tiles.js';

const CASES = [
  // width, height, tileSize, overlap
  [1, 1, 128, 16],
  [24, 16, 8, 4],
  [40, 30, 16, 8],
  [40, 30, 7, 0],
  [130, 50, 128, 16],
  [256, 256, 128, 16],
  [33, 257, 32, 40],
] as const;

const contains = (outer: Rect, inner: Rect) =>
  inner.x >= outer.x &&
  inner.y >= outer.y &&
  inner.x + inner.width <= outer.x + outer.width &&
  inner.y + inner.height <= outer.y + outer.height;

describe('planTiles', () => {
  it.each(CASES)('%i×%i in tiles of %i with %i of overlap: cores cover every pixel exactly once', (w, h, size, overlap) => {
    const covered = new Uint8Array(w * h);
    for (const { core } of planTiles(w, h, size, overlap)) {
      for (let y = core.y; y < core.y + core.height; y++) {
        for (let x = core.x; x < core.x + core.width; x++) covered[y * w + x]!++;
      }
    }
    expect(covered.every((n) => n === 1)).toBe(true);
  });

  it.each(CASES)('%i×%i in tiles of %i with %i of overlap: inputs are the cores plus clipped context', (w, h, size, overlap) => {
    const tiles = planTiles(w, h, size, overlap);
    for (const { core, input } of tiles) {
      expect(core.width).toBeGreaterThan(0);
      expect(core.height).toBeGreaterThan(0);
      expect(core.width).toBeLessThanOrEqual(size);
      expect(core.height).toBeLessThanOrEqual(size);
      expect(contains({ x: 0, y: 0, width: w, height: h }, input)).toBe(true);
      expect(contains(input, core)).toBe(true);
      // Context on each side: the full overlap, or all there is up to the image border.
      expect(core.x - input.x).toBe(Math.min(overlap, core.x));
      expect(core.y - input.y).toBe(Math.min(overlap, core.y));
      expect(input.x + input.width - (core.x + core.width)).toBe(Math.min(overlap, w - core.x - core.width));
      expect(input.y + input.height - (core.y + core.height)).toBe(Math.min(overlap, h - core.y - core.height));
    }
    // As few tiles as the tile size allows, none a thin sliver.
    expect(tiles).toHaveLength(Math.ceil(w / size) * Math.ceil(h / size));
    const widths = tiles.map((t) => t.core.width);
    expect(Math.max(...widths) - Math.min(...widths)).toBeLessThanOrEqual(1);
  });

  it('is one tile, without context, when the image fits', () => {
    expect(planTiles(24, 16, 128, 16)).toEqual([
      { core: { x: 0, y: 0, width: 24, height: 16 }, input: { x: 0, y: 0, width: 24, height: 16 } },
    ]);
  });

  it('splits 130 px into two even tiles rather than 128 + 2', () => {
    expect(planTiles(130, 10, 128, 16).map((t) => [t.core.x, t.core.width, t.input.x, t.input.width])).toEqual([
      [0, 65, 0, 81],
      [65, 65, 49, 81],
    ]);
  });

  it.each([
    [0, 10, 8, 0, 'width'],
    [10, 2.5, 8, 0, 'height'],
    [10, 10, 0, 0, 'tileSize'],
    [10, 10, 8, -1, 'overlap'],
  ])('rejects %s×%s, tile %s, overlap %s (%s)', (w, h, size, overlap, name) => {
    expect(() => planTiles(w, h, size, overlap)).toThrow(new RegExp(`expected ${name}`));
  });
});

/** Nearest-neighbour ×scale: a stand-in for the model whose output is known exactly. */
function nearest(pixels: Uint8Array, width: number, height: number, scale: number, channels: number): Uint8Array {
  const out = new Uint8Array(width * scale * height * scale * channels);
  for (let y = 0; y < height * scale; y++) {
    for (let x = 0; x < width * scale; x++) {
      const from = (Math.floor(y / scale) * width + Math.floor(x / scale)) * channels;
      out.set(pixels.subarray(from, from + channels), (y * width * scale + x) * channels);
    }
  }
  return out;
}

describe('stitchTile', () => {
  it.each([
    [40, 30, 16, 8, 2],
    [23, 17, 8, 4, 3],
    [9, 9, 4, 3, 4],
  ])('%i×%i in tiles of %i (+%i) at ×%i reassembles the whole, context cropped', (w, h, size, overlap, scale) => {
    const channels = 3;
    const image = new Uint8Array(w * h * channels).map((_, i) => (i * 7919) % 251); // never 255
    const output = new Uint8Array(w * scale * h * scale * channels).fill(255);
    for (const tile of planTiles(w, h, size, overlap)) {
      const { input, core } = tile;
      const upscaled = nearest(cropPixels(image, w, channels, input), input.width, input.height, scale, channels);
      // Poison the context: if any of it reached the output, the comparison below fails.
      for (let y = 0; y < input.height * scale; y++) {
        for (let x = 0; x < input.width * scale; x++) {
          const sx = input.x + Math.floor(x / scale);
          const sy = input.y + Math.floor(y / scale);
          const inCore = sx >= core.x && sx < core.x + core.width && sy >= core.y && sy < core.y + core.height;
          if (!inCore) upscaled.fill(255, (y * input.width * scale + x) * channels, (y * input.width * scale + x + 1) * channels);
        }
      }
      stitchTile(output, w * scale, upscaled, tile, scale, channels);
    }
    expect(Buffer.from(output).equals(Buffer.from(nearest(image, w, h, scale, channels)))).toBe(true);
  });

  it('refuses a tile whose size does not match its input at that scale', () => {
    const [tile] = planTiles(8, 8, 8, 0);
    expect(() => stitchTile(new Uint8Array(16 * 16 * 3), 16, new Uint8Array(10), tile!, 2, 3)).toThrow(
      /expected 16×16×3 bytes, got 10/,
    );
  });
});

describe('cropPixels', () => {
  it('copies a rectangle out of an interleaved image', () => {
    const image = Uint8Array.from({ length: 4 * 3 * 2 }, (_, i) => i); // 4×3, 2 channels
    expect([...cropPixels(image, 4, 2, { x: 1, y: 1, width: 2, height: 2 })]).toEqual([10, 11, 12, 13, 18, 19, 20, 21]);
  });
});
