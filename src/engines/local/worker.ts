/**
 * An inference worker thread: its own tfjs wasm backend and models, one tile at a time. A thrown
 * tile error is answered as `failed`; anything that kills the thread is seen by the pool as a
 * crash, which rejects the tile it had and respawns the worker.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createInference } from './inference.js';
import type { TileRequest, WorkerReply, WorkerSetup } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engines/local/worker runs as a worker thread only');
const { model } = workerData as WorkerSetup;

// Started at once so a worker is warm by the time the first tile arrives; a backend that cannot
// start fails every tile with its message rather than crashing in a respawn loop.
const inference = createInference(model);
inference.catch(() => {});

port.on('message', (request: TileRequest) => {
  void (async () => {
    let reply: WorkerReply;
    try {
      const out = await (await inference).upscale(request.scale, request.width, request.height, request.rgb);
      reply = { type: 'done', id: request.id, ...out };
      port.postMessage(reply, [out.rgb.buffer as ArrayBuffer]);
    } catch (error) {
      reply = { type: 'failed', id: request.id, message: error instanceof Error ? error.message : String(error) };
      port.postMessage(reply);
    }
  })();
});
