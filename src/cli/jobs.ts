/**
 * `clarity-cdn jobs <id>`: prints a job as `GET /jobs/:id` shows it. With `--server`, asks that
 * server; without, reads the job records in `CACHE_DIR` (what a server on that directory wrote),
 * without starting anything. Exit 0 when the job exists and has not FAILED (QUEUED, PROCESSING
 * or COMPLETED), 1 when it FAILED or does not exist, 2 for an id that is not one.
 */
import { join } from 'node:path';
import { loadConfig, type Config } from '../config.js';
import { jobView, openJobStore, type JobRecord, type JobView } from '../jobs/index.js';
import { cliLogger } from './local.js';
import { createRemote, ServerProblemError } from './remote.js';
import { CommandFailedError, UsageError } from './usage.js';

export interface JobsOptions {
  server?: string;
  token?: string;
}

const ID = /^[0-9a-f]{64}$/;
/** The API's view of a record read from disk: an unfinished job shows as QUEUED. */
function viewOf(record: JobRecord, config: Config): JobView {
  const signingKey = config.SIGNING_KEY?.[0];
  return jobView(record, { base: config.PUBLIC_BASE_URL?.replace(/\/+$/, '') ?? '', ...(signingKey ? { signingKey } : {}) });
}

export async function showJob(id: string, options: JobsOptions): Promise<void> {
  if (!ID.test(id)) throw new UsageError(`expected a job id (64 lowercase hex characters, as POST /jobs and clarity-cdn warm print it), got ${JSON.stringify(id)}`);
  const config = loadConfig(process.env);
  let view: JobView;
  if (options.server) {
    const token = options.token ?? config.ADMIN_TOKEN;
    const remote = createRemote({ server: options.server, ...(token ? { token } : {}) });
    try {
      view = await remote.getJob(id);
    } catch (error) {
      if (error instanceof ServerProblemError) throw new CommandFailedError(error.message);
      throw error;
    } finally {
      await remote.close();
    }
  } else {
    const dir = join(config.CACHE_DIR, 'jobs');
    const store = await openJobStore({ dir, retentionMs: config.JOBS_RETENTION_SECONDS * 1000, logger: cliLogger(config) });
    const record = store.get(id);
    if (!record) throw new CommandFailedError(`no job ${id} in ${dir} (never submitted on this CACHE_DIR, or dropped JOBS_RETENTION_SECONDS after it finished)`);
    view = viewOf(record, config);
  }
  process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
  if (view.status === 'FAILED') process.exitCode = 1;
}
