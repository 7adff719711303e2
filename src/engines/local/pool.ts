/**
 * A fixed pool of inference worker threads, each with its own tfjs backend and models, each doing
 * one tile at a time: the main thread only crops, stitches and encodes, so it keeps serving cache
 * hits while a model runs. Tiles wait in one FIFO queue and go to whichever worker is idle.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../logger.js';
import { LocalEngineError } from './errors.js';
import type { ModelScale } from './plan.js';
import type { ModelName, TileRequest, TileResult, WorkerReply, WorkerSetup } from './protocol.js';

export interface WorkerPoolOptions {
  model: ModelName;
  /** Worker threads; each holds its own backend and models (~200 MB RSS for slim, ~400 for thick). */
  size: number;
  logger?: Logger;
  /**
   * The worker script. Default: `worker.ts` beside this module under the TypeScript sources (tests,
   * `tsx`), `worker.js` in the compiled `dist/`. Tests pass a fake one.
   */
  script?: URL;
  /**
   * Crashes in a row (no tile finished in between) after which queued tiles are rejected instead of
   * waiting for yet another respawn: a worker that cannot start must not hang requests. Default 3.
   */
  maxConsecutiveCrashes?: number;
}

export interface TileJob {
  scale: ModelScale;
  width: number;
  height: number;
  /** Interleaved RGB; its buffer is transferred to the worker (detached here). */
  rgb: Uint8Array;
}

interface Pending extends TileJob {
  id: number;
  resolve(result: TileResult): void;
  reject(error: unknown): void;
  settled: boolean;
  cleanup(): void;
}

interface Slot {
  worker: Worker;
  job?: Pending;
  lastError?: Error;
}

/** The worker script next to this module, in the form this module itself runs as. */
function defaultScript(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
}

let tsxApi: string | undefined;

/**
 * Code for an eval worker that registers tsx's ESM hooks inside the thread and then imports the
 * TypeScript worker. `execArgv: ['--import', 'tsx']` is not enough on Node 20: the worker's entry
 * is loaded without the hooks (nodejs/node#47747, privatenumber/tsx#354), failing with
 * ERR_UNKNOWN_FILE_EXTENSION. Only sources under test or `tsx` take this path; `dist/` runs plain
 * `worker.js`.
 */
function tsxBootstrap(script: URL): string {
  if (tsxApi === undefined) {
    const require = createRequire(import.meta.url);
    const manifestPath = require.resolve('tsx/package.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      exports: { './esm/api': { import: { default: string } } };
    };
    tsxApi = pathToFileURL(join(dirname(manifestPath), manifest.exports['./esm/api'].import.default)).href;
  }
  return `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(script.href)}); });`;
}

export class WorkerPool {
  readonly size: number;
  readonly #model: ModelName;
  readonly #script: URL;
  readonly #logger: Logger | undefined;
  readonly #maxCrashes: number;
  #slots: Slot[] = [];
  #queue: Pending[] = [];
  #nextId = 1;
  #crashesInARow = 0;
  #closed = false;

  constructor(options: WorkerPoolOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new TypeError(`WorkerPool: expected size to be an integer ≥ 1, got ${options.size}`);
    }
    this.size = options.size;
    this.#model = options.model;
    this.#script = options.script ?? defaultScript();
    this.#logger = options.logger;
    this.#maxCrashes = options.maxConsecutiveCrashes ?? 3;
  }

  /** Tiles being upscaled right now. */
  get activeCount(): number {
    return this.#slots.filter((s) => s.job).length;
  }

  /** Tiles waiting for an idle worker. */
  get pendingCount(): number {
    return this.#queue.length;
  }

  /**
   * Upscales one tile on the next idle worker. `signal` withdraws it: a queued tile never reaches a
   * worker; a running one cannot be interrupted mid-inference, so the promise rejects at once and
   * the worker's answer is dropped.
   */
  run(job: TileJob, signal?: AbortSignal): Promise<TileResult> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<TileResult>((resolve, reject) => {
      const onAbort = (): void => {
        const queued = this.#queue.indexOf(pending);
        if (queued >= 0) this.#queue.splice(queued, 1);
        settle(pending, undefined, signal?.reason);
      };
      const pending: Pending = {
        ...job,
        // A view into a larger buffer would transfer (and detach) the whole of it.
        rgb: job.rgb.byteOffset === 0 && job.rgb.byteLength === job.rgb.buffer.byteLength ? job.rgb : job.rgb.slice(),
        id: this.#nextId++,
        resolve,
        reject,
        settled: false,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(pending);
      this.#fill();
      this.#dispatch();
    });
  }

  /** Rejects what is queued or running and terminates every worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const slots = this.#slots;
    this.#slots = [];
    for (const job of [...this.#queue, ...slots.flatMap((s) => (s.job ? [s.job] : []))]) {
      settle(job, undefined, closedError());
    }
    this.#queue = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /** Spawns workers up to `size`: lazily, so an engine that is never used costs no threads. */
  #fill(): void {
    while (this.#slots.length < this.size) this.#slots.push(this.#spawn());
  }

  #spawn(): Slot {
    const script = this.#script;
    const workerData: WorkerSetup = { model: this.#model };
    // Workers inherit the parent's node flags, which is wanted (source maps, instrumentation)
    // except `--input-type` (as in `node --input-type=module -e …`): it makes loading the worker
    // file fail with ERR_INPUT_TYPE_NOT_ALLOWED.
    const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--input-type'));
    const worker = script.pathname.endsWith('.ts')
      ? new Worker(tsxBootstrap(script), { eval: true, workerData, execArgv })
      : new Worker(script, { workerData, execArgv });
    const slot: Slot = { worker };
    worker.on('message', (reply: WorkerReply) => this.#onReply(slot, reply));
    worker.on('error', (error) => {
      slot.lastError = error;
    });
    worker.on('exit', (code) => this.#onExit(slot, code));
    // An idle worker must not keep the process alive; a busy one must (a CLI awaiting a result has
    // nothing else holding the event loop). After the listeners: adding a 'message' listener refs
    // the worker's port again.
    worker.unref();
    this.#logger?.debug({ model: this.#model, threadId: worker.threadId }, 'local engine worker started');
    return slot;
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.job) continue;
      const job = this.#queue.shift();
      if (!job) return;
      slot.job = job;
      slot.worker.ref();
      const request: TileRequest = {
        type: 'tile',
        id: job.id,
        scale: job.scale,
        width: job.width,
        height: job.height,
        rgb: job.rgb,
      };
      slot.worker.postMessage(request, [job.rgb.buffer as ArrayBuffer]);
    }
  }

  #onReply(slot: Slot, reply: WorkerReply): void {
    const job = slot.job;
    if (!job || job.id !== reply.id) return;
    slot.job = undefined;
    slot.worker.unref();
    if (reply.type === 'done') {
      this.#crashesInARow = 0;
      settle(job, { width: reply.width, height: reply.height, rgb: reply.rgb });
    } else {
      this.#logger?.error({ model: this.#model, err: new Error(reply.message) }, 'local engine tile failed');
      settle(
        job,
        undefined,
        new LocalEngineError({ detail: 'The local upscaler failed on this image.', cause: new Error(reply.message) }),
      );
    }
    this.#dispatch();
  }

  #onExit(slot: Slot, code: number): void {
    const index = this.#slots.indexOf(slot);
    if (this.#closed || index < 0) return;
    this.#slots.splice(index, 1);
    this.#crashesInARow++;
    const cause = slot.lastError ?? new Error(`inference worker exited with code ${code}`);
    this.#logger?.error(
      { model: this.#model, threadId: slot.worker.threadId, exitCode: code, err: cause },
      'local engine worker crashed',
    );
    if (slot.job) {
      settle(
        slot.job,
        undefined,
        new LocalEngineError({ detail: 'An inference worker crashed while upscaling this image.', cause }),
      );
    }
    if (this.#crashesInARow >= this.#maxCrashes) {
      // Respawning straight away would loop; the next `run` tries again with fresh workers.
      for (const job of this.#queue) {
        settle(job, undefined, new LocalEngineError({ detail: 'The local upscaler cannot start.', cause }));
      }
      this.#queue = [];
      return;
    }
    this.#fill();
    this.#dispatch();
  }
}

function settle(job: Pending, result: TileResult | undefined, error?: unknown): void {
  if (job.settled) return;
  job.settled = true;
  job.cleanup();
  if (result) job.resolve(result);
  else job.reject(error);
}

function closedError(): LocalEngineError {
  return new LocalEngineError({ detail: 'The local upscaler is shutting down.' });
}
