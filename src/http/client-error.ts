/**
 * Requests Node refuses before any handler runs (a head past `MAX_HEADER_BYTES`, a malformed
 * request line, a client too slow to send its head) get a problem+json too, not Node's bare reply.
 * There is no request or response object at this stage: the answer is written to the socket.
 */
import type { Duplex } from 'node:stream';
import { PROBLEM_TYPE_BASE } from '../errors.js';
import { LOCKED_DOWN_CSP } from './headers.js';

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
};

export interface ClientErrorLimits {
  /** Node's own limit on the whole head: request line and headers (MAX_URL_LENGTH + MAX_HEADER_BYTES). */
  maxHeadBytes: number;
  maxUrlLength: number;
}

/** The request line's length, when the bytes Node had show it (or show it is longer than `max`). */
function requestLineLength(raw: Buffer | undefined, max: number): number | undefined {
  if (!raw) return undefined;
  const end = raw.indexOf('\r\n');
  if (end !== -1) return end;
  return raw.length > max ? raw.length : undefined;
}

export function answerClientError(error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex, limits: ClientErrorLimits): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  let status = 400;
  let code = 'BAD_REQUEST';
  let detail = 'the request could not be parsed as HTTP/1.1';
  let param: string | undefined;
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    // Node only shows the chunk it was parsing: a line with no end in sight is the URL (or one
    // giant header); otherwise the head as a whole was too big. The app checks each cap exactly
    // below Node's limit, so this guess only decides between two true answers.
    const line = requestLineLength(error.rawPacket, limits.maxUrlLength);
    if (line !== undefined && line > limits.maxUrlLength) {
      status = 414;
      code = 'URI_TOO_LONG';
      param = 'MAX_URL_LENGTH';
      detail = `the URL is longer than this server accepts (MAX_URL_LENGTH ${limits.maxUrlLength} characters)`;
    } else {
      status = 431;
      code = 'HEADERS_TOO_LARGE';
      param = 'MAX_HEADER_BYTES';
      detail = `the request line and headers exceed ${limits.maxHeadBytes} bytes (MAX_URL_LENGTH + MAX_HEADER_BYTES)`;
    }
  } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    code = 'REQUEST_TIMEOUT';
    detail = 'the request was not received in time (HTTP_HEADERS_TIMEOUT_MS, HTTP_REQUEST_TIMEOUT_MS)';
  }
  const body = JSON.stringify({
    type: PROBLEM_TYPE_BASE + code.toLowerCase(),
    title: REASONS[status],
    status,
    code,
    detail,
    ...(param ? { param } : {}),
  });
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status]}\r\n` +
      'Content-Type: application/problem+json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Cache-Control: no-store\r\n' +
      'X-Content-Type-Options: nosniff\r\n' +
      `Content-Security-Policy: ${LOCKED_DOWN_CSP}\r\n` +
      'Referrer-Policy: no-referrer\r\n' +
      'Connection: close\r\n\r\n' +
      body,
  );
}
