import { CdnError } from '../errors.js';

/** No job with that id (never submitted here, or past `JOBS_RETENTION_SECONDS`). */
export class JobNotFoundError extends CdnError {
  readonly status = 404;
  readonly code = 'JOB_NOT_FOUND';
  readonly title = 'Job not found';
}

/** The job's result was asked for before the job completed. */
export class JobNotReadyError extends CdnError {
  readonly status = 409;
  readonly code = 'JOB_NOT_READY';
  readonly title = 'Job not completed yet';
}
