/** `clarity-cdn serve`: the HTTP server, until SIGTERM/SIGINT (graceful), or a second signal (at once). */
import { loadConfig } from '../config.js';
import { buildServer } from '../server.js';

export async function serve(): Promise<void> {
  const config = loadConfig(process.env);
  const built = await buildServer(config);
  await built.listen();
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      built.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    built.logger.info({ signal, graceMs: config.SHUTDOWN_GRACE_MS }, 'shutting down: finishing requests in flight');
    built.close().then(
      () => {
        built.logger.info('shut down');
        process.exit(0);
      },
      (error: unknown) => {
        built.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
