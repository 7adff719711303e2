/**
 * Webhook delivery for the jobs API: when a job reaches a final status, its JSON is POSTed to the
 * `webhook` URL the submitter gave, signed, retried with backoff, and the outcome is recorded on
 * the job through `onUpdate`.
 *
 * Delivery is at least once. A receiver may see the same delivery twice (an answer lost on the
 * way back, a shutdown during an attempt), so it should deduplicate on `x-clarity-delivery`, which
 * is the same on every attempt of one send, or on the job id and status in the body.
 *
 * Signature (Stripe's scheme): `x-clarity-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key,
 * "<t>.<body>")>`. The timestamp is signed, so a receiver can refuse a replayed old delivery; it is
 * fresh on every attempt while the body bytes stay the same. The first SIGNING_KEY signs; without
 * one, deliveries go out unsigned and receivers have only the secrecy of their URL.
 *
 * Requests go through the SSRF-guarded dispatcher: the URL is chosen by whoever submits a job, so
 * it must not reach the metadata service or the private network. No redirect is followed (a 3xx
 * is a failure): each hop would be a new, unchecked destination for a signed body.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import { parseRetryAfter } from '../engines/segmind/retry.js';
import type { Logger } from '../logger.js';
import { errorCodeOf } from '../net-errors.js';
import { ADDRESS_REFUSED, findAddressRefusal } from '../security/ssrf.js';

export const WEBHOOK_SIGNATURE_HEADER = 'x-clarity-signature';
/** A uuid, the same on every attempt of one delivery: receivers deduplicate on it. */
export const WEBHOOK_DELIVERY_HEADER = 'x-clarity-delivery';
export const WEBHOOK_USER_AGENT = 'clarity-cdn-webhook';

export type WebhookStatus = 'pending' | 'delivered' | 'failed';

export interface WebhookDelivery {
  /** The URL as given (it may hold a token: it is stored with the job, never logged). */
  url: string;
  /** `pending` while attempts remain (or when a shutdown stopped them), then `delivered` or `failed`. */
  status: WebhookStatus;
  /** Attempts made so far; 0 when the URL or the body was refused before any request. */
  attempts: number;
  /** Why the last attempt failed: a status (`HTTP 503`) or an error code, never the receiver's body. Cleared on delivery. */
  lastError?: string;
  /** When a 2xx answer arrived, epoch ms. */
  deliveredAt?: number;
}

export interface WebhookSenderOptions {
  /** The SSRF-guarded agent (`createGuardedAgent`); tests on loopback pass one with `allowPrivate: true`. Not closed by `close()`. */
  dispatcher: Dispatcher;
  /** The first SIGNING_KEY. Without one, deliveries are sent unsigned. */
  signingKey?: string;
  /** Attempts per delivery, the first included. Default 6. */
  maxAttempts?: number;
  /** Backoff before the first retry, ms; doubled on each further retry, with full jitter. Default 1000. */
  baseDelayMs?: number;
  /** Ceiling of the backoff and of a receiver's `Retry-After` (read on 429 and 503), ms. Default 60 000. */
  maxDelayMs?: number;
  /** Longest wait for one attempt's answer (connect, send, status line), ms. Default 10 000. */
  timeoutMs?: number;
  /** Uniform in [0, 1): the jitter. Default `Math.random`. */
  random?: () => number;
  /** The clock, epoch ms: signature timestamps, `deliveredAt`, `Retry-After` dates. Default `Date.now`. */
  now?: () => number;
  /** The backoff wait; may resolve early when `signal` aborts. Default: a timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  logger: Logger;
}

export interface WebhookSender {
  /**
   * Delivers `body` (JSON-serialised once; the same bytes every attempt) to `url`; `onUpdate` is
   * called (and awaited) after every attempt with the delivery record, so the caller can persist
   * it (also once when the URL or body is refused before any attempt). Resolves with the final
   * record; never rejects. When `signal` aborts, the attempt in flight is abandoned and the send
   * resolves with the record as it stands (`pending`).
   */
  send(
    url: string,
    body: unknown,
    onUpdate?: (delivery: WebhookDelivery) => void | Promise<void>,
    signal?: AbortSignal,
  ): Promise<WebhookDelivery>;
  /**
   * Stops retries in progress (shutdown): a send waiting for its next attempt resolves at once
   * with status `pending`; an attempt in flight may finish (within `timeoutMs`) and be recorded,
   * but none follows. Sends started after `close()` make no attempt and resolve `pending`.
   * Resolves when every send has settled.
   */
  close(): Promise<void>;
}

export interface WebhookRetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * The wait before retry number `attempt + 1` (`attempt` counts from 0: the first retry). Pure, in
 * the shape of `engines/segmind/retry.ts`'s `retryDelay`, with two differences that suit a
 * receiver we do not know: the backoff has full jitter (uniform in [0, nominal]; many deliveries
 * failing together against one receiver that went down spread out the most), and a receiver's
 * `Retry-After` is capped at `maxDelayMs`, because a hostile or broken receiver must not park a
 * delivery for days.
 */
export function webhookRetryDelay(
  attempt: number,
  retryAfterMs: number | undefined,
  policy: WebhookRetryPolicy,
  random: () => number,
): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs)) {
    return Math.min(policy.maxDelayMs, Math.max(0, Math.ceil(retryAfterMs)));
  }
  const nominal = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(r * nominal);
}

const SCHEMES = new Set(['http:', 'https:']);

/**
 * Checks a webhook URL the way `send` will: absolute, http(s), without credentials (undici drops
 * them silently, so a receiver counting on basic auth would get unauthenticated posts). The jobs
 * API can call it at submission to answer a 400 rather than record a failed delivery later.
 */
export function parseWebhookUrl(raw: string): { ok: true; url: URL } | { ok: false; reason: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'not an absolute URL' };
  }
  if (!SCHEMES.has(url.protocol)) return { ok: false, reason: `${url.protocol} URLs are not supported (http: or https: only)` };
  if (url.username || url.password) return { ok: false, reason: 'the URL may not carry credentials' };
  return { ok: true, url };
}

function hmacHex(key: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', key).update(`${timestampSeconds}.${body}`).digest('hex');
}

/** Signature header value for `body` at `timestampSeconds`: `t=<unix seconds>,v1=<hex HMAC-SHA256(key, `${t}.${body}`)>`. */
export function signWebhook(body: string, key: string, timestampSeconds: number): string {
  const t = Math.floor(timestampSeconds);
  return `t=${t},v1=${hmacHex(key, t, body)}`;
}

/** More `v1=` entries than this and the header is refused: nothing legitimate sends so many. */
const MAX_SIGNATURES = 8;

/**
 * For receivers: true when one of `keys` signed `body` within `toleranceSeconds` (default 300) of
 * `nowSeconds` (default: the clock), either way (a timestamp from the future is as suspect as an
 * old one). The header holds one `t=` and one or more `v1=` (several are accepted, as Stripe does,
 * for a sender that signs with two keys during a rotation). Comparison is constant-time over
 * fixed-length digests, and every key is tried whatever matched, as in `security/signature.ts`.
 */
export function verifyWebhook(
  body: string,
  header: string,
  keys: readonly string[],
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  const tolerance = options.toleranceSeconds ?? 300;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  let timestamp: number | undefined;
  const given: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq === -1) return false;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name === 't') {
      if (timestamp !== undefined || !/^\d{1,12}$/.test(value)) return false;
      timestamp = Number(value);
    } else if (name === 'v1') {
      if (!/^[0-9a-f]{64}$/.test(value)) return false;
      given.push(Buffer.from(value, 'hex'));
    }
    // Other schemes (a future `v2=`) are skipped, so a sender can add one without breaking receivers.
  }
  if (timestamp === undefined || given.length === 0 || given.length > MAX_SIGNATURES) return false;
  if (!(Math.abs(now - timestamp) <= tolerance)) return false;
  let valid = false;
  for (const key of keys) {
    const expected = createHmac('sha256', key).update(`${timestamp}.${body}`).digest();
    for (const signature of given) valid = timingSafeEqual(expected, signature) || valid;
  }
  return valid;
}

/** What one attempt came to. */
type Outcome =
  | { kind: 'delivered' }
  | { kind: 'retry'; error: string; retryAfterMs?: number }
  | { kind: 'fatal'; error: string }
  /** The caller's signal aborted the attempt: its outcome is unknown. */
  | { kind: 'abandoned' };

/** Stops reading a body we do not use; undici reports that as an error event, expected here. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

const one = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/** The error's code only: a message can name an internal host or echo the URL's token. */
function codeOf(error: unknown): string {
  const code = errorCodeOf(error);
  return code !== undefined && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'ERROR';
}

/** Statuses worth another attempt: the receiver is overloaded, down or slow, not refusing. */
const isRetryableStatus = (status: number) => status === 408 || status === 429 || status >= 500;

function checkOptions(options: WebhookSenderOptions): void {
  const check = (name: string, value: number | undefined, valid: (v: number) => boolean, expected: string) => {
    if (value !== undefined && !valid(value)) {
      throw new RangeError(`webhook sender: expected ${name} to be ${expected}, got ${value}`);
    }
  };
  check('maxAttempts', options.maxAttempts, (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1');
  check('baseDelayMs', options.baseDelayMs, (v) => Number.isFinite(v) && v >= 0, 'a number of ms ≥ 0');
  check('maxDelayMs', options.maxDelayMs, (v) => Number.isFinite(v) && v >= 0, 'a number of ms ≥ 0');
  check('timeoutMs', options.timeoutMs, (v) => Number.isFinite(v) && v > 0, 'a number of ms > 0');
}

/** The default backoff wait: a timer that ends early, without an error, when `signal` aborts. */
const sleepTimer = (ms: number, signal?: AbortSignal) =>
  delay(ms, undefined, signal ? { signal } : undefined).catch(() => undefined);

/** Resolves when `signal` aborts (at once if it has); `cleanup` removes the listener. */
function whenAborted(signal: AbortSignal): { promise: Promise<void>; cleanup: () => void } {
  if (signal.aborted) return { promise: Promise.resolve(), cleanup: () => undefined };
  let onAbort!: () => void;
  const promise = new Promise<void>((resolve) => {
    onAbort = resolve;
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return { promise, cleanup: () => signal.removeEventListener('abort', onAbort) };
}

export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  checkOptions(options);
  const { dispatcher, signingKey, logger } = options;
  const maxAttempts = options.maxAttempts ?? 6;
  const policy: WebhookRetryPolicy = { baseDelayMs: options.baseDelayMs ?? 1000, maxDelayMs: options.maxDelayMs ?? 60_000 };
  const timeoutMs = options.timeoutMs ?? 10_000;
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? sleepTimer;

  /** Set by `close()`: no attempt starts after it. */
  let closing = false;
  /** The stop signal of every send under way; `close()` aborts them all, ending their backoff waits. */
  const stops = new Set<AbortController>();
  const inFlight = new Set<Promise<WebhookDelivery>>();

  /** One POST, reduced to what the retry loop decides on. */
  async function attempt(url: URL, payload: string, bytes: Buffer, deliveryId: string, callerSignal: AbortSignal | undefined): Promise<Outcome> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': WEBHOOK_USER_AGENT,
      [WEBHOOK_DELIVERY_HEADER]: deliveryId,
    };
    if (signingKey) headers[WEBHOOK_SIGNATURE_HEADER] = signWebhook(payload, signingKey, Math.floor(now() / 1000));

    // One controller per attempt, fed by a timer and the caller's signal; both are removed as
    // soon as the attempt ends, so nothing outlives it.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error('timeout')), timeoutMs);
    const onCallerAbort = () => controller.abort(callerSignal?.reason);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      let res: Dispatcher.ResponseData;
      try {
        // No redirect interceptor on the dispatcher: undici answers a 3xx as it is.
        res = await request(url, { method: 'POST', headers, body: bytes, dispatcher, signal: controller.signal });
      } catch (error) {
        if (callerSignal?.aborted) return { kind: 'abandoned' };
        if (controller.signal.aborted) return { kind: 'retry', error: `timeout after ${timeoutMs} ms` };
        const refusal = findAddressRefusal(error);
        // Not retried: the address will not become public. Its range only: the address a name
        // resolved to is the private network's business, and this record goes back to the submitter.
        if (refusal) return { kind: 'fatal', error: `${ADDRESS_REFUSED}: ${refusal.range} address` };
        const code = codeOf(error);
        // A request undici will not even build is not going to succeed on a second try.
        if (code === 'UND_ERR_INVALID_ARG') return { kind: 'fatal', error: code };
        return { kind: 'retry', error: code };
      }
      // The status decides; the body is the receiver's business and never read.
      discard(res.body);
      const status = res.statusCode;
      if (status >= 200 && status < 300) return { kind: 'delivered' };
      if (isRetryableStatus(status)) {
        const retryAfterMs =
          status === 429 || status === 503 ? parseRetryAfter(one(res.headers['retry-after']), now()) : undefined;
        return retryAfterMs === undefined
          ? { kind: 'retry', error: `HTTP ${status}` }
          : { kind: 'retry', error: `HTTP ${status}`, retryAfterMs };
      }
      if (status >= 300 && status < 400) return { kind: 'fatal', error: `HTTP ${status} (redirects are not followed)` };
      return { kind: 'fatal', error: `HTTP ${status}` };
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
  }

  async function deliver(
    rawUrl: string,
    body: unknown,
    onUpdate: ((delivery: WebhookDelivery) => void | Promise<void>) | undefined,
    callerSignal: AbortSignal | undefined,
  ): Promise<WebhookDelivery> {
    const deliveryId = randomUUID();
    const record: WebhookDelivery = { url: rawUrl, status: 'pending', attempts: 0 };
    let origin = '(invalid URL)';

    /** Hands the caller a copy: what it keeps cannot change under it, nor change ours. */
    const publish = async () => {
      if (!onUpdate) return;
      try {
        await onUpdate({ ...record });
      } catch (err) {
        // The delivery goes on: a lost record is a stale status, a rejected send would be a lost delivery.
        logger.error({ err, webhook: origin, deliveryId, attempt: record.attempts }, 'webhook delivery record could not be saved');
      }
    };
    const fail = async (error: string) => {
      record.status = 'failed';
      record.lastError = error;
      logger.error({ webhook: origin, deliveryId, attempt: record.attempts, error }, 'webhook delivery failed');
      await publish();
      return { ...record };
    };

    const parsed = parseWebhookUrl(rawUrl);
    if (!parsed.ok) return fail(`invalid URL: ${parsed.reason}`);
    const url = parsed.url;
    // The origin only: the path and query may hold the receiver's token.
    origin = url.origin;

    let payload: string | undefined;
    try {
      payload = JSON.stringify(body);
    } catch {
      payload = undefined;
    }
    if (payload === undefined) return fail('the body cannot be serialised as JSON');
    // Encoded once: every attempt sends these bytes, and the signature covers their UTF-8 text.
    const bytes = Buffer.from(payload, 'utf8');

    // One stop signal per send, fed by close() and the caller's signal, removed when the send ends.
    const stop = new AbortController();
    const onCallerAbort = () => stop.abort();
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    if (callerSignal?.aborted) stop.abort();
    stops.add(stop);
    if (closing) stop.abort();
    try {
      while (!stop.signal.aborted) {
        record.attempts += 1;
        const log = { webhook: origin, deliveryId, attempt: record.attempts };
        const outcome = await attempt(url, payload, bytes, deliveryId, callerSignal);
        if (outcome.kind === 'abandoned') {
          record.lastError = 'cancelled';
          await publish();
          break;
        }
        if (outcome.kind === 'delivered') {
          record.status = 'delivered';
          record.deliveredAt = now();
          delete record.lastError;
          logger.info(log, 'webhook delivered');
          await publish();
          return { ...record };
        }
        if (outcome.kind === 'fatal' || record.attempts >= maxAttempts) return await fail(outcome.error);

        record.lastError = outcome.error;
        const waitMs = webhookRetryDelay(record.attempts - 1, outcome.retryAfterMs, policy, random);
        logger.warn({ ...log, error: outcome.error, retryInMs: waitMs }, 'webhook attempt failed');
        await publish();
        if (stop.signal.aborted) break;
        // Raced against the stop signal as well, so an injected sleep that ignores its signal
        // cannot hold up a shutdown.
        const aborted = whenAborted(stop.signal);
        try {
          const slept = Promise.resolve().then(() => sleep(waitMs, stop.signal));
          await Promise.race([slept.catch(() => undefined), aborted.promise]);
        } finally {
          aborted.cleanup();
        }
      }
    } finally {
      stops.delete(stop);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
    logger.warn(
      { webhook: origin, deliveryId, attempt: record.attempts, error: record.lastError },
      'webhook delivery stopped before it succeeded; it stays pending',
    );
    return { ...record };
  }

  return {
    send(url, body, onUpdate, signal) {
      const pending = deliver(url, body, onUpdate, signal).catch((err: unknown) => {
        // Unreachable by design (every step above is caught); kept so `send` keeps its promise.
        logger.error({ err }, 'webhook delivery crashed');
        return { url, status: 'pending' as const, attempts: 0, lastError: 'ERROR' };
      });
      inFlight.add(pending);
      void pending.finally(() => inFlight.delete(pending));
      return pending;
    },
    async close() {
      closing = true;
      for (const stop of stops) stop.abort();
      await Promise.allSettled([...inFlight]);
    },
  };
}
