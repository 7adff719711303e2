/**
 * Kill/restart control over a private redis-server that remembers whether it is running.
 *
 * Needed because `RedisProcess.stop()` (test/helpers/redis.ts) checks only `exitCode`, which stays
 * null for a process killed by a signal: calling stop() again after stop({ crash: true }) waits for
 * an exit that already happened, forever. Until that helper also checks `signalCode`, these tests
 * go through this wrapper.
 */
import { startRedis, type RedisProcess } from '../../helpers/redis.js';

export interface ControlledRedis {
  url: string;
  port: number;
  /** SIGKILL: no goodbye to clients, as in a crash or an OOM kill. */
  crash(): Promise<void>;
  start(): Promise<void>;
  /** Starts it again if a test left it down. */
  ensureRunning(): Promise<void>;
  /** Stops it for good (end of the file). */
  shutdown(): Promise<void>;
}

export async function startControlledRedis(port?: number): Promise<ControlledRedis> {
  const server: RedisProcess = await startRedis(port);
  let running = true;
  const start = async () => {
    await server.start();
    running = true;
  };
  return {
    url: server.url,
    port: server.port,
    async crash() {
      if (!running) return;
      await server.stop({ crash: true });
      running = false;
    },
    start,
    async ensureRunning() {
      if (!running) await start();
    },
    async shutdown() {
      if (running) await server.stop();
      running = false;
    },
  };
}
