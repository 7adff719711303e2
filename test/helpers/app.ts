/**
 * A real server (real config parsing, real engine, real sharp, real disk) on a temp CACHE_DIR, for
 * supertest. Logs go to a string so tests can assert what operators would see (and what they must
 * never see: the API key).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { buildServer, type BuildOptions, type BuiltServer } from '../../src/server.js';

export interface TestServer extends BuiltServer {
  cacheDir: string;
  /** Every log line written so far. */
  logs(): string;
  /** Resolves when a log line containing `text` is written (now or later). */
  waitForLog(text: string): Promise<void>;
  /** Engine calls made so far, all engines together. */
  engineCalls(): number;
}

export async function tempDir(prefix = 'clarity-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Small, fast defaults: one worker, small tiles, little memory; override per test. */
export async function startTestServer(
  env: Record<string, string> = {},
  cacheDir?: string,
  options: Omit<BuildOptions, 'logger'> = {},
): Promise<TestServer> {
  const dir = cacheDir ?? (await tempDir());
  let captured = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      captured += String(chunk);
      for (const w of waiters.splice(0)) {
        if (captured.includes(w.text)) w.resolve();
        else waiters.push(w);
      }
      done();
    },
  });
  const config = loadConfig({
    CACHE_DIR: dir,
    UPSCALE_ENGINE: 'local',
    LOCAL_WORKERS: '1',
    LOCAL_TILE_SIZE: '64',
    LOCAL_TILE_OVERLAP: '8',
    LOG_LEVEL: 'info',
    ...env,
  });
  const built = await buildServer(config, { ...options, logger: createLogger(config.LOG_LEVEL, sink) });
  return {
    ...built,
    cacheDir: dir,
    logs: () => captured,
    waitForLog: (text) =>
      new Promise<void>((resolve) => {
        if (captured.includes(text)) resolve();
        else waiters.push({ text, resolve });
      }),
    engineCalls: () => Object.values(built.pipeline.stats().engineCalls).reduce((a, b) => a + b, 0),
  };
}

export async function stopTestServer(server: TestServer, options: { keepDir?: boolean } = {}): Promise<void> {
  await server.close();
  // Retried: work a closing server let go of may still land a file as the tree is removed.
  if (!options.keepDir) await rm(server.cacheDir, { recursive: true, force: true, maxRetries: 5 });
}
