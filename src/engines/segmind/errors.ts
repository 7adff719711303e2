/**
 * What the Segmind engine answers with, and the one pure function that reads an upstream answer
 * (`mapUpstreamResponse`), following the table in `../shared/UPSTREAM.md`. Upstream bodies may be
 * JSON, plain text or an HTML page: they are parsed only when they parse, and only a sanitized,
 * truncated reason (never HTML, never the key) reaches a public `detail`.
 */
import { CdnError, type CdnErrorOptions } from '../../errors.js';
import { PARAMS } from '../../params/table.js';
import { parseResetAt, parseRetryAfter } from './retry.js';

/** Fields every Segmind error may carry, for the log and for callers that branch on them. */
interface UpstreamErrorOptions extends CdnErrorOptions {
  /** HTTP status the upstream answered, when there was an answer. */
  upstreamStatus?: number;
  /** The upstream job, when one was accepted. */
  requestId?: string;
}

/** The base of the engine's errors: the upstream's status and job id ride along for the log. */
export abstract class UpstreamError extends CdnError {
  readonly upstreamStatus?: number;
  readonly requestId?: string;
  constructor(options: UpstreamErrorOptions) {
    super(options);
    if (options.upstreamStatus !== undefined) this.upstreamStatus = options.upstreamStatus;
    if (options.requestId !== undefined) this.requestId = options.requestId;
  }
}

/** The upstream ran the job and it FAILED (422, or 200 with a FAILED body): content block, bad input. */
export class UpstreamRejectedError extends UpstreamError {
  readonly status = 422;
  readonly code = 'UPSTREAM_REJECTED';
  readonly title = 'Upstream rejected the image';
}

/** The upstream refused the payload itself (its 400). `param` names the field when its reason does. */
export class UpstreamInvalidRequestError extends UpstreamError {
  readonly status = 422;
  readonly code = 'UPSTREAM_INVALID_REQUEST';
  readonly title = 'Upstream refused the request';
}

/**
 * Why an operator must act:
 * - `key`: 401, the key is missing or invalid;
 * - `forbidden`: 403, the model is not permitted for this key;
 * - `credits`: 406, out of credits or over a spend limit;
 * - `retired`: 410, the model is retired;
 * - `protocol`: the URL does not speak this API (404 on submit, 405, 406 `Invalid content type`,
 *   a redirect, any status the API does not document): check `SEGMIND_BASE_URL`.
 */
export type UpstreamAuthReason = 'key' | 'forbidden' | 'credits' | 'retired' | 'protocol';

/**
 * The upstream will not serve this deployment until an operator acts. Never retried: the same
 * call gets the same answer. Served as 502, logged at error.
 */
export class UpstreamAuthError extends UpstreamError {
  readonly status = 502;
  readonly code = 'UPSTREAM_AUTH';
  readonly title = 'Upstream refused this deployment';
  readonly reason: UpstreamAuthReason;
  constructor(options: UpstreamErrorOptions & { reason: UpstreamAuthReason }) {
    super(options);
    this.reason = options.reason;
  }
}

/**
 * The upstream stayed rate-limited, failing or unreachable through the retries, or a call broke in
 * a way that retrying could pay twice for (`ambiguous`): a submit whose answer never arrived.
 */
export class UpstreamUnavailableError extends UpstreamError {
  readonly status = 503;
  readonly code = 'UPSTREAM_UNAVAILABLE';
  readonly title = 'Upstream unavailable';
  /** True when a submission may have been accepted (and billed) though its answer was lost. */
  readonly ambiguous: boolean;
  constructor(options: UpstreamErrorOptions & { ambiguous?: boolean }) {
    super(options);
    this.ambiguous = options.ambiguous ?? false;
  }
}

/** One job outlived `UPSTREAM_TIMEOUT_MS`. A journaled job goes on upstream; the next request resumes it. */
export class UpstreamTimeoutError extends UpstreamError {
  readonly status = 504;
  readonly code = 'UPSTREAM_TIMEOUT';
  readonly title = 'Upstream timed out';
}

// ---------------------------------------------------------------------------------------------
// Reading an answer

export type Headers = Record<string, string | string[] | undefined>;

/** Which call the answer is to: a status means different things to each (404 above all). */
export type UpstreamPhase = 'submit' | 'poll' | 'result' | 'download';

export interface MapOptions {
  phase: UpstreamPhase;
  /** Clock for `Retry-After` dates, epoch ms. */
  nowMs: number;
  /** Strings that must never reach a detail (the API key); `SG_…` keys are cut regardless. */
  secrets?: readonly string[];
  /** `POST /v2/clarity-upscaler`, for operator-facing details. */
  what?: string;
}

export type UpstreamVerdict =
  /** A 2xx that is not a FAILED job; `json` is the body when it was JSON. */
  | { kind: 'ok'; json: unknown }
  /** Worth another attempt (429, 5xx, 408); `retryAfterMs` is the upstream's own hint, if any. */
  | { kind: 'retry'; status: number; rateLimited: boolean; retryAfterMs: number | undefined; reason: string }
  /** 404 to a poll or result: the request id is unknown or expired (results are kept 1 hour). */
  | { kind: 'expired'; reason: string }
  /** Final: retrying gets the same answer. */
  | { kind: 'fail'; error: UpstreamError };

const MAX_REASON = 200;
/** Segmind keys: `SG_` + 16 hex; cut any `SG_` token of key-like length, in case a format changes. */
const KEY_PATTERN = /SG_[A-Za-z0-9]{8,}/g;

/** A reason fit for a public detail: secrets cut, control characters and runs of space folded, truncated. */
export function sanitizeReason(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  out = out
    .replace(KEY_PATTERN, '[redacted]')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return out.length > MAX_REASON ? `${out.slice(0, MAX_REASON - 1)}…` : out;
}

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export interface ReadBody {
  json: unknown;
  /** The body as text when it is text (JSON included); undefined for binary bodies. */
  text: string | undefined;
  html: boolean;
}

/**
 * Reads a body without trusting its `Content-Type`: HTML is recognized (and never echoed), JSON is
 * parsed only when it parses, binary bodies (images) are left alone.
 */
export function readBody(body: Buffer | string | undefined, headers: Headers): ReadBody {
  const type = (header(headers, 'content-type') ?? '').toLowerCase();
  if (body === undefined || body.length === 0) return { json: undefined, text: '', html: false };
  const binary = /^(image|video|audio)\/|octet-stream/.test(type);
  if (binary) return { json: undefined, text: undefined, html: false };
  const text = typeof body === 'string' ? body : body.toString('utf8');
  const head = text.trimStart().slice(0, 64).toLowerCase();
  const html = type.includes('html') || /^<(!doctype|html|head|body|\?xml|title)/.test(head);
  if (html) return { json: undefined, text, html: true };
  let json: unknown;
  if (head.startsWith('{') || head.startsWith('[') || type.includes('json')) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  return { json, text, html: false };
}

/** The upstream's own words, public-safe: `error` / `message` / `detail` of a JSON body, or plain text. */
function reasonOf(read: ReadBody, status: number, secrets: readonly string[]): string {
  if (read.html) return `HTTP ${status} with an HTML page`;
  const obj = typeof read.json === 'object' && read.json !== null ? (read.json as Record<string, unknown>) : undefined;
  if (obj) {
    for (const field of ['error', 'message', 'detail']) {
      const value = obj[field];
      if (typeof value === 'string' && value.trim() !== '') return sanitizeReason(value, secrets);
      // FastAPI-style validation errors: [{ loc: [..., 'field'], msg }].
      if (Array.isArray(value) && value.length > 0) return sanitizeReason(JSON.stringify(value), secrets);
    }
    return `HTTP ${status}`;
  }
  if (read.text !== undefined && read.text.trim() !== '') return sanitizeReason(read.text, secrets);
  return `HTTP ${status}`;
}

const CLARITY_FIELDS = Object.entries(PARAMS)
  .filter(([, spec]) => spec.group === 'clarity')
  .map(([name]) => name)
  // Longest first, so `downscaling_resolution` wins over `downscaling`.
  .sort((a, b) => b.length - a.length);

/** The clarity field an upstream reason names, if any (`Invalid value for scale_factor`). */
export function fieldNamed(reason: string): string | undefined {
  return CLARITY_FIELDS.find((name) => new RegExp(`(^|[^a-z_])${name}([^a-z_]|$)`).test(reason));
}

function retryHints(headers: Headers, nowMs: number): number | undefined {
  return (
    parseRetryAfter(header(headers, 'retry-after'), nowMs) ??
    parseResetAt(header(headers, 'x-rate-limit-reset-at-utc'), nowMs)
  );
}

const AUTH_DETAIL: Record<Exclude<UpstreamAuthReason, 'protocol'>, string> = {
  key: 'the upstream refused the API key (HTTP 401): check SEGMIND_API_KEY',
  forbidden: 'the upstream does not permit the Clarity Upscaler model for this API key (HTTP 403)',
  credits: 'the upstream account is out of credits or over its spend limit (HTTP 406): top it up or raise the limit',
  retired: 'the upstream has retired the Clarity Upscaler model (HTTP 410)',
};

/**
 * The one reading of an upstream answer: status, body and headers → what to do. Pure.
 * FAILED is judged by the body's `status` whatever the HTTP code (422 or 200).
 */
export function mapUpstreamResponse(
  status: number,
  body: Buffer | string | undefined,
  headers: Headers,
  options: MapOptions,
): UpstreamVerdict {
  const { phase, nowMs } = options;
  const secrets = options.secrets ?? [];
  const what = options.what ?? (phase === 'download' ? 'the output download' : `the ${phase}`);
  const read = readBody(body, headers);
  const reason = reasonOf(read, status, secrets);
  const obj = typeof read.json === 'object' && read.json !== null ? (read.json as Record<string, unknown>) : undefined;
  const requestId = typeof obj?.request_id === 'string' ? sanitizeReason(obj.request_id, secrets) : undefined;
  const ids = requestId ? { requestId } : {};
  const failedBody = typeof obj?.status === 'string' && obj.status.toUpperCase() === 'FAILED';

  if (phase === 'download') {
    if (status >= 200 && status < 300) return { kind: 'ok', json: read.json };
    if (status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505)) {
      return { kind: 'retry', status, rateLimited: status === 429, retryAfterMs: retryHints(headers, nowMs), reason };
    }
    return {
      kind: 'fail',
      error: new UpstreamUnavailableError({
        detail: `the upstream's output image could not be downloaded (HTTP ${status})`,
        upstreamStatus: status,
        retryAfterSeconds: 60,
      }),
    };
  }

  // A FAILED job is final, whichever status carries it (422, or 200 as some gateways serve it).
  if (failedBody || status === 422) {
    const why = obj && failedBody && reason === `HTTP ${status}` ? 'no reason given' : reason;
    return {
      kind: 'fail',
      error: new UpstreamRejectedError({
        detail: `the upstream could not process this image: ${why}`,
        upstreamStatus: status,
        ...ids,
      }),
    };
  }
  if (status >= 200 && status < 300) return { kind: 'ok', json: read.json };

  if (status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505)) {
    return { kind: 'retry', status, rateLimited: status === 429, retryAfterMs: retryHints(headers, nowMs), reason };
  }

  if (status === 404 && phase !== 'submit') return { kind: 'expired', reason };

  if (status === 400 && phase === 'submit') {
    const param = fieldNamed(reason);
    return {
      kind: 'fail',
      error: new UpstreamInvalidRequestError({
        detail: `the upstream refused the payload: ${reason}`,
        upstreamStatus: status,
        ...(param ? { param } : {}),
      }),
    };
  }

  if (status === 413 && phase === 'submit') {
    return {
      kind: 'fail',
      error: new UpstreamInvalidRequestError({
        detail: 'the upstream refused the payload as too large (HTTP 413); try downscaling=true or a smaller source',
        upstreamStatus: status,
        param: 'image',
      }),
    };
  }

  const authReason: UpstreamAuthReason | undefined =
    status === 401
      ? 'key'
      : status === 403
        ? 'forbidden'
        : status === 406
          ? /content.?type/i.test(read.text ?? '')
            ? 'protocol'
            : 'credits'
          : status === 410
            ? 'retired'
            : undefined;
  if (authReason && authReason !== 'protocol') {
    // The upstream's words add the specifics (which spend limit) when they are plain text.
    const extra = reason !== `HTTP ${status}` && !read.html ? ` (upstream said: ${reason})` : '';
    return {
      kind: 'fail',
      error: new UpstreamAuthError({ reason: authReason, detail: AUTH_DETAIL[authReason] + extra, upstreamStatus: status }),
    };
  }
  return {
    kind: 'fail',
    error: new UpstreamAuthError({
      reason: 'protocol',
      detail: `the upstream answered ${what} with HTTP ${status}${read.html ? ' and an HTML page' : reason !== `HTTP ${status}` ? ` (${reason})` : ''}: it does not speak the Segmind API as expected; check SEGMIND_BASE_URL`,
      upstreamStatus: status,
    }),
  };
}
