/**
 * A job's failure crosses processes as text (BullMQ keeps a `failedReason` string): the worker
 * writes the CdnError's public fields, the waiting instance rebuilds an error with the same
 * status, code and detail, so a client sees what it would have seen in one process.
 */
import { CdnError } from '../errors.js';

/** An error a worker met making a master, as the instance that waits for it sees it. */
export class QueuedJobError extends CdnError {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  constructor(fields: { status: number; code: string; title: string; detail: string; param?: string; retryAfterSeconds?: number }) {
    super({
      detail: fields.detail,
      ...(fields.param !== undefined ? { param: fields.param } : {}),
      ...(fields.retryAfterSeconds !== undefined ? { retryAfterSeconds: fields.retryAfterSeconds } : {}),
    });
    this.status = fields.status;
    this.code = fields.code;
    this.title = fields.title;
  }
}

const PREFIX = 'clarity-cdn:';

/** The failure as a `failedReason`: the public fields of a CdnError, a generic 500 otherwise. */
export function failureReason(error: unknown): string {
  const fields =
    error instanceof CdnError
      ? { status: error.status, code: error.code, title: error.title, detail: error.detail, param: error.param, retryAfterSeconds: error.retryAfterSeconds }
      : { status: 500, code: 'INTERNAL', title: 'Internal error', detail: 'making the master failed unexpectedly; the worker log has the cause' };
  return PREFIX + JSON.stringify(fields);
}

/** The error a `failedReason` stands for (any other text: an unexpected failure, a 500). */
export function errorFromReason(reason: string | undefined): QueuedJobError {
  if (reason?.startsWith(PREFIX)) {
    try {
      return new QueuedJobError(JSON.parse(reason.slice(PREFIX.length)));
    } catch {
      // fall through
    }
  }
  return new QueuedJobError({ status: 500, code: 'INTERNAL', title: 'Internal error', detail: 'the cluster job failed; the worker log has the cause' });
}
