/**
 * A job record as the API shows it: a pure function of the record, where its URLs point, the
 * signing key its variant URLs are signed with, and its live status (which only the process
 * running the job knows; a record read from disk alone shows an unfinished job as QUEUED).
 */
import { buildUpscaleUrl } from '../client/index.js';
import type { JobRecord, JobView } from './types.js';

const iso = (ms: number) => new Date(ms).toISOString();

export interface ViewContext {
  /** The absolute root of the URLs (PUBLIC_BASE_URL, or the request's host); '' leaves paths. */
  base: string;
  signingKey?: string;
  live?: Pick<JobView, 'status' | 'queue'>;
}

export function jobView(record: JobRecord, context: ViewContext): JobView {
  const { base, signingKey } = context;
  const { status, queue } = context.live ?? { status: record.state === 'ACTIVE' ? 'QUEUED' : record.state };
  const variantUrl = (fields: JobRecord['variants'][number]) =>
    base
      ? buildUpscaleUrl({
          baseUrl: base,
          hash: record.source,
          params: { ...record.params, ...fields },
          ...(record.preset !== undefined ? { preset: record.preset } : {}),
          ...(signingKey ? { signingKey } : {}),
        })
      : '';
  return {
    id: record.id,
    status,
    error: record.error?.detail ?? null,
    ...(record.error ? { code: record.error.code } : {}),
    ...(queue ? { queue } : {}),
    engine: record.engine,
    source: record.source,
    params: record.params,
    ...(record.preset !== undefined ? { preset: record.preset } : {}),
    status_url: `${base}/jobs/${record.id}`,
    result_url: `${base}/jobs/${record.id}/result`,
    variants: record.variants.map((fields) => ({ ...fields, url: variantUrl(fields) })),
    webhook: record.webhooks.map((w) => ({ url: w.url, status: w.status, attempts: w.attempts })),
    created_at: iso(record.createdAt),
    updated_at: iso(record.updatedAt),
    ...(record.completedAt !== undefined ? { completed_at: iso(record.completedAt) } : {}),
  };
}
