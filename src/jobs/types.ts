/**
 * The job model shared by the jobs API (and, later, the Segmind-compatible gateway): one job per
 * master key, so the same work submitted twice, or by two pipelines, is one job and one upstream
 * call. Statuses are the upstream's own words.
 */
import type { Lane } from '../pipeline/index.js';
import type { WebhookDelivery } from './webhook.js';

export type JobStatus = 'QUEUED' | 'PROCESSING' | 'COMPLETED' | 'FAILED';

/** One requested output of a job: the output fields of `/upscale` (`format`, `w`, `h`, `fit`, `quality`). */
export type VariantFields = Record<string, string | number | boolean>;

/** What is kept of a job, on disk, across restarts. */
export interface JobRecord {
  /** The master key: the job's identity. */
  id: string;
  engine: string;
  source: string;
  /** The clarity fields as the client gave them (names as given), and the preset, if any. */
  params: Record<string, string | number | boolean>;
  preset?: string;
  variants: VariantFields[];
  webhooks: WebhookDelivery[];
  lane: Lane;
  /** `ACTIVE` until the master and the variants are made; then final. */
  state: 'ACTIVE' | 'COMPLETED' | 'FAILED';
  error?: { code: string; status: number; detail: string };
  /** What making the master took: measured when an engine ran for this job, 0 when it was cached. */
  metrics?: { inference_time: number; cost: number | null; cached: boolean };
  createdAt: number;
  updatedAt: number;
  completedAt?: number;
}

/** A job as the API shows it. URLs are paths; the HTTP layer makes them absolute. */
export interface JobView {
  id: string;
  status: JobStatus;
  error: string | null;
  code?: string;
  /** While QUEUED: the place in line among waiting masters, and a guess of the wait. */
  queue?: { position: number; lane: Lane; estimated_wait_seconds: number };
  engine: string;
  source: string;
  params: Record<string, string | number | boolean>;
  preset?: string;
  status_url: string;
  result_url: string;
  variants: (VariantFields & { url: string })[];
  webhook: { url: string; status: WebhookDelivery['status']; attempts: number }[];
  created_at: string;
  updated_at: string;
  completed_at?: string;
}

/** A `dry_run` answer for one item: what submitting it would cost, with no work done. */
export interface JobQuote {
  id: string;
  cached: boolean;
  engine: string;
  /** Upstream submissions it would make: 0 when cached, in flight, remembered as rejected, a duplicate in the batch, or for a free engine. */
  upstream_calls: number;
  /** At `UPSTREAM_PRICE_USD`; null when no price is configured. */
  cost_usd: number | null;
  duplicate_of?: number;
  note?: string;
}
