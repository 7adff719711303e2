/**
 * The HTTP edge through a real listening server (`server.listen(0)`: Node's http server with
 * MAX_HEADER_BYTES, the headers timeout and the clientError handler, then Express): length caps,
 * requests Node refuses before any handler, wrong methods, slow clients, request ids, security
 * headers and keep-alive at shutdown. Raw `node:net` sockets where a client library would refuse
 * to send the request or would hide the bytes; `undici` otherwise.
 */
import net from 'node:net';
import { once } from 'node:events';
import sharp from 'sharp';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';
import { makeImage } from '../helpers/images.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PROBLEM = /^application\/problem\+json/;

interface RawAnswer {
  status: number;
  /** Lower-cased names. */
  headers: Record<string, string>;
  body: string;
}

/** One HTTP/1.1 answer as bytes on the wire: status line, headers, body. */
function parseAnswer(raw: string): RawAnswer {
  const end = raw.indexOf('\r\n\r\n');
  expect(end, `no complete head in ${JSON.stringify(raw.slice(0, 200))}`).toBeGreaterThan(0);
  const [statusLine = '', ...lines] = raw.slice(0, end).split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1];
  expect(status, statusLine).toBeDefined();
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(status), headers, body: raw.slice(end + 4) };
}

interface RawSocket {
  socket: net.Socket;
  /** Everything received so far, as Latin-1. */
  received(): string;
  /** Resolves when the connection is closed (by either side). */
  closed: Promise<void>;
  isClosed(): boolean;
  write(data: string | Buffer): Promise<void>;
}

async function openSocket(port: number): Promise<RawSocket> {
  const socket = net.connect(port, '127.0.0.1');
  let data = '';
  let closed = false;
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  // A server that answers and closes while we still write resets the connection: that is the
  // answer under test, not a failure of the test.
  socket.on('error', () => {});
  // Not `once(socket, 'close')`: that rejects on the 'error' a write after the server's FIN emits.
  const closedPromise = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  await once(socket, 'connect');
  return {
    socket,
    received: () => data,
    closed: closedPromise,
    isClosed: () => closed,
    write: (chunk) => new Promise<void>((resolve, reject) => socket.write(chunk, (error) => (error ? reject(error) : resolve()))),
  };
}

/** Sends `bytes` on a fresh connection and parses what came back once the server closed it. */
async function exchange(port: number, bytes: string | Buffer): Promise<RawAnswer> {
  const raw = await openSocket(port);
  await raw.write(bytes);
  await raw.closed;
  return parseAnswer(raw.received());
}

function expectProblem(answer: { status: number; headers: Record<string, string | string[] | undefined> }, body: unknown, status: number, code: string) {
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toMatch(PROBLEM);
  expect(answer.headers['x-content-type-options']).toBe('nosniff');
  expect(body).toMatchObject({ status, code, detail: expect.any(String) });
}

describe('the HTTP edge of a listening server', () => {
  let server: TestServer;
  let port: number;
  let base: string;
  let hash: string;
  let png: Buffer;
  const agent = new Agent();

  const get = (path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' | 'PUT' | 'DELETE' | 'OPTIONS' | 'POST' = 'GET') =>
    request(`${base}${path}`, { method, headers, dispatcher: agent });

  beforeAll(async () => {
    server = await startTestServer({
      HOST: '127.0.0.1',
      MAX_URL_LENGTH: '1024',
      MAX_QUERY_LENGTH: '512',
      MAX_HEADER_BYTES: '8KiB',
      HTTP_HEADERS_TIMEOUT_MS: '500',
    });
    ({ port } = await server.listen(0));
    base = `http://127.0.0.1:${port}`;
    png = await makeImage(8, 8);
    const res = await request(`${base}/sources`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png, dispatcher: agent });
    expect(res.statusCode).toBe(201);
    hash = ((await res.body.json()) as { hash: string }).hash;
  });
  afterAll(async () => {
    await agent.close();
    await stopTestServer(server);
  });

  describe('length caps', () => {
    it('a URL past MAX_URL_LENGTH is a 414 naming MAX_URL_LENGTH', async () => {
      const res = await get(`/upscale/${'a'.repeat(1100)}`, { 'x-request-id': 'long-url' });
      const body = await res.body.json();
      expectProblem({ status: res.statusCode, headers: res.headers }, body, 414, 'URI_TOO_LONG');
      expect(body).toMatchObject({ param: 'MAX_URL_LENGTH', request_id: 'long-url' });
    });

    it('a query past MAX_QUERY_LENGTH, in a URL within MAX_URL_LENGTH, is a 414 naming MAX_QUERY_LENGTH', async () => {
      const path = `/upscale/${hash}?prompt=${'a'.repeat(600)}`;
      expect(path.length).toBeLessThan(1024);
      const res = await get(path);
      const body = await res.body.json();
      expectProblem({ status: res.statusCode, headers: res.headers }, body, 414, 'URI_TOO_LONG');
      expect(body).toMatchObject({ param: 'MAX_QUERY_LENGTH' });
      expect(server.engineCalls()).toBe(0);
    });

    it('a URL past MAX_URL_LENGTH + MAX_HEADER_BYTES (refused by Node before Express) is a 414 problem+json', async () => {
      const answer = await exchange(port, `GET /healthz?${'a'.repeat(10_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      expectProblem(answer, JSON.parse(answer.body), 414, 'URI_TOO_LONG');
      expect(JSON.parse(answer.body)).toMatchObject({ param: 'MAX_URL_LENGTH' });
      expect(answer.headers['connection']).toBe('close');
    });

    // Node shows its clientError handler only the chunk it was parsing: a long URL sent in two
    // segments must still be judged as a URL.
    it('a URL past MAX_HEADER_BYTES that arrives in two TCP segments is still a 414', async () => {
      const raw = await openSocket(port);
      await raw.write(`GET /healthz?${'a'.repeat(8000)}`);
      expect((await get('/healthz')).statusCode).toBe(200);
      await raw.write(`${'b'.repeat(1000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await raw.closed;
      const answer = parseAnswer(raw.received());
      expect(answer.status).toBe(414);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'URI_TOO_LONG', param: 'MAX_URL_LENGTH' });
    });

    it('headers past MAX_HEADER_BYTES with a short URL are a 431 naming MAX_HEADER_BYTES', async () => {
      const answer = await exchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`);
      expectProblem(answer, JSON.parse(answer.body), 431, 'HEADERS_TOO_LARGE');
      expect(JSON.parse(answer.body)).toMatchObject({ param: 'MAX_HEADER_BYTES' });
    });

    it('a malformed request line is a 400 problem+json', async () => {
      const answer = await exchange(port, 'GARBAGE\r\n\r\n');
      expectProblem(answer, JSON.parse(answer.body), 400, 'BAD_REQUEST');
      expect(answer.headers['content-length']).toBe(String(Buffer.byteLength(answer.body)));
    });

    it.each([
      ['400', 'GARBAGE\r\n\r\n'],
      ['414', `GET /healthz?${'a'.repeat(10_000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['431', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`],
    ])('the %s written before Express has the same CSP as every problem+json', async (_status, bytes) => {
      const answer = await exchange(port, bytes);
      expect(answer.headers['content-type']).toMatch(PROBLEM);
      expect(answer.headers['content-security-policy'] ?? '(none)').toContain("default-src 'none'");
    });
  });

  describe('methods and routes', () => {
    it('DELETE /upscale/:hash is a 405 allowing GET, HEAD; PUT /sources a 405 allowing POST', async () => {
      const del = await get(`/upscale/${hash}`, {}, 'DELETE');
      const delBody = await del.body.json();
      expectProblem({ status: del.statusCode, headers: del.headers }, delBody, 405, 'METHOD_NOT_ALLOWED');
      expect(del.headers['allow']).toBe('GET, HEAD');

      const put = await get('/sources', {}, 'PUT');
      const putBody = await put.body.json();
      expectProblem({ status: put.statusCode, headers: put.headers }, putBody, 405, 'METHOD_NOT_ALLOWED');
      expect(put.headers['allow']).toBe('POST');
      expect(server.engineCalls()).toBe(0);
    });

    it('OPTIONS /upscale/:hash is a 204 with Allow and no body', async () => {
      const res = await get(`/upscale/${hash}`, {}, 'OPTIONS');
      expect(res.statusCode).toBe(204);
      expect(res.headers['allow']).toBe('GET, HEAD');
      expect(await res.body.text()).toBe('');
    });

    it('an unknown route is a 404 NOT_FOUND problem', async () => {
      const res = await get('/nope/deeper');
      const body = await res.body.json();
      expectProblem({ status: res.statusCode, headers: res.headers }, body, 404, 'NOT_FOUND');
      expect(body).toMatchObject({ instance: '/nope/deeper' });
    });
  });

  describe('slow clients', () => {
    it('a client dripping its head one byte at a time is cut off by HTTP_HEADERS_TIMEOUT_MS while others are served', { timeout: 15_000 }, async () => {
      const slow = await openSocket(port);
      await slow.write('GET / HTTP/1.1\r\nHost: x\r\n');
      // One header byte per normal request served: paced by events, not by a clock. Dripping
      // does not restart the headers timeout (it counts from the first byte).
      const served: number[] = [];
      while (!slow.isClosed() && served.length < 20_000) {
        await slow.write('X').catch(() => undefined);
        const res = await get('/healthz');
        await res.body.dump();
        served.push(res.statusCode);
      }
      await slow.closed;
      expect(served.length).toBeGreaterThan(0);
      expect(served.every((status) => status === 200)).toBe(true);
      // The server may answer 408 before closing; if it did, it is a problem+json.
      if (slow.received() !== '') {
        const answer = parseAnswer(slow.received());
        expectProblem(answer, JSON.parse(answer.body), 408, 'REQUEST_TIMEOUT');
      }
    });

    it('a client that stops in the middle of its head is cut off, and a normal request meanwhile is served', { timeout: 15_000 }, async () => {
      const slow = await openSocket(port);
      await slow.write('GET / HTTP/1.1\r\nHost: x\r\nX-Half: ');
      const res = await get('/healthz');
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ status: 'ok' });
      await slow.closed;
      const answer = parseAnswer(slow.received());
      expectProblem(answer, JSON.parse(answer.body), 408, 'REQUEST_TIMEOUT');
    });
  });

  describe('request ids', () => {
    it('a sane X-Request-Id is echoed, is the problem\'s request_id and names the request\'s log lines', async () => {
      const res = await get('/upscale/not-a-hash', { 'x-request-id': 'abc-123' });
      const body = (await res.body.json()) as Record<string, unknown>;
      expect(res.statusCode).toBe(400);
      expect(res.headers['x-request-id']).toBe('abc-123');
      expect(body.request_id).toBe('abc-123');
      await server.waitForLog('"reqId":"abc-123"');
      const lines = server
        .logs()
        .split('\n')
        .filter((line) => line.includes('"reqId":"abc-123"'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines.some((line) => line.code === 'INVALID_PARAM' && line.url === '/upscale/not-a-hash')).toBe(true);
    });

    it('the "request completed" line carries the sent id', async () => {
      const res = await get('/healthz', { 'x-request-id': 'done-456' });
      await res.body.dump();
      await server.waitForLog('"reqId":"done-456"');
      const completed = server
        .logs()
        .split('\n')
        .filter((line) => line.includes('"reqId":"done-456"'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(completed).toContainEqual(expect.objectContaining({ msg: 'request completed', url: '/healthz', status: 200 }));
    });

    it('without an X-Request-Id a uuid is generated, echoed and logged', async () => {
      const res = await get('/nope');
      const body = (await res.body.json()) as Record<string, unknown>;
      const id = res.headers['x-request-id'] as string;
      expect(id).toMatch(UUID);
      expect(body.request_id).toBe(id);
      await server.waitForLog(`"reqId":"${id}"`);
    });

    it.each([
      ['with spaces', 'a b c'],
      ['over 128 characters', 'x'.repeat(129)],
      ['with markup', '<script>alert(1)</script>'],
      ['with a quote', 'abc"def'],
    ])('an X-Request-Id %s is replaced by a generated one', async (_what, sent) => {
      const res = await get('/nope', { 'x-request-id': sent });
      const body = (await res.body.json()) as Record<string, unknown>;
      const id = res.headers['x-request-id'] as string;
      expect(id).toMatch(UUID);
      expect(body.request_id).toBe(id);
      await server.waitForLog(`"reqId":"${id}"`);
      expect(server.logs()).not.toContain(JSON.stringify(sent).slice(1, -1));
    });

    it('an X-Request-Id with a Latin-1 byte (raw socket) is replaced by a generated one', async () => {
      const answer = await exchange(
        port,
        Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: ab\xe9c\r\nConnection: close\r\n\r\n', 'latin1'),
      );
      expect(answer.status).toBe(200);
      expect(answer.headers['x-request-id']).toMatch(UUID);
    });

    it.each([
      ['a bare LF', 'abc\ninjected: yes'],
      ['a bare CR', 'abc\rinjected: yes'],
      ['a folded line', 'abc\r\n injected'],
    ])('an X-Request-Id with %s (raw socket) is never echoed: the head is refused with a 400', async (_what, value) => {
      const answer = await exchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${value}\r\nConnection: close\r\n\r\n`);
      expectProblem(answer, JSON.parse(answer.body), 400, 'BAD_REQUEST');
      expect(answer.headers['x-request-id']).toBeUndefined();
      expect(answer.headers['injected']).toBeUndefined();
    });
  });

  describe('security headers', () => {
    const CSP = "default-src 'none'";

    it('a JSON answer and a problem+json answer: nosniff and a CSP that allows nothing', async () => {
      const json = await get('/healthz');
      await json.body.dump();
      expect(json.headers['content-type']).toMatch(/^application\/json/);
      expect(json.headers['x-content-type-options']).toBe('nosniff');
      expect(json.headers['content-security-policy']).toContain(CSP);

      const problem = await get(`/sources/${'0'.repeat(64)}`);
      await problem.body.dump();
      expect(problem.statusCode).toBe(404);
      expect(problem.headers['content-type']).toMatch(PROBLEM);
      expect(problem.headers['x-content-type-options']).toBe('nosniff');
      expect(problem.headers['content-security-policy']).toContain(CSP);
    });

    it('a source image: nosniff, embeddable cross-origin, no CSP', async () => {
      const res = await get(`/sources/${hash}`);
      const bytes = Buffer.from(await res.body.arrayBuffer());
      expect(res.statusCode).toBe(200);
      expect(Buffer.compare(bytes, png)).toBe(0);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['cross-origin-resource-policy']).toBe('cross-origin');
      expect(res.headers['content-security-policy']).toBeUndefined();
    });

    it('an upscaled image: nosniff, embeddable cross-origin, no CSP', { timeout: 30_000 }, async () => {
      const before = server.engineCalls();
      const res = await get(`/upscale/${hash}?format=webp&scale=1`);
      const bytes = Buffer.from(await res.body.arrayBuffer());
      expect(res.statusCode).toBe(200);
      const meta = await sharp(bytes).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['webp', 8, 8]);
      expect(res.headers['content-type']).toBe('image/webp');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['cross-origin-resource-policy']).toBe('cross-origin');
      expect(res.headers['content-security-policy']).toBeUndefined();
      expect(server.engineCalls()).toBe(before + 1);
    });
  });
});

describe('keep-alive during shutdown', () => {
  /** A keep-alive request on `raw`, resolved when its whole answer (Content-Length) is in. */
  async function keepAliveRequest(raw: RawSocket, bytes: string | Buffer): Promise<RawAnswer> {
    const start = raw.received().length;
    await raw.write(bytes);
    for (;;) {
      const text = raw.received().slice(start);
      const end = text.indexOf('\r\n\r\n');
      if (end !== -1) {
        const answer = parseAnswer(text);
        if (Buffer.byteLength(answer.body, 'latin1') >= Number(answer.headers['content-length'] ?? 0)) return answer;
      }
      if (raw.isClosed()) return parseAnswer(text);
      await new Promise<void>((resolve) => {
        const done = () => {
          raw.socket.off('data', done);
          raw.socket.off('close', done);
          resolve();
        };
        raw.socket.on('data', done);
        raw.socket.on('close', done);
      });
    }
  }

  it('an idle keep-alive connection is closed as soon as shutdown begins', { timeout: 15_000 }, async () => {
    const server = await startTestServer({ HOST: '127.0.0.1', SHUTDOWN_GRACE_MS: '60000' });
    const raw = await openSocket((await server.listen(0)).port);
    try {
      const answer = await keepAliveRequest(raw, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(answer.status).toBe(200);
      expect(raw.isClosed()).toBe(false);
      const closing = server.close();
      await raw.closed;
      await closing;
    } finally {
      raw.socket.destroy();
      await stopTestServer(server);
    }
  });

  // The answer's `Connection: close` is what lets the socket close right after it; without it the
  // connection would stay open until Node's keep-alive timeout and hold `close()` that long.
  it('a request in flight when shutdown begins is answered with Connection: close, then its connection is closed', { timeout: 15_000 }, async () => {
    const server = await startTestServer({ HOST: '127.0.0.1', SHUTDOWN_GRACE_MS: '60000' });
    const { port } = await server.listen(0);
    const busy = await openSocket(port);
    const other = await openSocket(port);
    try {
      const png = await makeImage(8, 8);
      await busy.write(`POST /sources HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`);
      await busy.write(png.subarray(0, 50));
      // A round trip on another connection: the server has read the upload's head by now.
      expect((await keepAliveRequest(other, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).status).toBe(200);

      const closing = server.close();
      await other.closed; // idle: closed at once
      const answer = await keepAliveRequest(busy, png.subarray(50));
      expect(answer.status).toBe(201);
      expect(answer.headers['connection']).toBe('close');
      await busy.closed;
      await closing;
    } finally {
      busy.socket.destroy();
      other.socket.destroy();
      await stopTestServer(server);
    }
  });
});
