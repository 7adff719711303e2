/**
 * A stand-in inference worker for the pool tests: speaks the real protocol without tfjs.
 * Nearest-neighbour upscale after a short delay; width 13 crashes the thread, height 7 answers
 * `failed`.
 */
import { parentPort } from 'node:worker_threads';
import type { TileRequest, WorkerReply } from '../../../../src/engines/local/protocol.js';

const port = parentPort!;
port.on('message', (request: TileRequest) => {
  const { id, scale, width, height, rgb } = request;
  if (width === 13) {
    setImmediate(() => {
      throw new Error('fake worker crash');
    });
    return;
  }
  if (height === 7) {
    port.postMessage({ type: 'failed', id, message: 'fake tile failure' } satisfies WorkerReply);
    return;
  }
  setTimeout(() => {
    const out = new Uint8Array(width * scale * height * scale * 3);
    for (let y = 0; y < height * scale; y++) {
      for (let x = 0; x < width * scale; x++) {
        const from = (Math.floor(y / scale) * width + Math.floor(x / scale)) * 3;
        out.set(rgb.subarray(from, from + 3), (y * width * scale + x) * 3);
      }
    }
    const reply: WorkerReply = { type: 'done', id, width: width * scale, height: height * scale, rgb: out };
    port.postMessage(reply, [out.buffer]);
  }, 30);
});
