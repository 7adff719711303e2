/**
 * A real redis-server of the test's own, on a free loopback port, with nothing persisted. Used by
 * the global setup (one shared server when REDIS_URL is not given) and by tests that must kill and
 * restart Redis without disturbing anyone else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { once } from 'node:events';

export interface RedisProcess {
  url: string;
  port: number;
  /** Stops the server (SIGKILL when `crash`), resolving once the process has exited; no-op when stopped. */
  stop(options?: { crash?: boolean }): Promise<void>;
  /** Starts it again on the same port (empty: nothing is persisted); no-op when running. */
  start(): Promise<void>;
  readonly running: boolean;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    // Polling a port that is not open yet: there is no event to await for another process's bind.
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server did not open port ${port}`);
}

export async function startRedis(port?: number): Promise<RedisProcess> {
  const chosen = port ?? (await freePort());
  let child: ChildProcess | undefined;
  const isRunning = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const start = async () => {
    if (isRunning()) return;
    child = spawn(
      'redis-server',
      ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--logfile', ''],
      { stdio: 'ignore' },
    );
    await waitForPort(chosen, child);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    async stop(options = {}) {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) return;
      const exited = once(running, 'exit');
      running.kill(options.crash ? 'SIGKILL' : 'SIGTERM');
      await exited;
    },
    start,
    get running() {
      return isRunning();
    },
  };
}
