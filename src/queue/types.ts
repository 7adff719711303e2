import type { ClarityParams } from '../params/types.js';
import type { Lane } from '../pipeline/limiter.js';

/** What a worker needs to make a master: its key and the request (the source by hash). */
export interface MasterJob {
  masterKey: string;
  source: string;
  params: ClarityParams;
  lane: Lane;
}

/**
 * Who makes a master when instances share one upstream budget (`CLUSTER_MODE=bullmq`): the
 * pipeline hands the job to the queue and waits; some worker, on any instance, makes and stores it.
 */
export interface MasterQueue {
  /** Resolves once a worker has stored the master (or it already was); rejects with the job's error. */
  make(job: MasterJob): Promise<void>;
  /** What the cluster knows of a master being made, from the queue's events. */
  state(masterKey: string): { state: 'queued' | 'running' } | undefined;
  stats(): Promise<QueueStats>;
  close(): Promise<void>;
}

export interface QueueStats {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  /** Workers that have been seen connected to the queue. */
  workers: number;
}

/** BullMQ priorities: lower runs first; visitors before jobs before warming. */
export const LANE_PRIORITY: Record<Lane, number> = { visitor: 1, jobs: 2, warm: 3 };
