import { describe, expect, it } from 'vitest';
import {
  fieldNamed,
  mapUpstreamResponse,
  readBody,
  sanitizeReason,
  UpstreamAuthError,
  UpstreamInvalidRequestError,
  UpstreamRejectedError,
  UpstreamUnavailableError,
  type Headers,
  type UpstreamPhase,
} from '../../../../src/engines/segmind/errors.js';
import { PROBLEM_TYPE_BASE } from '../../../../src/errors.js';

const NOW = Date.parse('2026-11-24T12:00:00Z');
const KEY = 'SG_0123456789abcdef';
const JSON_TYPE = { 'content-type': 'application/json' };
const TEXT_TYPE = { 'content-type': 'text/plain; charset=utf-8' };
const HTML_TYPE = { 'content-type': 'text/html' };
const HTML_PAGE = '<!DOCTYPE html><html><head><title>405 Not Allowed</title></head><body><script>x()</script></body></html>';
const FAILED = (error: string) => JSON.stringify({ status: 'FAILED', error, metrics: {}, request_id: 'req-1' });

const map = (status: number, body: string | undefined, headers: Headers, phase: UpstreamPhase = 'submit') =>
  mapUpstreamResponse(status, body, headers, { phase, nowMs: NOW, secrets: [KEY], what: 'POST /v2/clarity-upscaler' });

type ErrorClass = abstract new (...args: never[]) => Error;

interface FailRow {
  name: string;
  phase: UpstreamPhase;
  status: number;
  body: string | undefined;
  headers: Headers;
  error: ErrorClass;
  httpStatus: number;
  code: string;
  reason?: string;
  param?: string;
  detail: RegExp;
}

/** Every final answer of the UPSTREAM.md table, in each body shape the upstream uses. */
const FAILS: FailRow[] = [
  { name: '400 JSON naming a field', phase: 'submit', status: 400, body: '{"error":"Invalid value for scale_factor"}', headers: JSON_TYPE, error: UpstreamInvalidRequestError, httpStatus: 422, code: 'UPSTREAM_INVALID_REQUEST', param: 'scale_factor', detail: /refused the payload: Invalid value for scale_factor/ },
  { name: '400 naming downscaling_resolution (not downscaling)', phase: 'submit', status: 400, body: '{"error":"downscaling_resolution too large"}', headers: JSON_TYPE, error: UpstreamInvalidRequestError, httpStatus: 422, code: 'UPSTREAM_INVALID_REQUEST', param: 'downscaling_resolution', detail: /downscaling_resolution too large/ },
  { name: '400 plain text', phase: 'submit', status: 400, body: 'Bad Request: image could not be decoded', headers: TEXT_TYPE, error: UpstreamInvalidRequestError, httpStatus: 422, code: 'UPSTREAM_INVALID_REQUEST', detail: /image could not be decoded/ },
  { name: '400 FastAPI-style list', phase: 'submit', status: 400, body: '{"detail":[{"loc":["body","seed"],"msg":"not an integer"}]}', headers: JSON_TYPE, error: UpstreamInvalidRequestError, httpStatus: 422, code: 'UPSTREAM_INVALID_REQUEST', param: 'seed', detail: /not an integer/ },
  { name: '401 JSON', phase: 'submit', status: 401, body: '{"error":"Invalid API key"}', headers: JSON_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'key', detail: /refused the API key \(HTTP 401\): check SEGMIND_API_KEY/ },
  { name: '401 on a poll', phase: 'poll', status: 401, body: '{"error":"Invalid API key"}', headers: JSON_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'key', detail: /API key/ },
  { name: '403 model not permitted', phase: 'submit', status: 403, body: '{"error":"Forbidden"}', headers: JSON_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'forbidden', detail: /does not permit .* \(HTTP 403\)/ },
  { name: '406 plain text Insufficient credits', phase: 'submit', status: 406, body: 'Insufficient credits', headers: TEXT_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'credits', detail: /out of credits or over its spend limit \(HTTP 406\).*upstream said: Insufficient credits/ },
  { name: '406 spend limit', phase: 'submit', status: 406, body: 'Monthly spend limit reached', headers: TEXT_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'credits', detail: /spend limit reached/ },
  { name: '406 Invalid content type', phase: 'submit', status: 406, body: 'Invalid content type', headers: TEXT_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'protocol', detail: /HTTP 406 \(Invalid content type\).*SEGMIND_BASE_URL/ },
  { name: '406 without Content-Type', phase: 'submit', status: 406, body: 'Insufficient credits', headers: {}, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'credits', detail: /Insufficient credits/ },
  { name: '410 model retired', phase: 'submit', status: 410, body: '{"error":"gone"}', headers: JSON_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'retired', detail: /retired .* \(HTTP 410\)/ },
  { name: '404 on submit: unknown model', phase: 'submit', status: 404, body: '{"error":"Model not found"}', headers: JSON_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'protocol', detail: /POST \/v2\/clarity-upscaler with HTTP 404 \(Model not found\).*SEGMIND_BASE_URL/ },
  { name: '405 HTML page', phase: 'submit', status: 405, body: HTML_PAGE, headers: HTML_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'protocol', detail: /HTTP 405 and an HTML page/ },
  { name: '405 HTML without Content-Type', phase: 'submit', status: 405, body: HTML_PAGE, headers: {}, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'protocol', detail: /an HTML page/ },
  { name: '302 redirect (never followed)', phase: 'submit', status: 302, body: '', headers: { location: 'https://elsewhere.example' }, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'protocol', detail: /HTTP 302/ },
  { name: '501', phase: 'submit', status: 501, body: 'Not Implemented', headers: TEXT_TYPE, error: UpstreamAuthError, httpStatus: 502, code: 'UPSTREAM_AUTH', reason: 'protocol', detail: /HTTP 501/ },
  { name: '413 payload too large', phase: 'submit', status: 413, body: '<html>Request Entity Too Large</html>', headers: HTML_TYPE, error: UpstreamInvalidRequestError, httpStatus: 422, code: 'UPSTREAM_INVALID_REQUEST', param: 'image', detail: /too large \(HTTP 413\)/ },
  { name: '422 FAILED on a poll', phase: 'poll', status: 422, body: FAILED('NSFW content detected'), headers: JSON_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /could not process this image: NSFW content detected/ },
  { name: '200 FAILED on a poll', phase: 'poll', status: 200, body: FAILED('NSFW content detected'), headers: JSON_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /NSFW content detected/ },
  { name: '422 FAILED on the result', phase: 'result', status: 422, body: FAILED('bad input'), headers: JSON_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /bad input/ },
  { name: '200 FAILED on a submit', phase: 'submit', status: 200, body: FAILED('blocked'), headers: JSON_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /blocked/ },
  { name: 'FAILED without a reason', phase: 'poll', status: 422, body: '{"status":"FAILED"}', headers: JSON_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /no reason given/ },
  { name: '422 plain text', phase: 'poll', status: 422, body: 'Unprocessable', headers: TEXT_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /Unprocessable/ },
  { name: 'lower-case failed', phase: 'poll', status: 200, body: '{"status":"failed","error":"x"}', headers: JSON_TYPE, error: UpstreamRejectedError, httpStatus: 422, code: 'UPSTREAM_REJECTED', detail: /: x$/ },
  { name: '404 on the output download', phase: 'download', status: 404, body: '<Error>NoSuchKey</Error>', headers: { 'content-type': 'application/xml' }, error: UpstreamUnavailableError, httpStatus: 503, code: 'UPSTREAM_UNAVAILABLE', detail: /output image could not be downloaded \(HTTP 404\)/ },
  { name: '403 on the output download is not our key', phase: 'download', status: 403, body: 'AccessDenied', headers: TEXT_TYPE, error: UpstreamUnavailableError, httpStatus: 503, code: 'UPSTREAM_UNAVAILABLE', detail: /HTTP 403/ },
];

describe('mapUpstreamResponse: final answers', () => {
  it.each(FAILS)('$name → $httpStatus $code', (row) => {
    const verdict = map(row.status, row.body, row.headers, row.phase);
    expect(verdict.kind).toBe('fail');
    if (verdict.kind !== 'fail') return;
    const error = verdict.error;
    expect(error).toBeInstanceOf(row.error);
    expect(error.status).toBe(row.httpStatus);
    expect(error.code).toBe(row.code);
    expect(error.type).toBe(PROBLEM_TYPE_BASE + row.code.toLowerCase());
    expect(error.upstreamStatus).toBe(row.status);
    expect(error.detail).toMatch(row.detail);
    expect(error.param).toBe(row.param);
    if (row.reason) expect((error as UpstreamAuthError).reason).toBe(row.reason);
    // A public detail never carries markup, nor the key.
    expect(error.detail).not.toMatch(/<|>/);
    expect(error.detail).not.toContain(KEY);
  });
});

describe('mapUpstreamResponse: answers worth another attempt', () => {
  it.each([
    { name: '429 with Retry-After seconds', status: 429, headers: { 'retry-after': '7' }, retryAfterMs: 7000, rateLimited: true },
    { name: '429 with Retry-After date', status: 429, headers: { 'retry-after': 'Tue, 24 Nov 2026 12:00:30 GMT' }, retryAfterMs: 30_000, rateLimited: true },
    { name: '429 with x-rate-limit-reset-at-utc', status: 429, headers: { 'x-rate-limit-reset-at-utc': '2026-11-24T12:00:04Z' }, retryAfterMs: 4000, rateLimited: true },
    { name: '429 with both: Retry-After wins', status: 429, headers: { 'retry-after': '2', 'x-rate-limit-reset-at-utc': '2026-11-24T12:00:09Z' }, retryAfterMs: 2000, rateLimited: true },
    { name: '429 with neither', status: 429, headers: {}, retryAfterMs: undefined, rateLimited: true },
    { name: '429 with an unreadable Retry-After', status: 429, headers: { 'retry-after': 'later' }, retryAfterMs: undefined, rateLimited: true },
    { name: '500', status: 500, headers: JSON_TYPE, retryAfterMs: undefined, rateLimited: false },
    { name: '502', status: 502, headers: JSON_TYPE, retryAfterMs: undefined, rateLimited: false },
    { name: '503 with Retry-After', status: 503, headers: { 'retry-after': '3' }, retryAfterMs: 3000, rateLimited: false },
    { name: '504', status: 504, headers: JSON_TYPE, retryAfterMs: undefined, rateLimited: false },
    { name: '408', status: 408, headers: {}, retryAfterMs: undefined, rateLimited: false },
  ])('$name', ({ status, headers, retryAfterMs, rateLimited }) => {
    for (const phase of ['submit', 'poll', 'result', 'download'] as const) {
      const verdict = map(status, '{"error":"busy"}', headers, phase);
      expect(verdict).toMatchObject({ kind: 'retry', status, rateLimited, retryAfterMs });
    }
  });

  it.each([
    ['plain text 500', 500, 'Internal Server Error', TEXT_TYPE, 'Internal Server Error'],
    ['HTML 502', 502, '<html><body><h1>502 Bad Gateway</h1></body></html>', HTML_TYPE, 'HTTP 502 with an HTML page'],
    ['empty 504', 504, '', {}, 'HTTP 504'],
    ['truncated JSON 500', 500, '{"error": "Internal', JSON_TYPE, '{"error": "Internal'],
  ])('%s is retried, its reason read safely', (_name, status, body, headers, reason) => {
    expect(map(status, body, headers)).toMatchObject({ kind: 'retry', status, reason });
  });
});

describe('mapUpstreamResponse: success and expiry', () => {
  it('a submit answer is ok with its JSON', () => {
    const body = { request_id: 'r1', status: 'QUEUED', status_url: 'https://x/s', response_url: 'https://x/r' };
    expect(map(200, JSON.stringify(body), JSON_TYPE)).toEqual({ kind: 'ok', json: body });
  });

  it('a status answer in progress is ok', () => {
    expect(map(200, '{"status":"PROCESSING","metrics":{}}', JSON_TYPE, 'poll')).toMatchObject({ kind: 'ok', json: { status: 'PROCESSING' } });
  });

  it('an image body (v1, download) is ok and never decoded as text', () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]);
    expect(mapUpstreamResponse(200, png, { 'content-type': 'image/png' }, { phase: 'submit', nowMs: NOW })).toEqual({ kind: 'ok', json: undefined });
    expect(readBody(png, { 'content-type': 'image/png' })).toEqual({ json: undefined, text: undefined, html: false });
  });

  it('a 200 that claims JSON but is not stays unparsed', () => {
    expect(map(200, 'OK', JSON_TYPE)).toEqual({ kind: 'ok', json: undefined });
  });

  it.each(['poll', 'result'] as const)('404 on a %s means the id is unknown or expired', (phase) => {
    expect(map(404, '{"error":"Request req-1 not found"}', JSON_TYPE, phase)).toEqual({ kind: 'expired', reason: 'Request req-1 not found' });
  });
});

describe('public reasons', () => {
  it('never carry the key, even when the upstream echoes it', () => {
    const verdict = map(400, JSON.stringify({ error: `bad request for key ${KEY}` }), JSON_TYPE);
    expect(verdict.kind === 'fail' && verdict.error.detail).toBe('the upstream refused the payload: bad request for key [redacted]');
  });

  it('cut any SG_ key-like token, not only the configured one', () => {
    expect(sanitizeReason('key SG_fedcba9876543210 refused', [])).toBe('key [redacted] refused');
  });

  it('are folded to one line and truncated', () => {
    const reason = sanitizeReason(`line one\n\tline two\u0000 ${'x'.repeat(500)}`);
    expect(reason.startsWith('line one line two x')).toBe(true);
    expect(reason.length).toBeLessThanOrEqual(200);
    expect(reason.endsWith('…')).toBe(true);
  });

  it('name the clarity field they mention, whole words only', () => {
    expect(fieldNamed('Invalid value for tiling_width')).toBe('tiling_width');
    expect(fieldNamed('downscaling must be a boolean')).toBe('downscaling');
    expect(fieldNamed('bad seedling')).toBeUndefined();
  });
});
