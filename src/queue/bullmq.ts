/**
 * The producer side of cluster mode: a master miss becomes a BullMQ job whose id is the master
 * key, so identical misses on any instance join one job (BullMQ ignores a second add of an id it
 * holds), and the instance waits for it through QueueEvents. Jobs are removed when they finish:
 * the master is in the shared tiers (or the failure is remembered there), and a finished job
 * kept under its id would swallow a later, legitimate, re-make.
 */
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { errorFromReason } from './errors.js';
import { LANE_PRIORITY, type MasterJob, type MasterQueue, type QueueStats } from './types.js';

export const QUEUE_NAME = 'masters';

/** BullMQ needs `maxRetriesPerRequest: null` on its connections (blocking commands). */
export function bullConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false });
}

export interface BullQueueOptions {
  redisUrl: string;
  /** Key prefix of the queue in Redis (`REDIS_PREFIX`). */
  prefix: string;
  /** Whether the master is stored already (a job that finished before we listened). */
  isStored: (masterKey: string) => Promise<boolean>;
  logger: Logger;
  /** How often a waiter checks its job directly, in case an event was missed. Default 5000 ms. */
  recheckMs?: number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

export function createBullQueue(options: BullQueueOptions): MasterQueue {
  const { logger } = options;
  const connection = bullConnection(options.redisUrl);
  const eventsConnection = bullConnection(options.redisUrl);
  const queue = new Queue<MasterJob>(QUEUE_NAME, { connection, prefix: options.prefix });
  const events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection, prefix: options.prefix });
  const states = new Map<string, 'queued' | 'running'>();
  const waiters = new Map<string, Waiter[]>();
  const recheckMs = options.recheckMs ?? 5000;
  // BullMQ's own clients report errors as events: logged, never a crash (Redis down is a miss).
  queue.on('error', (error: Error) => logger.warn({ err: error }, 'cluster queue error'));
  events.on('error', (error: Error) => logger.warn({ err: error }, 'cluster queue events error'));

  const settle = (jobId: string, outcome: { error?: Error }) => {
    states.delete(jobId);
    for (const waiter of waiters.get(jobId)?.splice(0) ?? []) {
      if (outcome.error) waiter.reject(outcome.error);
      else waiter.resolve();
    }
    waiters.delete(jobId);
  };
  events.on('waiting', ({ jobId }) => states.set(jobId, 'queued'));
  events.on('active', ({ jobId }) => states.set(jobId, 'running'));
  events.on('completed', ({ jobId }) => settle(jobId, {}));
  events.on('failed', ({ jobId, failedReason }) => settle(jobId, { error: errorFromReason(failedReason) }));

  /** A waiter's fallback, should an event be missed: the job's own state, or the stored master. */
  async function recheck(masterKey: string): Promise<void> {
    const job = await queue.getJob(masterKey);
    if (job) return;
    if (await options.isStored(masterKey)) settle(masterKey, {});
    else if (waiters.has(masterKey)) settle(masterKey, { error: errorFromReason(undefined) });
  }

  return {
    async make(job) {
      await events.waitUntilReady();
      const done = new Promise<void>((resolve, reject) => {
        const list = waiters.get(job.masterKey) ?? [];
        list.push({ resolve, reject });
        waiters.set(job.masterKey, list);
      });
      const priority = LANE_PRIORITY[job.lane];
      const added = await queue.add('master', job, {
        jobId: job.masterKey,
        priority,
        attempts: 1,
        removeOnComplete: true,
        removeOnFail: true,
      });
      // The id was taken (another instance's miss): lift it to our lane if it waits in a lower one.
      if (added.opts.priority !== undefined && added.opts.priority > priority) {
        await added.changePriority({ priority }).catch(() => undefined);
      }
      const timer = setInterval(() => void recheck(job.masterKey).catch(() => undefined), recheckMs);
      timer.unref();
      try {
        await done;
      } finally {
        clearInterval(timer);
      }
    },
    state: (masterKey) => {
      const state = states.get(masterKey);
      return state ? { state } : undefined;
    },
    async stats(): Promise<QueueStats> {
      const counts = await queue.getJobCounts('waiting', 'prioritized', 'active', 'completed', 'failed');
      const workers = await queue.getWorkersCount().catch(() => 0);
      return {
        waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
        active: counts.active ?? 0,
        completed: counts.completed ?? 0,
        failed: counts.failed ?? 0,
        workers,
      };
    },
    async close() {
      for (const key of [...waiters.keys()]) settle(key, { error: errorFromReason(undefined) });
      await events.close();
      await queue.close();
      eventsConnection.disconnect();
      connection.disconnect();
    },
  };
}
