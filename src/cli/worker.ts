/**
 * `clarity-cdn worker`: a cluster worker without HTTP (`CLUSTER_MODE=bullmq`), so upstream
 * capacity scales apart from HTTP capacity. It makes masters for every instance until SIGTERM
 * (its job in flight finishes or stays journaled for another worker); a second signal exits.
 */
import { loadConfig } from '../config.js';
import { UsageError } from './usage.js';

export async function worker(): Promise<void> {
  const config = loadConfig({ ...process.env, CLUSTER_WORKER: 'true' });
  if (config.CLUSTER_MODE !== 'bullmq') {
    throw new UsageError('clarity-cdn worker needs CLUSTER_MODE=bullmq (and REDIS_URL): a single instance makes its own masters');
  }
  const { buildServer } = await import('../server.js');
  const built = await buildServer(config);
  built.logger.info({ engine: built.pipeline.engine.id }, 'cluster worker started');
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    built.logger.info({ signal }, 'cluster worker stopping');
    built.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
