import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../../src/logger.js';
import { LocalEngineError } from '../../../../src/engines/local/errors.js';
import { WorkerPool, type TileJob } from '../../../../src/engines/local/pool.js';

const script = new URL('./fake-worker.ts', import.meta.url);
const pools: WorkerPool[] = [];
function makePool(
  size: number,
  options: { script?: URL; maxConsecutiveCrashes?: number; logger?: ReturnType<typeof createLogger> } = {},
): WorkerPool {
  const pool = new WorkerPool({ model: 'esrgan-slim', size, script, ...options });
  pools.push(pool);
  return pool;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

const tile = (width: number, height: number, value = 1): TileJob => ({
  scale: 2,
  width,
  height,
  rgb: new Uint8Array(width * height * 3).fill(value),
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('WorkerPool', () => {
  it('runs tiles on every worker in parallel and hands back their output', async () => {
    const pool = makePool(2);
    let busiest = 0;
    const watch = setInterval(() => (busiest = Math.max(busiest, pool.activeCount)), 5);
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((v) => pool.run(tile(3, 2, v))));
    clearInterval(watch);
    expect(results.map((r) => [r.width, r.height, r.rgb.length, r.rgb[0]])).toEqual(
      [1, 2, 3, 4, 5, 6].map((v) => [6, 4, 72, v]),
    );
    expect(busiest).toBe(2);
    expect(pool.activeCount + pool.pendingCount).toBe(0);
  });

  it('does not keep the process alive while idle', async () => {
    const ports = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    const before = ports();
    const pool = makePool(2);
    const running = pool.run(tile(2, 2));
    expect(ports()).toBe(before + 1); // busy: holds the process open until the tile is back
    await running;
    expect(ports()).toBe(before);
  });

  it('copies a view into a larger buffer rather than detaching the whole buffer', async () => {
    const pool = makePool(1);
    const whole = new Uint8Array(100).fill(9);
    const result = await pool.run({ scale: 2, width: 1, height: 1, rgb: whole.subarray(10, 13) });
    expect([...result.rgb.subarray(0, 3)]).toEqual([9, 9, 9]);
    expect(whole.length).toBe(100);
  });

  it('rejects the tile of a crashed worker with a LocalEngineError, respawns, and goes on', async () => {
    const pool = makePool(1);
    const crashed = pool.run(tile(13, 2));
    const queued = pool.run(tile(3, 2, 5));
    const error = await rejection(crashed);
    expect(error).toBeInstanceOf(LocalEngineError);
    expect(error).toMatchObject({ status: 500, code: 'LOCAL_ENGINE_FAILED' });
    expect((error as LocalEngineError).detail).toMatch(/crashed/);
    expect(String((error as Error).cause)).toMatch(/fake worker crash/);
    expect((await queued).rgb[0]).toBe(5);
    expect((await pool.run(tile(2, 2, 6))).rgb[0]).toBe(6);
  });

  it('logs a crash at error level with its cause, for the operator', async () => {
    const lines: Array<{ level: number; msg: string; err?: { message: string }; exitCode?: number }> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const pool = makePool(1, { logger: createLogger('debug', destination) });
    await rejection(pool.run(tile(13, 2)));
    await pool.run(tile(2, 2)); // the respawned worker answers, so the log line has been written
    const crash = lines.find((l) => l.msg === 'local engine worker crashed');
    expect(crash).toMatchObject({ level: 50, err: { message: 'fake worker crash' } });
  });

  it('rejects a tile the worker failed, keeping the message as the cause only', async () => {
    const pool = makePool(1);
    const error = await rejection(pool.run(tile(3, 7)));
    expect(error).toBeInstanceOf(LocalEngineError);
    expect((error as LocalEngineError).detail).not.toMatch(/fake/);
    expect(String((error as Error).cause)).toMatch(/fake tile failure/);
    expect((await pool.run(tile(3, 2, 4))).rgb[0]).toBe(4);
  });

  it('withdraws queued tiles on abort: they reject with the reason and never run', async () => {
    const pool = makePool(1);
    const controller = new AbortController();
    const running = pool.run(tile(3, 2, 1), controller.signal);
    const queued = pool.run(tile(3, 2, 2), controller.signal);
    const other = pool.run(tile(3, 2, 3));
    expect(pool.pendingCount).toBe(2);
    controller.abort(new Error('job cancelled'));
    expect(pool.pendingCount).toBe(1);
    await expect(running).rejects.toThrow('job cancelled');
    await expect(queued).rejects.toThrow('job cancelled');
    expect((await other).rgb[0]).toBe(3);
    await expect(pool.run(tile(1, 1), AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });

  it('gives up on a worker that cannot start instead of respawning forever', async () => {
    const pool = makePool(1, { script: new URL('./no-such-worker.js', import.meta.url), maxConsecutiveCrashes: 2 });
    const errors = await Promise.all([1, 2, 3].map(() => rejection(pool.run(tile(2, 2)))));
    expect(errors.every((e) => e instanceof LocalEngineError)).toBe(true);
    // Two crashes each took the tile they had; the third tile was still queued when the pool gave up.
    expect(errors.map((e) => (e as LocalEngineError).detail)).toEqual([
      expect.stringMatching(/crashed/),
      expect.stringMatching(/crashed/),
      expect.stringMatching(/cannot start/),
    ]);
  });

  it('close() rejects what is pending and refuses new tiles', async () => {
    const pool = makePool(1);
    const running = rejection(pool.run(tile(3, 2)));
    const queued = rejection(pool.run(tile(3, 2)));
    await pool.close();
    expect(await running).toBeInstanceOf(LocalEngineError);
    expect(await queued).toBeInstanceOf(LocalEngineError);
    await expect(pool.run(tile(3, 2))).rejects.toThrow(/shutting down/);
  });
});
