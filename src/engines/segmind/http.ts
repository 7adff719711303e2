/**
 * One HTTP exchange with undici, reduced to what the engine decides on: a status, headers and a
 * size-limited body, or a `TransportError` that says whether the request may have reached the
 * upstream. That last bit is what keeps a retried submit from paying twice.
 */
import { request, type Dispatcher } from 'undici';
import { CONNECT_FAILURE_CODES, errorCodeOf } from '../../net-errors.js';
import { sanitizeReason, type Headers } from './errors.js';


/**
 * A transport failure, stripped to plain data: undici's own error objects hold sockets and (for
 * some kinds) request options, which must not reach a log line where the `x-api-key` could ride.
 */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  readonly code: string | undefined;
  /** False only when the request surely never left this process. */
  readonly mayHaveBeenSent: boolean;
  /** Set when the failure came while reading the body of an answer that had arrived. */
  readonly status: number | undefined;
  readonly headers: Headers | undefined;
  constructor(error: unknown, secrets: readonly string[], answer?: { status: number; headers: Headers }) {
    const code = errorCodeOf(error);
    const message = error instanceof Error ? error.message : String(error);
    super(sanitizeReason(`${code ?? 'ERROR'}: ${message}`, secrets));
    this.code = code;
    // Only a failure while connecting proves the request was never written, so a retry cannot
    // duplicate a job; a reset or a headers timeout may come after the upstream read it. (Submits
    // run on connections of their own, see `engine.ts`, so a stale keep-alive socket cannot blur
    // the line.)
    this.mayHaveBeenSent = answer !== undefined || code === undefined || !CONNECT_FAILURE_CODES.has(code);
    this.status = answer?.status;
    this.headers = answer?.headers;
  }
}

/** The answer was larger than the call allows; it was cut off unread. */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  constructor(readonly maxBytes: number, readonly status: number) {
    super(`the answer is larger than ${maxBytes} bytes`);
  }
}

export interface HttpCall {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  dispatcher: Dispatcher;
  signal: AbortSignal;
  /** Longest wait for the status line and headers, ms (0: none). */
  headersTimeoutMs: number;
  /** Longest silence while the body streams, ms. */
  bodyTimeoutMs: number;
  maxBytes: number;
  /** Strings cut from any error message (the API key). */
  secrets: readonly string[];
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  body: Buffer;
}

/** Stops reading a body we refuse; undici reports that as an error event, expected here. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Throws the abort reason when `signal` fired (the caller knows what it means), else `error`. */
function rethrow(signal: AbortSignal, error: unknown): never {
  if (signal.aborted) throw signal.reason ?? error;
  throw error;
}

export async function send(call: HttpCall): Promise<HttpAnswer> {
  let res: Dispatcher.ResponseData;
  try {
    res = await request(call.url, {
      method: call.method,
      headers: call.headers,
      ...(call.body !== undefined ? { body: call.body } : {}),
      dispatcher: call.dispatcher,
      signal: call.signal,
      headersTimeout: call.headersTimeoutMs,
      bodyTimeout: call.bodyTimeoutMs,
    });
  } catch (error) {
    rethrow(call.signal, new TransportError(error, call.secrets));
  }
  const answer = { status: res.statusCode, headers: res.headers as Headers };
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > call.maxBytes) {
    discard(res.body);
    throw new BodyTooLargeError(call.maxBytes, res.statusCode);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > call.maxBytes) throw new BodyTooLargeError(call.maxBytes, res.statusCode);
      chunks.push(buf);
    }
  } catch (error) {
    discard(res.body);
    if (error instanceof BodyTooLargeError) throw error;
    rethrow(call.signal, new TransportError(error, call.secrets, answer));
  }
  return { ...answer, body: Buffer.concat(chunks, total) };
}
