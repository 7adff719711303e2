/**
 * The Segmind Clarity Upscaler engine: v2 (submit, journal, poll `status_url`, read `response_url`,
 * download `output`) or v1 (one request answered with the image), following
 * `../shared/UPSTREAM.md` to the letter.
 *
 * The rule above all: never pay twice for one payload. A submit is repeated only when its answer
 * said it was not taken (429, 5xx) or when the connection failed before the request left; every
 * accepted job is journaled before it is polled, and a job found in the journal is resumed, never
 * resubmitted, unless the upstream no longer knows it (404). Polls and downloads are free: they are
 * retried without going through the gate.
 */
import sharp, { type Metadata } from 'sharp';
import { Agent, type Dispatcher } from 'undici';
import { CdnError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { PARAMS, type EngineName, type ParamName } from '../../params/table.js';
import type { Engine, EngineContext, EngineInput, EngineResult } from '../types.js';
import {
  mapUpstreamResponse,
  sanitizeReason,
  UpstreamAuthError,
  UpstreamError,
  UpstreamInvalidRequestError,
  UpstreamRejectedError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
  type Headers,
  type UpstreamPhase,
  type UpstreamVerdict,
} from './errors.js';
import { BodyTooLargeError, send, TransportError, type HttpAnswer } from './http.js';
import type { JobJournal, JournalEntry } from './journal.js';
import { buildPayload, type ImageDelivery } from './payload.js';
import { DEFAULT_RETRY_POLICY, retryDelay, type RetryPolicy } from './retry.js';

export interface SegmindEngineOptions {
  /** `SEGMIND_API_KEY`. Sent only as `x-api-key` to the API's own origin; never logged. */
  apiKey: string;
  /** `SEGMIND_BASE_URL`, e.g. `https://api.segmind.com`. */
  baseUrl: string;
  /** `async`: v2 submit + poll (default, resumable); `sync`: v1, one long request per job. */
  mode: 'async' | 'sync';
  /** Wait between v2 status polls, ms (the first poll is immediate). */
  pollIntervalMs: number;
  /** Longest one job may take, submit to download, ms (`UPSTREAM_TIMEOUT_MS`); past it 504. */
  timeoutMs: number;
  /** Retries of a 429/5xx/connection failure, per call (`UPSTREAM_RETRIES`); past them 503. */
  retries: number;
  /** How the source travels: inline base64, or `{publicBaseUrl}/sources/<hash>`. */
  imageDelivery: ImageDelivery;
  /** `PUBLIC_BASE_URL`; required with `imageDelivery: 'url'`. */
  publicBaseUrl?: string;
  journal: JobJournal;
  logger: Logger;
  /**
   * Carries every call when given (a proxy, a test). Default: two agents of the engine's own, one
   * of which opens a fresh connection per submit, so that a connection failure on a submit is
   * either clearly before sending (retried) or possibly after (never retried).
   */
  dispatcher?: Dispatcher;
  /** Jitter source, [0, 1). Default `Math.random`. */
  random?: () => number;
  /** Clock, epoch ms. Default `Date.now`. */
  now?: () => number;
  /** Backoff when the upstream gives no `Retry-After`. Default 500 ms × 2ⁿ, at most 30 s. */
  retryPolicy?: Partial<RetryPolicy>;
  /** Per-call timeout of submits (v2), polls and result reads, ms. Default 30 000, as the SDK. */
  requestTimeoutMs?: number;
  /** TCP/TLS connect timeout, ms. Default 5 000, as the SDK. */
  connectTimeoutMs?: number;
  /** Largest result image accepted (v2 download, v1 body), bytes. Default 100 MiB. */
  maxOutputBytes?: number;
  /** Longest silence while an output image downloads, ms. Default 60 000. */
  downloadTimeoutMs?: number;
}

const MIB = 1024 * 1024;
/** JSON answers are small; anything bigger is not the API talking. */
const MAX_JSON_BYTES = 1 * MIB;
/** How long `close()` lets calls in flight finish before cutting them, ms. */
const CLOSE_GRACE_MS = 5_000;
/** Sent with a 503/504 when a job is left running upstream: about when a retry finds it done. */
const RESUME_AFTER_SECONDS = 30;

/** Every clarity field: the upstream acts on all of them. */
const HONORED = new Set<string>(
  (Object.entries(PARAMS) as [ParamName, (typeof PARAMS)[ParamName]][])
    .filter(([, spec]) => spec.group === 'clarity' && (spec.engines as readonly EngineName[]).includes('segmind'))
    .map(([name]) => name),
);

/** A journaled id the upstream no longer knows (404): the one case that may submit again. */
class ExpiredJobError extends Error {
  override readonly name = 'ExpiredJobError';
}

/** Why the job's own deadline aborted it; told apart from the caller's signal. */
class DeadlineReached extends Error {
  override readonly name = 'DeadlineReached';
}

function checkOptions(o: SegmindEngineOptions): void {
  const problems: string[] = [];
  if (typeof o.apiKey !== 'string' || o.apiKey.trim() === '') problems.push('apiKey: expected a non-empty key');
  if (!/^https?:\/\/[^/]/.test(String(o.baseUrl))) problems.push(`baseUrl: expected an http(s) URL, got ${String(o.baseUrl)}`);
  if (o.mode !== 'async' && o.mode !== 'sync') problems.push(`mode: expected async or sync, got ${String(o.mode)}`);
  if (o.imageDelivery !== 'base64' && o.imageDelivery !== 'url') {
    problems.push(`imageDelivery: expected base64 or url, got ${String(o.imageDelivery)}`);
  }
  if (o.imageDelivery === 'url' && !/^https?:\/\/[^/]/.test(String(o.publicBaseUrl))) {
    problems.push('publicBaseUrl: required (an http(s) URL) with imageDelivery "url"');
  }
  for (const [name, min] of [['pollIntervalMs', 1], ['timeoutMs', 1], ['retries', 0]] as const) {
    const value = o[name];
    if (!Number.isInteger(value) || value < min) problems.push(`${name}: expected an integer ≥ ${min}, got ${value}`);
  }
  if (!o.journal) problems.push('journal: required');
  if (problems.length > 0) throw new TypeError(`createSegmindEngine: ${problems.join('; ')}`);
}

/** An absolute http(s) URL from an upstream answer, or undefined. */
function absoluteUrl(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : undefined;
  } catch {
    return undefined;
  }
}

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function numberOf(value: unknown): number | undefined {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

const statusOf = (json: unknown): string | undefined => {
  const status = typeof json === 'object' && json !== null ? (json as { status?: unknown }).status : undefined;
  return typeof status === 'string' ? status.toUpperCase() : undefined;
};

/** An error for the log with nothing of undici's objects (sockets, options) and no secret. */
function safeCause(error: unknown, secrets: readonly string[]): Error {
  if (error instanceof TransportError || error instanceof BodyTooLargeError) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const safe = new Error(sanitizeReason(message, secrets));
  if (typeof code === 'string') (safe as Error & { code?: string }).code = code;
  return safe;
}

export function createSegmindEngine(options: SegmindEngineOptions): Engine {
  checkOptions(options);
  const { apiKey, mode, pollIntervalMs, timeoutMs, retries, journal } = options;
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const base = new URL(baseUrl);
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retryPolicy };
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  const maxOutputBytes = options.maxOutputBytes ?? 100 * MIB;
  const downloadTimeoutMs = options.downloadTimeoutMs ?? 60_000;
  const secrets = [apiKey];
  const log = options.logger.child({ engine: 'segmind' });

  const owned: Agent[] = [];
  const own = (agent: Agent) => (owned.push(agent), agent);
  const freeDispatcher = options.dispatcher ?? own(new Agent({ connect: { timeout: connectTimeoutMs } }));
  // pipelining 0: every submit on a fresh connection that closes after it, so a submit never lands
  // on a keep-alive socket the server is closing, the one case where "reset before sending" and
  // "reset after the upstream took the job" look alike.
  const submitDispatcher = options.dispatcher ?? own(new Agent({ pipelining: 0, connect: { timeout: connectTimeoutMs } }));

  /**
   * The key goes to the API's own origin, or over https between hosts of segmind.com (should the
   * API answer with a `status_url` on another of its hosts): never to wherever an answer points.
   * A "same parent domain" rule would need the public-suffix list (`api.example.co.uk`), so the one
   * domain is named. Output images need no key and never get it.
   */
  function mayCarryKey(url: string): boolean {
    const target = new URL(url);
    if (target.origin === base.origin) return true;
    const segmind = (u: URL) => u.protocol === 'https:' && (u.hostname === 'segmind.com' || u.hostname.endsWith('.segmind.com'));
    return segmind(base) && segmind(target);
  }

  const warnedOrigins = new Set<string>();
  const jsonHeaders = { accept: 'application/json', 'user-agent': 'clarity-cdn' };
  const authHeaders = (url: string): Record<string, string> => {
    if (mayCarryKey(url)) return { ...jsonHeaders, 'x-api-key': apiKey };
    const origin = new URL(url).origin;
    if (!warnedOrigins.has(origin)) {
      warnedOrigins.add(origin);
      log.warn({ origin, baseOrigin: base.origin }, 'upstream pointed outside its own origin; calling it without the key');
    }
    return jsonHeaders;
  };

  interface Job {
    input: EngineInput;
    context: EngineContext;
    signal: AbortSignal;
    deadlineAt: number;
    started: number;
    log: Logger;
    requestId?: string;
    /** True while a submit is on the wire: a deadline hit then may leave a billed job behind. */
    submitting?: boolean;
  }

  const map = (answer: HttpAnswer, phase: UpstreamPhase, what?: string): UpstreamVerdict =>
    mapUpstreamResponse(answer.status, answer.body, answer.headers, {
      phase,
      nowMs: now(),
      secrets,
      ...(what ? { what } : {}),
    });

  function sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Logs a final upstream error at the level its class deserves: an operator must see auth. */
  function logFailure(job: Job, error: UpstreamError): void {
    const line = { code: error.code, upstreamStatus: error.upstreamStatus, requestId: job.requestId ?? error.requestId, masterKey: job.input.masterKey };
    if (error instanceof UpstreamAuthError) job.log.error({ ...line, reason: error.reason }, `segmind refused this deployment: ${error.detail}`);
    else if (error instanceof UpstreamRejectedError || error instanceof UpstreamInvalidRequestError) job.log.info(line, `segmind job failed: ${error.detail}`);
    else job.log.warn(line, `segmind call failed: ${error.detail}`);
  }

  const retryAfterSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

  interface Failure {
    status?: number;
    reason: string;
    rateLimited: boolean;
    retryAfterMs?: number;
  }

  /**
   * The wait before the next attempt, after `failures` failed ones. A 429 pauses the whole limiter
   * (the rate limit is the account's, not this call's). Throws when no retry is left, or when the
   * wait would outlast the job's deadline.
   */
  function nextDelay(job: Job, failure: Failure, failures: number, giveUp: (detail: string, delayMs: number) => Error): number {
    const delay = retryDelay(failures - 1, failure.retryAfterMs, policy, random);
    if (failure.rateLimited) job.context.gate.pauseUntil(now() + delay);
    const what = failure.status !== undefined ? `HTTP ${failure.status}` : failure.reason;
    if (failures > retries) throw giveUp(`${what} through ${retries} ${retries === 1 ? 'retry' : 'retries'}`, delay);
    if (now() + delay > job.deadlineAt) throw giveUp(`${what}, and the next try is due after UPSTREAM_TIMEOUT_MS`, delay);
    return delay;
  }

  /**
   * A billable submit, repeated only while the upstream says it did not take the job (429/5xx) or
   * the connection failed before the request left. Each attempt passes the gate first.
   */
  async function submit(job: Job, path: string, body: string, phaseWhat: string): Promise<{ answer: HttpAnswer; json: unknown }> {
    const url = `${baseUrl}${path}`;
    const sync = path.startsWith('/v1/');
    for (let failures = 0; ; ) {
      await job.context.gate.acquire(job.signal);
      let failure: Failure;
      try {
        job.submitting = true;
        const answer = await send({
          url,
          method: 'POST',
          headers: {
            ...jsonHeaders,
            ...(sync ? { accept: 'image/png, image/*, application/json' } : {}),
            'content-type': 'application/json',
            'x-api-key': apiKey,
          },
          body,
          dispatcher: submitDispatcher,
          signal: job.signal,
          // v1 answers when the image is done: only the job's deadline bounds the wait.
          headersTimeoutMs: sync ? Math.max(1, job.deadlineAt - now()) : requestTimeoutMs,
          bodyTimeoutMs: sync ? downloadTimeoutMs : requestTimeoutMs,
          maxBytes: sync ? maxOutputBytes : MAX_JSON_BYTES,
          secrets,
        });
        job.submitting = false;
        const verdict = map(answer, 'submit', phaseWhat);
        if (verdict.kind === 'ok') return { answer, json: verdict.json };
        if (verdict.kind === 'fail') throw verdict.error;
        if (verdict.kind === 'expired') throw new Error('unreachable: 404 on submit is mapped to a failure');
        failure = verdict;
      } catch (error) {
        if (error instanceof CdnError || job.signal.aborted) throw error;
        job.submitting = false;
        const refused = (error instanceof TransportError || error instanceof BodyTooLargeError) && error.status !== undefined && (error.status < 200 || error.status >= 300);
        if (refused) {
          // The status line of a refusal arrived, then its body broke or ran long: the status decides.
          const headers = error instanceof TransportError ? (error.headers ?? {}) : {};
          const verdict = mapUpstreamResponse(error.status as number, undefined, headers, { phase: 'submit', nowMs: now(), secrets });
          if (verdict.kind === 'fail') throw verdict.error;
          if (verdict.kind !== 'retry') throw new Error('unreachable');
          failure = verdict;
        } else if (error instanceof TransportError && !error.mayHaveBeenSent) {
          failure = { reason: error.code ?? 'connection failed', rateLimited: false };
        } else if (error instanceof BodyTooLargeError) {
          throw new UpstreamUnavailableError({
            ambiguous: true,
            detail: `the upstream accepted the job (HTTP ${error.status}) but answered with more than ${error.maxBytes} bytes; it was not resubmitted, since it may be billed`,
            retryAfterSeconds: RESUME_AFTER_SECONDS,
            upstreamStatus: error.status,
          });
        } else {
          // The request may have reached the upstream and been accepted: its answer was lost, so
          // submitting again could bill the same job twice. Fail instead, and say why.
          throw new UpstreamUnavailableError({
            ambiguous: true,
            detail:
              'the connection to the upstream broke after the job was sent; it may have been accepted and billed, so it was not resubmitted',
            retryAfterSeconds: RESUME_AFTER_SECONDS,
            cause: safeCause(error, secrets),
          });
        }
      }
      failures++;
      const delay = nextDelay(job, failure, failures, (why, delayMs) =>
        new UpstreamUnavailableError({
          detail: `the upstream did not take the job: ${why}`,
          retryAfterSeconds: retryAfterSeconds(delayMs),
          ...(failure.status !== undefined ? { upstreamStatus: failure.status } : {}),
        }),
      );
      job.log.warn({ upstreamStatus: failure.status, reason: failure.reason, attempt: failures, delayMs: delay, masterKey: job.input.masterKey }, 'segmind submit will be retried');
      await sleep(delay, job.signal);
    }
  }

  /**
   * A free call (poll, result, download): retried on 429/5xx/connection errors, bounded by
   * `retries` consecutive failures. A 404 means the job expired, except right after a fresh submit,
   * where it can only be the upstream lagging, and is retried like a 5xx.
   */
  async function fetchFree(
    job: Job,
    url: string,
    phase: Exclude<UpstreamPhase, 'submit'>,
    opts: { withKey: boolean; maxBytes: number; timeoutMs: number; expiredIsFinal: boolean },
  ): Promise<{ answer: HttpAnswer; json: unknown }> {
    for (let failures = 0; ; ) {
      let failure: Failure;
      try {
        const answer = await send({
          url,
          method: 'GET',
          headers: opts.withKey ? authHeaders(url) : { 'user-agent': 'clarity-cdn' },
          dispatcher: freeDispatcher,
          signal: job.signal,
          headersTimeoutMs: opts.timeoutMs,
          bodyTimeoutMs: opts.timeoutMs,
          maxBytes: opts.maxBytes,
          secrets,
        });
        const verdict = map(answer, phase);
        if (verdict.kind === 'ok') return { answer, json: verdict.json };
        if (verdict.kind === 'fail') throw verdict.error;
        if (verdict.kind === 'expired') {
          if (opts.expiredIsFinal) throw new ExpiredJobError(verdict.reason);
          failure = { status: 404, reason: verdict.reason, rateLimited: false };
        } else failure = verdict;
      } catch (error) {
        if (error instanceof CdnError || error instanceof ExpiredJobError || job.signal.aborted) throw error;
        if (error instanceof BodyTooLargeError) {
          throw new UpstreamUnavailableError({
            detail: `the upstream's ${phase === 'download' ? 'output image' : 'answer'} is larger than ${error.maxBytes} bytes`,
            retryAfterSeconds: RESUME_AFTER_SECONDS,
            cause: error,
          });
        }
        failure = { reason: error instanceof TransportError ? (error.code ?? 'connection failed') : 'connection failed', rateLimited: false };
      }
      failures++;
      const delay = nextDelay(job, failure, failures, (why, delayMs) =>
        new UpstreamUnavailableError({
          detail: `the upstream kept failing the ${phase}${job.requestId ? ` of job ${job.requestId}` : ''}: ${why}; the job stays journaled and the next request resumes it`,
          retryAfterSeconds: Math.max(RESUME_AFTER_SECONDS, retryAfterSeconds(delayMs)),
          ...(failure.status !== undefined ? { upstreamStatus: failure.status } : {}),
          ...(job.requestId ? { requestId: job.requestId } : {}),
        }),
      );
      job.log.warn({ requestId: job.requestId, phase, upstreamStatus: failure.status, reason: failure.reason, attempt: failures, delayMs: delay }, 'segmind call will be retried');
      await sleep(delay, job.signal);
    }
  }

  /** Decodes what the upstream made; PNG as is, anything else re-encoded losslessly. */
  async function toPng(data: Buffer, job: Job): Promise<{ data: Buffer; width: number; height: number }> {
    let meta: Metadata;
    try {
      meta = await sharp(data).metadata();
    } catch (error) {
      throw new UpstreamUnavailableError({
        detail: `the upstream's output${job.requestId ? ` for job ${job.requestId}` : ''} is not an image`,
        retryAfterSeconds: RESUME_AFTER_SECONDS,
        cause: safeCause(error, secrets),
        ...(job.requestId ? { requestId: job.requestId } : {}),
      });
    }
    if (meta.format === 'png' && meta.width && meta.height) return { data, width: meta.width, height: meta.height };
    const { data: png, info } = await sharp(data).autoOrient().png().toBuffer({ resolveWithObject: true });
    return { data: png, width: info.width, height: info.height };
  }

  /** `output`: a URL (or a list of them, or inline base64) to the result image's bytes. */
  async function fetchOutput(job: Job, output: unknown): Promise<Buffer> {
    const first = Array.isArray(output) ? output.find((o) => typeof o === 'string') : output;
    const url = absoluteUrl(first);
    if (url) {
      // Hosted results need no auth: the key never travels to the image host.
      const { answer } = await fetchFree(job, url, 'download', {
        withKey: false,
        maxBytes: maxOutputBytes,
        timeoutMs: downloadTimeoutMs,
        expiredIsFinal: false,
      });
      return answer.body;
    }
    if (typeof first === 'string' && first.length > 0) {
      return Buffer.from(first.replace(/^data:[^,]*;base64,/, ''), 'base64');
    }
    throw new UpstreamUnavailableError({
      detail: `the upstream reported job ${job.requestId ?? ''} COMPLETED without an output`,
      retryAfterSeconds: RESUME_AFTER_SECONDS,
      ...(job.requestId ? { requestId: job.requestId } : {}),
    });
  }

  /** v2 from an accepted job: poll until done, read the result, download the image. */
  /** The result of a finished, billed job (v1 or v2), with its accounting logged once. */
  function completed(
    job: Job,
    image: { data: Buffer; width: number; height: number },
    requestId: string | undefined,
    accounting: { cost: number | undefined; remainingCredits: number | undefined; resumed?: boolean },
  ): EngineResult {
    const { cost, remainingCredits } = accounting;
    const elapsedMs = now() - job.started;
    job.log.info(
      { requestId, masterKey: job.input.masterKey, ...accounting, elapsedMs, width: image.width, height: image.height },
      'segmind job completed',
    );
    return {
      ...image,
      engine: 'segmind',
      paid: true,
      ...(cost !== undefined ? { cost } : {}),
      ...(remainingCredits !== undefined ? { remainingCredits } : {}),
      elapsedMs,
    };
  }

  async function finish(job: Job, entry: JournalEntry, resumed: boolean): Promise<EngineResult> {
    job.requestId = entry.requestId;
    const free = { withKey: true, maxBytes: MAX_JSON_BYTES, timeoutMs: requestTimeoutMs, expiredIsFinal: resumed };
    try {
      for (let polls = 0; ; ) {
        for (;;) {
          if (polls++ > 0) await sleep(pollIntervalMs, job.signal);
          const { json } = await fetchFree(job, entry.statusUrl, 'poll', free);
          // FAILED came back as an error from the mapping; QUEUED, PROCESSING and anything new: wait.
          if (statusOf(json) === 'COMPLETED') break;
        }
        const { json } = await fetchFree(job, entry.responseUrl, 'result', free);
        const status = statusOf(json);
        if (status === 'QUEUED' || status === 'PROCESSING') continue;
        const result = (json ?? {}) as { output?: unknown; metrics?: Record<string, unknown> };
        const image = await toPng(await fetchOutput(job, result.output), job);
        return {
          ...completed(job, image, entry.requestId, {
            cost: numberOf(result.metrics?.cost),
            remainingCredits: numberOf(result.metrics?.remaining_credits),
            resumed,
          }),
          onStored: () => journal.delete(entry.masterKey),
        };
      }
    } catch (error) {
      // A FAILED job is over: nothing left to resume (the pipeline remembers the failure).
      if (error instanceof UpstreamRejectedError) await journal.delete(entry.masterKey).catch(() => undefined);
      throw error;
    }
  }

  async function submitAsync(job: Job): Promise<JournalEntry> {
    const payload = JSON.stringify(buildPayload(job.input, options.imageDelivery, options.publicBaseUrl));
    const { answer, json } = await submit(job, '/v2/clarity-upscaler', payload, 'POST /v2/clarity-upscaler');
    const body = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
    const requestId = typeof body.request_id === 'string' && body.request_id !== '' ? body.request_id : undefined;
    const statusUrl = absoluteUrl(body.status_url) ?? absoluteUrl(body.poll_url);
    const responseUrl = absoluteUrl(body.response_url);
    if (!requestId || !statusUrl || !responseUrl) {
      // A 200 is a billed job, but one we cannot follow: say so rather than pay for another.
      throw new UpstreamUnavailableError({
        ambiguous: true,
        detail:
          'the upstream accepted the job (HTTP 200) but its answer lacked request_id, status_url or response_url; it was not resubmitted, since it may be billed',
        retryAfterSeconds: RESUME_AFTER_SECONDS,
        upstreamStatus: answer.status,
      });
    }
    const { source, mask } = job.input;
    const entry: JournalEntry = {
      masterKey: job.input.masterKey,
      requestId,
      statusUrl,
      responseUrl,
      submittedAt: now(),
      sources: mask ? [source.hash, mask.hash] : [source.hash],
      params: job.input.params,
    };
    job.requestId = requestId;
    try {
      await journal.put(entry.masterKey, entry);
    } catch (error) {
      // The job is paid for: polling it now is the best use of the money, even if a crash before
      // the result would lose it.
      job.log.error({ err: safeCause(error, secrets), requestId, masterKey: entry.masterKey }, 'could not journal an accepted segmind job; polling it anyway');
    }
    job.log.info({ requestId, masterKey: entry.masterKey }, 'segmind job submitted');
    return entry;
  }

  async function runSync(job: Job): Promise<EngineResult> {
    const payload = JSON.stringify(buildPayload(job.input, options.imageDelivery, options.publicBaseUrl));
    const { answer } = await submit(job, '/v1/clarity-upscaler', payload, 'POST /v1/clarity-upscaler');
    const requestId = header(answer.headers, 'x-request-id');
    if (requestId) job.requestId = sanitizeReason(requestId, secrets);
    const type = (header(answer.headers, 'content-type') ?? '').toLowerCase();
    if (!type.startsWith('image/') && !type.includes('octet-stream')) {
      throw new UpstreamUnavailableError({
        ambiguous: true,
        detail: `the upstream answered HTTP ${answer.status} without an image (${sanitizeReason(type || 'no Content-Type', secrets)}); it was not resubmitted, since it may be billed`,
        retryAfterSeconds: RESUME_AFTER_SECONDS,
        upstreamStatus: answer.status,
      });
    }
    const image = await toPng(answer.body, job);
    return completed(job, image, job.requestId, {
      cost: numberOf(header(answer.headers, 'x-cost') ?? header(answer.headers, 'x-credits-consumed')),
      remainingCredits: numberOf(header(answer.headers, 'x-remaining-credits')),
    });
  }

  async function run(job: Job): Promise<EngineResult> {
    const { masterKey } = job.input;
    // A job accepted earlier (by this process or one that crashed) is resumed whatever the mode:
    // its URLs are absolute.
    const journaled = await journal.get(masterKey);
    if (journaled) {
      job.log.info({ requestId: journaled.requestId, masterKey }, 'resuming journaled segmind job');
      try {
        return await finish(job, journaled, true);
      } catch (error) {
        if (!(error instanceof ExpiredJobError)) throw error;
        job.log.warn({ requestId: journaled.requestId, masterKey }, 'journaled segmind job is unknown upstream (404, expired); submitting it again');
        await journal.delete(masterKey);
        delete job.requestId;
      }
    }
    if (mode === 'sync') return runSync(job);
    return finish(job, await submitAsync(job), false);
  }

  return {
    id: 'segmind',
    honors: HONORED,
    paid: true,
    async journaled() {
      const entries = await journal.list();
      // Entries written before they carried their request cannot be finished without one.
      return entries.flatMap((e) => (e.params && e.sources?.[0] ? [{ masterKey: e.masterKey, source: e.sources[0], params: e.params }] : []));
    },
    async upscale(input, context) {
      const started = now();
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(new DeadlineReached(`upstream job exceeded ${timeoutMs} ms`)), timeoutMs);
      const signal = context.signal ? AbortSignal.any([context.signal, deadline.signal]) : deadline.signal;
      const job: Job = { input, context, signal, deadlineAt: started + timeoutMs, started, log };
      try {
        return await run(job);
      } catch (error) {
        if (error instanceof UpstreamError) {
          logFailure(job, error);
          throw error;
        }
        if (deadline.signal.aborted && !context.signal?.aborted) {
          const journaled = job.requestId !== undefined && !job.submitting;
          const note = journaled
            ? '; it goes on upstream and the next request resumes it'
            : job.submitting
              ? '; the submit was on the wire, so it may have been accepted and billed'
              : '';
          const timeout = new UpstreamTimeoutError({
            detail: `the upstream job took longer than ${timeoutMs} ms (UPSTREAM_TIMEOUT_MS)${note}`,
            retryAfterSeconds: RESUME_AFTER_SECONDS,
            ...(job.requestId ? { requestId: job.requestId } : {}),
          });
          logFailure(job, timeout);
          throw timeout;
        }
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      // Graceful first: a submit on the wire may be a paid job whose answer we want. Then forced,
      // so shutdown is bounded; v2 jobs cut off here are journaled and resume after the restart.
      await Promise.all(
        owned.map(async (agent) => {
          let timer: NodeJS.Timeout | undefined;
          const graceful = agent.close().then(() => true);
          const late = new Promise<false>((resolve) => {
            timer = setTimeout(() => resolve(false), CLOSE_GRACE_MS);
          });
          const closed = await Promise.race([graceful, late]);
          clearTimeout(timer);
          if (!closed) await agent.destroy();
        }),
      );
    },
  };
}
