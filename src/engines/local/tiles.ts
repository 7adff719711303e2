/**
 * Splitting an image into model-sized tiles and putting the upscaled tiles back together.
 *
 * The ESRGAN convolutions zero-pad at a tile's border, so a tile cut flush with its neighbour shows
 * a seam. Each tile is therefore fed with `overlap` pixels of real context on every side where the
 * image has some, and that context is cropped away after upscaling: only the tile's own core lands
 * in the output. 16 px of context reproduced the untiled result bit for bit on 128-px tiles
 * (/work/shared/LOCAL_ENGINE.md), while memory per inference stays bounded by the tile size.
 */

/** A rectangle in pixels: `x`, `y` from the top-left corner. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Tile {
  /** The part of the image this tile is responsible for; the cores partition the image. */
  core: Rect;
  /** What is fed to the model: the core plus up to `overlap` px of context on each side. */
  input: Rect;
}

/**
 * Splits `length` px into `count` runs whose sizes differ by at most one: no thin sliver at the
 * end, whose small input would give the model little to work with, and even work for each worker.
 */
function splitEvenly(length: number, maxRun: number): Array<[start: number, size: number]> {
  const count = Math.max(1, Math.ceil(length / maxRun));
  const base = Math.floor(length / count);
  const longer = length % count;
  const runs: Array<[number, number]> = [];
  let start = 0;
  for (let i = 0; i < count; i++) {
    const size = base + (i < longer ? 1 : 0);
    runs.push([start, size]);
    start += size;
  }
  return runs;
}

/**
 * Tiles covering a `width`×`height` image, row by row. Cores are at most `tileSize` on each edge and
 * as equal as possible; inputs add `overlap` px of context, clipped to the image, so no input is
 * larger than `tileSize + 2 × overlap` on an edge.
 */
export function planTiles(width: number, height: number, tileSize: number, overlap: number): Tile[] {
  for (const [name, value, min] of [
    ['width', width, 1],
    ['height', height, 1],
    ['tileSize', tileSize, 1],
    ['overlap', overlap, 0],
  ] as const) {
    if (!Number.isInteger(value) || value < min) {
      throw new RangeError(`planTiles: expected ${name} to be an integer ≥ ${min}, got ${value}`);
    }
  }
  const tiles: Tile[] = [];
  for (const [y, h] of splitEvenly(height, tileSize)) {
    for (const [x, w] of splitEvenly(width, tileSize)) {
      const x0 = Math.max(0, x - overlap);
      const y0 = Math.max(0, y - overlap);
      const x1 = Math.min(width, x + w + overlap);
      const y1 = Math.min(height, y + h + overlap);
      tiles.push({
        core: { x, y, width: w, height: h },
        input: { x: x0, y: y0, width: x1 - x0, height: y1 - y0 },
      });
    }
  }
  return tiles;
}

/** Copies `rect` out of an interleaved image `imageWidth` px wide with `channels` bytes a pixel. */
export function cropPixels(
  image: Uint8Array,
  imageWidth: number,
  channels: number,
  rect: Rect,
): Uint8Array {
  const out = new Uint8Array(rect.width * rect.height * channels);
  const rowBytes = rect.width * channels;
  for (let row = 0; row < rect.height; row++) {
    const from = ((rect.y + row) * imageWidth + rect.x) * channels;
    out.set(image.subarray(from, from + rowBytes), row * rowBytes);
  }
  return out;
}

/**
 * Writes the upscaled core of `tile` into `output` (the whole image at `scale`, `outputWidth` px
 * wide) and drops the upscaled context around it. `upscaled` is the model's output for
 * `tile.input`: exactly `input.width × scale` by `input.height × scale` px.
 */
export function stitchTile(
  output: Uint8Array,
  outputWidth: number,
  upscaled: Uint8Array,
  tile: Tile,
  scale: number,
  channels: number,
): void {
  const { core, input } = tile;
  const tileWidth = input.width * scale;
  if (upscaled.length !== tileWidth * input.height * scale * channels) {
    throw new RangeError(
      `stitchTile: expected ${tileWidth}×${input.height * scale}×${channels} bytes, got ${upscaled.length}`,
    );
  }
  const rowBytes = core.width * scale * channels;
  const offsetX = (core.x - input.x) * scale;
  const offsetY = (core.y - input.y) * scale;
  for (let row = 0; row < core.height * scale; row++) {
    const from = ((offsetY + row) * tileWidth + offsetX) * channels;
    const to = ((core.y * scale + row) * outputWidth + core.x * scale) * channels;
    output.set(upscaled.subarray(from, from + rowBytes), to);
  }
}
