/**
 * A faithful fake of the Segmind Clarity Upscaler API (`../shared/UPSTREAM.md`): a real HTTP server
 * on loopback, so the engine's undici client, its timeouts and its connection handling run for real.
 *
 * - `x-api-key` auth (401 when missing or wrong);
 * - v2: submit → 200 with ABSOLUTE `poll_url`/`status_url`/`response_url`; status QUEUED →
 *   PROCESSING → COMPLETED as the job is polled; `response_url` with `metrics` and an `output` URL
 *   served by the fake itself (no auth, as the real image host); 404 for unknown or expired ids;
 *   FAILED as HTTP 422 (or 200) with `{"status":"FAILED","error":…}`;
 * - v1: the raw image, with accounting headers;
 * - the output is REAL: the input (base64 or a URL the fake fetches) is decoded with sharp and
 *   resized by `scale_factor` (the input size when a `mask` is given), so tests assert dimensions;
 * - parameters are type- and range-checked against UPSTREAM.md (not against our own table, which
 *   would hide a bug in it): a wrong type is a 400 naming the field, as the upstream does.
 *
 * Fault switches answer the next N calls of a kind with 429/5xx/4xx/HTML/plain text, or break the
 * connection; `holdJobs()` keeps jobs PROCESSING (and v1 answers pending) until `releaseJobs()`, and
 * `waitFor…` resolve on events, so concurrency tests never sleep.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import sharp from 'sharp';
import { request } from 'undici';

export const FAKE_SEGMIND_KEY = 'SG_0123456789abcdef';

/** Where a fault applies: v1 and v2 submits, v2 status polls, v2 result reads, output downloads. */
export type FaultTarget = 'submit' | 'poll' | 'result' | 'download';

export type Fault =
  /** Answers with this status, body and headers instead of the real answer. */
  | { kind: 'answer'; status: number; body?: string | Buffer; contentType?: string; headers?: Record<string, string> }
  /**
   * Reads the whole request, then destroys the connection without answering. `billed` (submits
   * only, default true): the job is created first, the worst case for a client: paid, answer lost.
   */
  | { kind: 'destroy'; billed?: boolean }
  /** Never answers (until the fake closes): for timeouts. */
  | { kind: 'hang' };

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Fault => ({
  kind: 'answer',
  status,
  body: JSON.stringify(body),
  contentType: 'application/json',
  headers,
});
const text = (status: number, body: string, contentType = 'text/plain; charset=utf-8'): Fault => ({
  kind: 'answer',
  status,
  body,
  contentType,
});

/** The answers the upstream documents, ready to inject. */
export const FAULTS = {
  /** 429; `retryAfter` as the `Retry-After` value (seconds or HTTP date), `resetAt` as `x-rate-limit-reset-at-utc`. */
  rateLimited: (options: { retryAfter?: string; resetAt?: string } = {}): Fault =>
    json(429, { error: 'Rate limit exceeded' }, {
      ...(options.retryAfter !== undefined ? { 'retry-after': options.retryAfter } : {}),
      ...(options.resetAt !== undefined ? { 'x-rate-limit-reset-at-utc': options.resetAt } : {}),
    }),
  serverError: (status: 500 | 502 | 503 | 504 = 500): Fault => json(status, { error: 'Internal Server Error' }),
  plainTextServerError: (status = 500): Fault => text(status, 'Internal Server Error'),
  htmlBadGateway: (status = 502): Fault =>
    text(status, '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>', 'text/html'),
  badRequest: (error = 'Invalid value for scale_factor'): Fault => json(400, { error }),
  unauthorized: (): Fault => json(401, { error: 'Invalid API key' }),
  forbidden: (): Fault => json(403, { error: 'Model not permitted for this API key' }),
  insufficientCredits: (): Fault => text(406, 'Insufficient credits'),
  spendLimit: (): Fault => text(406, 'Monthly spend limit reached'),
  invalidContentType: (): Fault => text(406, 'Invalid content type'),
  retired: (): Fault => json(410, { error: 'This model has been retired' }),
  methodNotAllowedHtml: (): Fault =>
    text(405, '<!DOCTYPE html><html><head><title>405 Not Allowed</title></head><body><h1>405 Not Allowed</h1><script>x()</script></body></html>', 'text/html'),
  notFound: (): Fault => json(404, { error: 'Request not found' }),
  /** A FAILED job served with the given status (422 as documented, 200 as sometimes seen). */
  failed: (error = 'Image flagged by the content filter', status: 422 | 200 = 422): Fault =>
    json(status, { status: 'FAILED', error, metrics: {}, request_id: 'fault' }),
  /** A 200 whose body is not an image (for downloads and v1). */
  notAnImage: (): Fault => text(200, 'this is not an image', 'text/plain'),
  destroy: (billed = true): Fault => ({ kind: 'destroy', billed }),
  hang: (): Fault => ({ kind: 'hang' }),
} as const;

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  /** The route it matched, e.g. `GET /v2/requests/:id/status`. */
  route: string;
  /** Every header as received (nothing removed: tests assert where the key arrives, and where not). */
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, when there was one. */
  body: unknown;
  at: number;
}

export interface FakeCalls {
  submitsV1: number;
  submitsV2: number;
  /** Status polls (GET status_url). */
  polls: number;
  /** Result reads (GET response_url). */
  results: number;
  /** Output image downloads. */
  downloads: number;
  /** Jobs created, i.e. what the account was billed for. */
  billed: number;
  /** Requests per route, e.g. `POST /v2/clarity-upscaler`. */
  byRoute: Record<string, number>;
}

type JobState = 'QUEUED' | 'PROCESSING' | 'COMPLETED' | 'FAILED';

export interface FakeJob {
  id: string;
  version: 'v1' | 'v2';
  payload: Record<string, unknown>;
  state: JobState;
  polls: number;
  expired: boolean;
  failure?: { error: string; status: 422 | 200 };
  cost: number;
  /** Set once the output is rendered (or rendering failed). */
  output?: { data: Buffer; format: 'png' | 'jpg' | 'webp'; width: number; height: number };
}

export interface FakeSegmindOptions {
  /** The key `x-api-key` must carry. Default `FAKE_SEGMIND_KEY`. */
  apiKey?: string;
  /** Default 0 (any free port). */
  port?: number;
  host?: string;
  /** Polls answered QUEUED/PROCESSING before COMPLETED. Default 2 (QUEUED, PROCESSING, COMPLETED). */
  pollsBeforeComplete?: number;
  /** USD per job. Default 0.05. */
  cost?: number;
  /** Starting credits, decreased by `cost` per billed job. Default 100. */
  credits?: number;
  /** v1 accounting header name: both spellings are seen in the wild. Default `x-cost`. */
  costHeader?: 'x-cost' | 'x-credits-consumed';
  /** Serve outputs in this format whatever `output_format` says (to test conversion). */
  forceOutputFormat?: 'png' | 'jpg' | 'webp';
  /** Called for every request (the CLI prints them). */
  onRequest?: (request: RecordedRequest) => void;
}

export interface FakeSegmind {
  /** `http://127.0.0.1:<port>`: the base URL (SEGMIND_BASE_URL). */
  readonly url: string;
  readonly port: number;
  readonly apiKey: string;
  readonly calls: FakeCalls;
  /** Jobs submitted and not yet COMPLETED/FAILED: `current` now, `max` ever. */
  readonly concurrentJobs: { current: number; max: number };
  /** Every request, in order. */
  readonly requests: RecordedRequest[];
  /** Submit requests only (v1 and v2), in order. */
  readonly submits: RecordedRequest[];
  readonly jobs: Map<string, FakeJob>;
  /** Answers the next `times` calls to `target` with `fault`. Queued faults apply in order. */
  inject(target: FaultTarget, fault: Fault, times?: number): void;
  /** Faults still queued, per target. */
  pendingFaults(target: FaultTarget): number;
  clearFaults(): void;
  /** Jobs whose payload matches end FAILED with `error`, served as HTTP `status` (422 default). */
  failWhen(predicate: (payload: Record<string, unknown>) => boolean, options?: { error?: string; status?: 422 | 200 }): void;
  /** Keeps every unfinished job PROCESSING (and v1 answers pending) until `releaseJobs()`. */
  holdJobs(): void;
  releaseJobs(): void;
  /** Aliases of holdJobs/releaseJobs. */
  hold(): void;
  release(): void;
  /** The job's id is forgotten: status and response answer 404, as after the 1-hour retention. */
  expire(id: string): void;
  expireAll(): void;
  /** Resolves once `predicate()` holds (checked after every request and state change). */
  waitFor(predicate: () => boolean): Promise<void>;
  /** Resolves once `n` submits (v1 + v2, whatever their answer) have arrived. */
  waitForSubmits(n: number): Promise<void>;
  /** Resolves once `n` jobs are in flight at the same time. */
  waitForConcurrent(n: number): Promise<void>;
  waitForPolls(n: number): Promise<void>;
  /** Clears counters, recordings, jobs, faults and the hold. */
  reset(): void;
  close(): Promise<void>;
}

// --- The documented parameter rules (UPSTREAM.md), independent of src/params ------------------

/** UPSTREAM.md, "Schedulers", in its order: the fake's own list, not our table's. */
export const SCHEDULERS = [
  'DPM++ 2M Karras', 'DPM++ SDE Karras', 'DPM++ 2M SDE Exponential', 'DPM++ 2M SDE Karras', 'Euler a', 'Euler', 'LMS',
  'Heun', 'DPM2', 'DPM2 a', 'DPM++ 2S a', 'DPM++ 2M', 'DPM++ SDE', 'DPM++ 2M SDE', 'DPM++ 2M SDE Heun',
  'DPM++ 2M SDE Heun Karras', 'DPM++ 2M SDE Heun Exponential', 'DPM++ 3M SDE', 'DPM++ 3M SDE Karras',
  'DPM++ 3M SDE Exponential', 'DPM fast', 'DPM adaptive', 'LMS Karras', 'DPM2 Karras', 'DPM2 a Karras',
  'DPM++ 2S a Karras', 'Restart', 'DDIM', 'PLMS', 'UniPC',
];
export const SD_MODELS = [
  'epicrealism_naturalSinRC1VAE.safetensors [84d76a0328]',
  'juggernaut_reborn.safetensors [338b85bc4f]',
  'flat2DAnimerge_v45Sharp.safetensors',
];

type Rule =
  | { type: 'number'; min?: number; max?: number; exclusiveMin?: number }
  | { type: 'integer'; min?: number; max?: number; multipleOf?: number }
  | { type: 'boolean' }
  | { type: 'string' }
  | { type: 'enum'; values: readonly string[] };

const RULES: Record<string, Rule> = {
  image: { type: 'string' },
  prompt: { type: 'string' },
  negative_prompt: { type: 'string' },
  scale_factor: { type: 'number', exclusiveMin: 0 },
  creativity: { type: 'number', min: 0, max: 1 },
  resemblance: { type: 'number', min: 0, max: 3 },
  dynamic: { type: 'number', min: 1, max: 50 },
  sharpen: { type: 'number', min: 0, max: 10 },
  handfix: { type: 'enum', values: ['disabled', 'hands_only', 'image_and_hands'] },
  seed: { type: 'integer' },
  num_inference_steps: { type: 'integer', min: 1, max: 100 },
  scheduler: { type: 'enum', values: SCHEDULERS },
  sd_model: { type: 'enum', values: SD_MODELS },
  custom_sd_model: { type: 'string' },
  lora_links: { type: 'string' },
  mask: { type: 'string' },
  tiling_width: { type: 'integer', min: 16, max: 256, multipleOf: 16 },
  tiling_height: { type: 'integer', min: 16, max: 256, multipleOf: 16 },
  downscaling: { type: 'boolean' },
  downscaling_resolution: { type: 'integer' },
  output_format: { type: 'enum', values: ['webp', 'jpg', 'png'] },
};

/** The upstream's 400 message for the first bad field, or undefined. */
function validate(payload: Record<string, unknown>): string | undefined {
  if (typeof payload.image !== 'string' || payload.image === '') return 'image is required';
  for (const [field, rule] of Object.entries(RULES)) {
    const value = payload[field];
    if (value === undefined || (field === 'mask' && value === null)) continue;
    const bad = `Invalid value for ${field}`;
    switch (rule.type) {
      case 'number':
      case 'integer':
        if (typeof value !== 'number' || !Number.isFinite(value)) return `${bad}: expected a number, got ${typeof value}`;
        if (rule.type === 'integer' && !Number.isInteger(value)) return `${bad}: expected an integer`;
        if (rule.min !== undefined && value < rule.min) return `${bad}: below ${rule.min}`;
        if (rule.max !== undefined && value > rule.max) return `${bad}: above ${rule.max}`;
        if (rule.type === 'number' && rule.exclusiveMin !== undefined && value <= rule.exclusiveMin) return `${bad}: must be > ${rule.exclusiveMin}`;
        if (rule.type === 'integer' && rule.multipleOf !== undefined && value % rule.multipleOf !== 0) return `${bad}: not a multiple of ${rule.multipleOf}`;
        break;
      case 'boolean':
        if (typeof value !== 'boolean') return `${bad}: expected a boolean, got ${typeof value}`;
        break;
      case 'string':
        if (typeof value !== 'string') return `${bad}: expected a string, got ${typeof value}`;
        break;
      case 'enum':
        if (typeof value !== 'string' || !rule.values.includes(value)) return `${bad}: expected one of ${rule.values.join(', ')}`;
        break;
    }
  }
  return undefined;
}

/** An image field: a URL the fake fetches (as the upstream would), or base64 (a data: prefix tolerated). */
async function loadImage(ref: string): Promise<Buffer> {
  if (/^https?:\/\//.test(ref)) {
    const res = await request(ref, { headersTimeout: 10_000, bodyTimeout: 10_000 });
    const data = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`fetching the image answered ${res.statusCode}`);
    return data;
  }
  return Buffer.from(ref.replace(/^data:[^,]*;base64,/, ''), 'base64');
}

async function render(payload: Record<string, unknown>, force: FakeSegmindOptions['forceOutputFormat']): Promise<NonNullable<FakeJob['output']>> {
  const input = await loadImage(payload.image as string);
  const meta = await sharp(input).metadata();
  if (typeof payload.mask === 'string') await sharp(await loadImage(payload.mask)).metadata();
  const scale = typeof payload.scale_factor === 'number' ? payload.scale_factor : 1;
  // UPSTREAM.md: the output is the input × scale_factor; with a mask, the input size.
  const masked = typeof payload.mask === 'string';
  const width = masked ? meta.width : Math.max(1, Math.round(meta.width * scale));
  const height = masked ? meta.height : Math.max(1, Math.round(meta.height * scale));
  const format = force ?? ((payload.output_format as 'png' | 'jpg' | 'webp' | undefined) ?? 'png');
  const resized = sharp(input).resize(width, height, { fit: 'fill' });
  const data = await (format === 'jpg' ? resized.jpeg() : format === 'webp' ? resized.webp() : resized.png()).toBuffer();
  return { data, format, width, height };
}

const CONTENT_TYPES = { png: 'image/png', jpg: 'image/jpeg', webp: 'image/webp' } as const;

export async function createFakeSegmind(options: FakeSegmindOptions = {}): Promise<FakeSegmind> {
  const apiKey = options.apiKey ?? FAKE_SEGMIND_KEY;
  const pollsBeforeComplete = options.pollsBeforeComplete ?? 2;
  const cost = options.cost ?? 0.05;
  let credits = options.credits ?? 100;
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const changed = () => events.emit('change');

  const newCalls = (): FakeCalls => ({ submitsV1: 0, submitsV2: 0, polls: 0, results: 0, downloads: 0, billed: 0, byRoute: {} });
  const calls = newCalls();
  const concurrentJobs = { current: 0, max: 0 };
  const requests: RecordedRequest[] = [];
  const submits: RecordedRequest[] = [];
  const jobs = new Map<string, FakeJob>();
  const faults: Record<FaultTarget, Fault[]> = { submit: [], poll: [], result: [], download: [] };
  const failRules: { predicate: (p: Record<string, unknown>) => boolean; error: string; status: 422 | 200 }[] = [];
  const renders = new Map<string, Promise<void>>();
  let holding = false;
  let sequence = 0;
  let baseUrl = '';
  const sockets = new Set<Socket>();

  const finishJob = (job: FakeJob, state: 'COMPLETED' | 'FAILED') => {
    // After reset() the job is no longer counted: do not count it out either.
    if (job.state === 'COMPLETED' || job.state === 'FAILED' || jobs.get(job.id) !== job) return;
    job.state = state;
    concurrentJobs.current--;
    changed();
  };

  /** A billed job; its output renders in the background (a bad image makes it FAILED). */
  function createJob(version: 'v1' | 'v2', payload: Record<string, unknown>): FakeJob {
    const id = `${version === 'v1' ? 'v1' : 'req'}-${(++sequence).toString(16).padStart(6, '0')}-${Math.random().toString(16).slice(2, 10)}`;
    const job: FakeJob = { id, version, payload, state: 'QUEUED', polls: 0, expired: false, cost };
    const rule = failRules.find((r) => r.predicate(payload));
    if (rule) job.failure = { error: rule.error, status: rule.status };
    jobs.set(id, job);
    calls.billed++;
    credits = Math.round((credits - cost) * 1e6) / 1e6;
    concurrentJobs.current++;
    concurrentJobs.max = Math.max(concurrentJobs.max, concurrentJobs.current);
    renders.set(
      id,
      render(payload, options.forceOutputFormat).then(
        (output) => {
          job.output = output;
        },
        () => {
          job.failure ??= { error: 'Could not process the input image', status: 422 };
        },
      ),
    );
    changed();
    return job;
  }

  const send = (res: ServerResponse, status: number, body: string | Buffer, contentType: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)), ...headers });
    res.end(body);
  };
  const sendJson = (res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>) =>
    send(res, status, JSON.stringify(body), 'application/json', headers);

  /** Answers with `fault`, breaks the connection, or (hang) leaves the request unanswered. */
  function applyFault(fault: Fault, req: IncomingMessage, res: ServerResponse): void {
    if (fault.kind === 'answer') {
      send(res, fault.status, fault.body ?? '', fault.contentType ?? 'application/json', fault.headers);
    } else if (fault.kind === 'destroy') {
      req.socket.destroy();
    }
    // hang: nothing; the socket stays open until close().
  }

  const terminal = (job: FakeJob) => job.state === 'COMPLETED' || job.state === 'FAILED';
  const failedBody = (job: FakeJob) => ({ status: 'FAILED', error: job.failure?.error ?? 'failed', metrics: { inference_time: 0.4 }, request_id: job.id });

  /** One status poll: QUEUED, then PROCESSING, then (output ready, not held) the end state. */
  function advance(job: FakeJob): void {
    job.polls++;
    if (terminal(job)) return;
    if (job.polls <= pollsBeforeComplete) {
      job.state = job.polls === 1 ? 'QUEUED' : 'PROCESSING';
      return;
    }
    job.state = 'PROCESSING';
    if (holding) return;
    if (job.failure) return finishJob(job, 'FAILED');
    if (job.output) finishJob(job, 'COMPLETED');
  }

  const statusBody = (job: FakeJob) => ({
    status: job.state,
    request_id: job.id,
    metrics: job.state === 'COMPLETED' ? { inference_time: 13.06 } : {},
  });

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async function whileHeld(): Promise<void> {
    while (holding) await new Promise((resolve) => events.once('release', resolve));
  }

  async function submit(version: 'v1' | 'v2', req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return sendJson(res, 400, { error: 'Invalid JSON body' });
    const payload = body as Record<string, unknown>;
    const invalid = validate(payload);
    if (invalid) return sendJson(res, 400, { error: invalid });
    const job = createJob(version, payload);
    if (version === 'v2') {
      const statusUrl = `${baseUrl}/v2/requests/${job.id}/status`;
      return sendJson(res, 200, {
        request_id: job.id,
        status: 'QUEUED',
        poll_url: statusUrl,
        status_url: statusUrl,
        response_url: `${baseUrl}/v2/requests/${job.id}`,
      });
    }
    // v1: the answer is the image, once it is made (and the hold is lifted).
    await renders.get(job.id);
    await whileHeld();
    if (res.destroyed) return;
    if (job.failure || !job.output) {
      finishJob(job, 'FAILED');
      return sendJson(res, job.failure?.status ?? 422, failedBody(job));
    }
    finishJob(job, 'COMPLETED');
    send(res, 200, job.output.data, CONTENT_TYPES[job.output.format], {
      [options.costHeader ?? 'x-cost']: String(job.cost),
      'x-remaining-credits': String(credits),
      'x-generation-time': '13.06',
      'x-request-id': job.id,
    });
  }

  function route(method: string, path: string): { name: string; target?: FaultTarget; id?: string; auth: boolean } {
    let m: RegExpExecArray | null;
    if (path === '/v1/clarity-upscaler') return { name: `${method} /v1/clarity-upscaler`, target: 'submit', auth: true };
    if (path === '/v2/clarity-upscaler') return { name: `${method} /v2/clarity-upscaler`, target: 'submit', auth: true };
    if ((m = /^\/v2\/requests\/([^/]+)\/status$/.exec(path))) return { name: `${method} /v2/requests/:id/status`, target: 'poll', id: m[1], auth: true };
    if ((m = /^\/v2\/requests\/([^/]+)$/.exec(path))) return { name: `${method} /v2/requests/:id`, target: 'result', id: m[1], auth: true };
    if ((m = /^\/outputs\/([^/.]+)\.(png|jpg|webp)$/.exec(path))) return { name: `${method} /outputs/:id`, target: 'download', id: m[1], auth: false };
    return { name: `${method} ${path}`, auth: true };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://fake').pathname;
    const r = route(method, path);
    const raw = await readBody(req);
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = undefined;
      }
    }
    const recorded: RecordedRequest = { method, url: req.url ?? '/', route: r.name, headers: req.headers, body, at: Date.now() };
    requests.push(recorded);
    calls.byRoute[r.name] = (calls.byRoute[r.name] ?? 0) + 1;
    const expectsPost = r.target === 'submit';
    const methodOk = r.target === undefined || (expectsPost ? method === 'POST' : method === 'GET');
    if (methodOk) {
      if (r.target === 'submit') {
        submits.push(recorded);
        if (path.startsWith('/v1/')) calls.submitsV1++;
        else calls.submitsV2++;
      } else if (r.target === 'poll') calls.polls++;
      else if (r.target === 'result') calls.results++;
      else if (r.target === 'download') calls.downloads++;
    }
    options.onRequest?.(recorded);
    changed();

    if (r.auth && req.headers['x-api-key'] !== apiKey) return sendJson(res, 401, { error: 'Unauthorized: invalid or missing x-api-key' });
    if (r.target === undefined) return sendJson(res, 404, { error: `Model or route not found: ${path}` });
    if (!methodOk) return applyFault(FAULTS.methodNotAllowedHtml(), req, res);

    const fault = faults[r.target].shift();
    if (fault) {
      if (fault.kind === 'destroy' && r.target === 'submit' && fault.billed !== false) {
        const payload = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
        if (!validate(payload)) {
          const job = createJob(path.startsWith('/v1/') ? 'v1' : 'v2', payload);
          // A v1 job runs to its end upstream even though nobody hears the answer.
          if (job.version === 'v1') void renders.get(job.id)?.then(() => finishJob(job, job.failure ? 'FAILED' : 'COMPLETED'));
        }
      }
      return applyFault(fault, req, res);
    }

    if (r.target === 'submit') return submit(path.startsWith('/v1/') ? 'v1' : 'v2', req, res, body);

    const job = r.id ? jobs.get(r.id) : undefined;
    if (r.target === 'download') {
      if (!job?.output) return sendJson(res, 404, { error: 'Not found' });
      return send(res, 200, job.output.data, CONTENT_TYPES[job.output.format]);
    }
    if (!job || job.expired || job.version !== 'v2') return sendJson(res, 404, { error: `Request ${r.id ?? ''} not found` });
    if (r.target === 'poll') {
      advance(job);
      changed();
      if (job.state === 'FAILED') return sendJson(res, job.failure?.status ?? 422, failedBody(job));
      return sendJson(res, 200, statusBody(job));
    }
    // result
    if (job.state === 'FAILED') return sendJson(res, job.failure?.status ?? 422, failedBody(job));
    if (job.state !== 'COMPLETED' || !job.output) return sendJson(res, 200, { status: job.state, error: null, metrics: {}, output: null });
    return sendJson(res, 200, {
      status: 'COMPLETED',
      error: null,
      metrics: { inference_time: 13.06, cost: job.cost, remaining_credits: credits },
      output: `${baseUrl}/outputs/${job.id}.${job.output.format}`,
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, `fake error: ${String(error)}`, 'text/plain');
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const host = options.host ?? '127.0.0.1';
  baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const waitFor = (predicate: () => boolean) =>
    new Promise<void>((resolve) => {
      if (predicate()) return resolve();
      const check = () => {
        if (!predicate()) return;
        events.off('change', check);
        resolve();
      };
      events.on('change', check);
    });

  const hold = () => {
    holding = true;
  };
  const release = () => {
    holding = false;
    events.emit('release');
    changed();
  };

  return {
    url: baseUrl,
    port,
    apiKey,
    calls,
    concurrentJobs,
    requests,
    submits,
    jobs,
    inject(target, fault, times = 1) {
      for (let i = 0; i < times; i++) faults[target].push(fault);
    },
    pendingFaults: (target) => faults[target].length,
    clearFaults() {
      for (const list of Object.values(faults)) list.length = 0;
    },
    failWhen(predicate, opts = {}) {
      failRules.push({ predicate, error: opts.error ?? 'Image flagged by the content filter', status: opts.status ?? 422 });
    },
    holdJobs: hold,
    releaseJobs: release,
    hold,
    release,
    expire(id) {
      const job = jobs.get(id);
      if (job) job.expired = true;
    },
    expireAll() {
      for (const job of jobs.values()) job.expired = true;
    },
    waitFor,
    waitForSubmits: (n) => waitFor(() => calls.submitsV1 + calls.submitsV2 >= n),
    waitForConcurrent: (n) => waitFor(() => concurrentJobs.current >= n),
    waitForPolls: (n) => waitFor(() => calls.polls >= n),
    reset() {
      Object.assign(calls, newCalls());
      concurrentJobs.current = 0;
      concurrentJobs.max = 0;
      requests.length = 0;
      submits.length = 0;
      jobs.clear();
      failRules.length = 0;
      for (const list of Object.values(faults)) list.length = 0;
      release();
    },
    async close() {
      release();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
