/**
 * The consumer side of cluster mode: a BullMQ worker that makes masters. It runs inside each
 * `serve` by default, or alone (`clarity-cdn worker`), so upstream capacity scales apart from HTTP.
 *
 * One budget for the cluster: the queue's global concurrency is `UPSTREAM_CONCURRENCY`, its rate
 * limit `UPSTREAM_RPM` (job starts), priorities are the lanes, a 429 pauses the queue for every
 * worker, and the daily count lives in Redis. A worker killed mid-job leaves a stalled job that
 * another worker picks up: the engine finds the upstream request id in the shared journal and
 * resumes polling it instead of submitting again.
 */
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Logger } from '../logger.js';
import { bullConnection, QUEUE_NAME } from './bullmq.js';
import { failureReason } from './errors.js';
import type { MasterJob } from './types.js';

export interface BullWorkerOptions {
  redisUrl: string;
  prefix: string;
  /** `UPSTREAM_CONCURRENCY`: for the whole cluster (global), and for this worker. */
  concurrency: number;
  /** `UPSTREAM_RPM`: job starts per minute, for the whole cluster. */
  perMinute: number;
  /** Makes and stores one master (the worker's own pipeline). */
  make: (job: MasterJob) => Promise<void>;
  logger: Logger;
}

export interface BullWorker {
  /** Holds back every worker of the cluster for `ms` (an upstream 429). */
  pause(ms: number): void;
  close(): Promise<void>;
}

export function createBullWorker(options: BullWorkerOptions): BullWorker {
  const { logger } = options;
  const queueConnection = bullConnection(options.redisUrl);
  const workerConnection = bullConnection(options.redisUrl);
  const queue = new Queue(QUEUE_NAME, { connection: queueConnection, prefix: options.prefix });
  queue.on('error', (error: Error) => logger.warn({ err: error }, 'cluster queue error'));
  void queue.setGlobalConcurrency(options.concurrency).catch((error: unknown) => logger.warn({ err: error }, 'could not set the cluster concurrency'));

  const worker = new Worker<MasterJob>(
    QUEUE_NAME,
    async (job) => {
      try {
        await options.make(job.data);
      } catch (error) {
        // The engine has its own retries (and never resubmits a billed job): BullMQ must not add
        // others. The reason carries the error for the instances waiting on this job.
        throw new UnrecoverableError(failureReason(error));
      }
    },
    {
      connection: workerConnection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      limiter: { max: options.perMinute, duration: 60_000 },
      // A killed worker's job comes back after its lock lapses; resuming is free (journaled).
      lockDuration: 30_000,
      stalledInterval: 15_000,
      maxStalledCount: 20,
    },
  );
  worker.on('error', (error: Error) => logger.warn({ err: error }, 'cluster worker error'));
  worker.on('failed', (job, error) => logger.info({ masterKey: job?.id, reason: error.message.slice(0, 200) }, 'cluster job failed'));

  return {
    pause(ms) {
      void queue.rateLimit(ms).catch((error: unknown) => logger.warn({ err: error }, 'could not pause the cluster queue'));
    },
    async close() {
      await worker.close();
      await queue.close();
      workerConnection.disconnect();
      queueConnection.disconnect();
    },
  };
}
