/**
 * `POST /jobs` (one job, a batch, or a `dry_run` quote), `GET /jobs/:id`, `GET /jobs/:id/result`:
 * the jobs API as JSON. Every decision is the jobs service's; this maps bodies and statuses.
 */
import express, { type Request, type Router } from 'express';
import type { Jobs } from '../jobs/index.js';
import { InvalidParamError } from '../params/index.js';
import { problemBody, RequestError } from './errors.js';
import { asImage, IMMUTABLE, matchesEtag, rawQuery } from './headers.js';
import { requireAdmin } from './sources.js';

export interface JobRoutesOptions {
  jobs: Jobs;
  adminToken?: string;
  /** With signing on, only an admin may start paid work here (see below). */
  signing: boolean;
  /** `PUBLIC_BASE_URL`: the root of the absolute URLs a job hands out; else the request's own host. */
  publicBaseUrl?: string;
  /** The JSON body's limit: a batch of `JOBS_MAX_BATCH` jobs. */
  maxBodyBytes: number;
}

const ID = /^[0-9a-f]{64}$/;

function jobId(raw: string): string {
  if (!ID.test(raw)) {
    throw new InvalidParamError({ param: 'id', allowed: 'a job id: 64 lowercase hex characters', detail: 'the path must end in a job id, as POST /jobs returned it' });
  }
  return raw;
}

export function mountJobRoutes(router: Router, options: JobRoutesOptions): void {
  const { jobs } = options;
  const base = (req: Request) => options.publicBaseUrl?.replace(/\/+$/, '') ?? `${req.protocol}://${req.get('host') ?? 'localhost'}`;

  router.post(
    '/jobs',
    (req, _res, next) => {
      // Signing exists so that only chosen payloads are paid for; an open jobs API would undo it.
      if (options.signing && !options.adminToken) {
        throw new RequestError(403, 'JOBS_NEED_ADMIN_TOKEN', 'Jobs API needs ADMIN_TOKEN', {
          detail: 'this server signs its URLs, so POST /jobs (which starts paid work) needs ADMIN_TOKEN to be set, and sent as Authorization: Bearer <token>',
        });
      }
      next();
    },
    requireAdmin(options.adminToken, 'POST /jobs'),
    express.json({ limit: options.maxBodyBytes, type: () => true }),
    async (req, res) => {
      res.setHeader('Cache-Control', 'no-store');
      const body: unknown = req.body;
      const batch = Array.isArray(body);
      const items = batch ? (body as unknown[]) : [body];
      if (rawQuery(req).get('dry_run') === 'true') {
        const quote = await jobs.quote(items);
        const out = quote.items.map((item) => ('problem' in item ? { index: item.index, status: item.status, problem: problemBody(item.problem) } : item));
        return void res.status(200).json(batch ? { items: out, total: quote.total } : { ...out[0], total: quote.total });
      }
      if (!batch) {
        const { view, status } = await jobs.submit(body, base(req));
        res.setHeader('Location', view.status_url);
        return void res.status(status).json(view);
      }
      const answered = await jobs.submitMany(items, base(req));
      res.status(200).json({
        items: answered.map((item) =>
          'problem' in item ? { index: item.index, status: item.status, problem: problemBody(item.problem) } : item,
        ),
      });
    },
  );

  router.get('/jobs/:id', (req, res) => {
    const view = jobs.get(jobId(String(req.params.id)), base(req));
    res.setHeader('Cache-Control', 'no-store');
    res.json(view);
  });

  router.get('/jobs/:id/result', async (req, res) => {
    const id = jobId(String(req.params.id));
    const etag = `"${id}"`;
    const entry = await jobs.result(id);
    asImage(res);
    // A job's master never changes: its id is the master key.
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', IMMUTABLE);
    if (matchesEtag(req.get('if-none-match'), etag)) return void res.status(304).end();
    res.setHeader('Content-Type', entry.meta.contentType);
    res.setHeader('Content-Length', String(entry.data.length));
    res.end(req.method === 'HEAD' ? undefined : entry.data);
  });
}
