/** The job model: ids from master keys, status, batches, quotes, webhooks. */
export { createJobs, type Jobs, type JobsOptions, type BatchItem, type SubmitOptions } from './service.js';
export { openJobStore, type JobStore } from './store.js';
export { jobView, type ViewContext } from './view.js';
export { JobNotFoundError, JobNotReadyError } from './errors.js';
export type { JobRecord, JobView, JobQuote, JobStatus } from './types.js';
export { createWebhookSender, verifyWebhook, signWebhook, WEBHOOK_SIGNATURE_HEADER, type WebhookSender } from './webhook.js';
