/**
 * Webhook delivery end to end over loopback: a real `node:http` receiver, real undici through the
 * guarded agent. Assertions are on what the receiver saw (requests, bytes, headers) and on the
 * delivery record. Backoff never sleeps: an injected `sleep` records the delays asked of it.
 */
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createWebhookSender,
  verifyWebhook,
  WEBHOOK_SIGNATURE_HEADER,
  type WebhookDelivery,
  type WebhookSender,
  type WebhookSenderOptions,
} from '../../src/jobs/webhook.js';
import { ADDRESS_REFUSED, createGuardedAgent } from '../../src/security/ssrf.js';
import { captureLogger, ERROR, INFO, WARN } from '../contract/capture-logger.js';

const KEY = 'whsec_0123456789abcdef';
const OTHER_KEY = 'whsec_fedcba9876543210';
/** Rides in the webhook URL's query: it must reach the receiver and never a log line. */
const TOKEN = 'tok_s3cr3t_in_query';
const T0 = Date.parse('2026-11-24T12:00:00Z');
const JOB = { id: 'job_01J', status: 'COMPLETED', output: { url: 'https://cdn.example/out/é.png', width: 2048 } };

interface Received {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** How the receiver answers one request: a status (with headers and body), or never ('hold'). */
type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hold';

interface Receiver {
  origin: string;
  url(path?: string): string;
  /** Every request received, in order, with its whole body. */
  received: Received[];
  /** Answers for the next requests, in order; then 200. */
  answer(...answers: Answer[]): void;
  /** Resolves once `count` requests have been received in all. */
  waitForRequests(count: number): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const queue: Answer[] = [];
  const events = new EventEmitter();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      events.emit('request');
      const next = queue.shift() ?? { status: 200, body: 'ok' };
      if (next === 'hold') return; // the socket stays open, unanswered, until the test ends
      res.writeHead(next.status, next.headers ?? {});
      res.end(next.body ?? '');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  cleanups.push(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    url: (path = `/hook?token=${TOKEN}`) => `${origin}${path}`,
    received,
    answer: (...answers) => queue.push(...answers),
    async waitForRequests(count) {
      while (received.length < count) await once(events, 'request');
    },
  };
}

function loopbackAgent(): Agent {
  const agent = createGuardedAgent({ allowPrivate: true });
  cleanups.push(() => agent.close());
  return agent;
}

interface Harness {
  sender: WebhookSender;
  /** Every delay asked of `sleep`, ms. */
  delays: number[];
  logs: ReturnType<typeof captureLogger>;
}

function makeSender(overrides: Partial<WebhookSenderOptions> = {}): Harness {
  const delays: number[] = [];
  const logs = captureLogger();
  const sender = createWebhookSender({
    dispatcher: overrides.dispatcher ?? loopbackAgent(),
    signingKey: KEY,
    random: () => 0.5,
    now: () => T0,
    sleep: async (ms) => {
      delays.push(ms);
    },
    logger: logs.logger,
    ...overrides,
  });
  cleanups.push(() => sender.close());
  return { sender, delays, logs };
}

/** The `t=` of a signature header. */
const timestampOf = (header: string) => Number(/(?:^|,)t=(\d+)/.exec(header)?.[1]);

describe('webhook delivery', () => {
  it('retries a 500, then delivers the same signed bytes with the same delivery id', async () => {
    const receiver = await startReceiver();
    receiver.answer({ status: 500, body: 'receiver-internal-detail' }, { status: 204 });
    let clock = T0;
    const updates: WebhookDelivery[] = [];
    const { sender, delays, logs } = makeSender({ now: () => clock });

    const result = await sender.send(receiver.url(), JOB, (delivery) => {
      updates.push(delivery);
      clock += 30_000; // time passes between attempts: each one is signed afresh
    });

    expect(result).toEqual({ url: receiver.url(), status: 'delivered', attempts: 2, deliveredAt: T0 + 30_000 });
    expect(updates).toEqual([
      { url: receiver.url(), status: 'pending', attempts: 1, lastError: 'HTTP 500' },
      { url: receiver.url(), status: 'delivered', attempts: 2, deliveredAt: T0 + 30_000 },
    ]);
    expect(delays).toEqual([500]); // random 0.5 × base 1000

    expect(receiver.received).toHaveLength(2);
    const [first, second] = receiver.received as [Received, Received];
    for (const request of [first, second]) {
      expect(request.method).toBe('POST');
      expect(request.path).toBe(`/hook?token=${TOKEN}`);
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['user-agent']).toBe('clarity-cdn-webhook');
      expect(JSON.parse(request.body.toString('utf8'))).toEqual(JOB);
    }
    expect(second.body.equals(first.body)).toBe(true);
    expect(first.headers['x-clarity-delivery']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(second.headers['x-clarity-delivery']).toBe(first.headers['x-clarity-delivery']);

    const signatures = [first, second].map((r) => String(r.headers[WEBHOOK_SIGNATURE_HEADER]));
    expect(signatures.map(timestampOf)).toEqual([T0 / 1000, T0 / 1000 + 30]);
    for (const [i, request] of [first, second].entries()) {
      const body = request.body.toString('utf8');
      const header = signatures[i] as string;
      const t = timestampOf(header);
      expect(verifyWebhook(body, header, [KEY], { nowSeconds: t })).toBe(true);
      expect(verifyWebhook(body, header, [OTHER_KEY, KEY], { nowSeconds: t + 60 })).toBe(true);
      expect(verifyWebhook(body, header, [OTHER_KEY], { nowSeconds: t })).toBe(false);
      expect(verifyWebhook(body.replace('COMPLETED', 'FAILED'), header, [KEY], { nowSeconds: t })).toBe(false);
      expect(verifyWebhook(body, header, [KEY], { nowSeconds: t + 301 })).toBe(false);
    }

    // Logs: origin, delivery id and attempt; never the query (its token) nor the receiver's body.
    const deliveryId = first.headers['x-clarity-delivery'];
    expect(logs.find('webhook attempt failed', WARN)).toEqual([
      expect.objectContaining({ webhook: receiver.origin, deliveryId, attempt: 1, error: 'HTTP 500', retryInMs: 500 }),
    ]);
    expect(logs.find('webhook delivered', INFO)).toEqual([
      expect.objectContaining({ webhook: receiver.origin, deliveryId, attempt: 2 }),
    ]);
    expect(logs.text()).not.toContain(TOKEN);
    expect(logs.text()).not.toContain('/hook');
    expect(logs.text()).not.toContain('receiver-internal-detail');
  });

  it.each([
    ['delay-seconds', () => '7', 7000],
    ['an HTTP date', () => new Date(T0 + 12_000).toUTCString(), 12_000],
    ['a wait beyond maxDelayMs', () => '3600', 60_000],
  ])('honours a 429 Retry-After given as %s', async (_name, retryAfter, expected) => {
    const receiver = await startReceiver();
    receiver.answer({ status: 429, headers: { 'retry-after': retryAfter() } });
    const { sender, delays } = makeSender();

    const result = await sender.send(receiver.url(), JOB);

    expect(delays).toEqual([expected]);
    expect(result).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(receiver.received).toHaveLength(2);
  });

  it('backs off exponentially on 5xx and fails after maxAttempts', async () => {
    const receiver = await startReceiver();
    receiver.answer({ status: 503 }, { status: 502 }, { status: 500 }, { status: 200 });
    const updates: WebhookDelivery[] = [];
    const { sender, delays, logs } = makeSender({ maxAttempts: 3, random: () => 1 });

    const result = await sender.send(receiver.url(), JOB, (d) => void updates.push(d));

    expect(result).toEqual({ url: receiver.url(), status: 'failed', attempts: 3, lastError: 'HTTP 500' });
    expect(receiver.received).toHaveLength(3);
    expect(delays).toEqual([1000, 2000]);
    expect(updates.map((u) => [u.status, u.attempts])).toEqual([
      ['pending', 1],
      ['pending', 2],
      ['failed', 3],
    ]);
    expect(logs.find('webhook delivery failed', ERROR)).toEqual([
      expect.objectContaining({ webhook: receiver.origin, attempt: 3, error: 'HTTP 500' }),
    ]);
  });

  it('retries a 408', async () => {
    const receiver = await startReceiver();
    receiver.answer({ status: 408 });
    const { sender } = makeSender();
    expect(await sender.send(receiver.url(), JOB)).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(receiver.received).toHaveLength(2);
  });

  it.each([400, 401, 404, 410, 422])('fails at once on a %i, without retrying', async (status) => {
    const receiver = await startReceiver();
    receiver.answer({ status, body: 'receiver-says-no' });
    const { sender, delays } = makeSender();

    const result = await sender.send(receiver.url(), JOB);

    expect(result).toEqual({ url: receiver.url(), status: 'failed', attempts: 1, lastError: `HTTP ${status}` });
    expect(receiver.received).toHaveLength(1);
    expect(delays).toEqual([]);
  });

  it('does not follow a redirect, and does not retry it', async () => {
    const receiver = await startReceiver();
    receiver.answer({ status: 307, headers: { location: '/elsewhere' } });
    const { sender } = makeSender();

    const result = await sender.send(receiver.url(), JOB);

    expect(result).toMatchObject({ status: 'failed', attempts: 1, lastError: 'HTTP 307 (redirects are not followed)' });
    expect(receiver.received.map((r) => r.path)).toEqual([`/hook?token=${TOKEN}`]);
  });

  it('retries a receiver that never answers, then fails after maxAttempts', async () => {
    const receiver = await startReceiver();
    receiver.answer('hold', 'hold');
    const { sender, delays } = makeSender({ timeoutMs: 200, maxAttempts: 2 });

    const result = await sender.send(receiver.url(), JOB);

    expect(result).toEqual({ url: receiver.url(), status: 'failed', attempts: 2, lastError: 'timeout after 200 ms' });
    expect(receiver.received).toHaveLength(2);
    expect(delays).toHaveLength(1);
  });

  it('retries a refused connection', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as AddressInfo;
    probe.close();
    await once(probe, 'close');
    const { sender, delays } = makeSender({ maxAttempts: 2 });

    const result = await sender.send(`http://127.0.0.1:${port}/hook`, JOB);

    expect(result).toEqual({ url: `http://127.0.0.1:${port}/hook`, status: 'failed', attempts: 2, lastError: 'ECONNREFUSED' });
    expect(delays).toHaveLength(1);
  });

  it('refuses a private address through the default guarded agent: no request, no retry', async () => {
    const receiver = await startReceiver();
    const agent = createGuardedAgent({ allowPrivate: false });
    cleanups.push(() => agent.close());
    const { sender, delays, logs } = makeSender({ dispatcher: agent });

    const result = await sender.send(receiver.url(), JOB);

    expect(result).toMatchObject({ status: 'failed', attempts: 1 });
    expect(result.lastError).toBe(`${ADDRESS_REFUSED}: loopback address`);
    expect(receiver.received).toHaveLength(0);
    expect(delays).toEqual([]);
    expect(logs.find('webhook delivery failed', ERROR)).toHaveLength(1);
  });

  it('sends no signature header without a signing key', async () => {
    const receiver = await startReceiver();
    const { sender } = makeSender({ signingKey: undefined });

    expect(await sender.send(receiver.url(), JOB)).toMatchObject({ status: 'delivered', attempts: 1 });
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]?.headers).not.toHaveProperty(WEBHOOK_SIGNATURE_HEADER);
    expect(receiver.received[0]?.headers['x-clarity-delivery']).toBeTruthy();
  });

  it.each([
    ['ftp://127.0.0.1/hook', 'invalid URL: ftp: URLs are not supported (http: or https: only)'],
    ['not a url', 'invalid URL: not an absolute URL'],
    ['http://user:pass@127.0.0.1/hook', 'invalid URL: the URL may not carry credentials'],
  ])('fails %s before any request', async (url, lastError) => {
    const updates: WebhookDelivery[] = [];
    const { sender, logs } = makeSender();

    const result = await sender.send(url, JOB, (d) => void updates.push(d));

    expect(result).toEqual({ url, status: 'failed', attempts: 0, lastError });
    expect(updates).toEqual([result]);
    expect(logs.text()).not.toContain('pass');
  });

  it('fails a body that is not JSON-serialisable, without a request', async () => {
    const receiver = await startReceiver();
    const { sender } = makeSender();
    const result = await sender.send(receiver.url(), { size: 10n });
    expect(result).toMatchObject({ status: 'failed', attempts: 0, lastError: 'the body cannot be serialised as JSON' });
    expect(receiver.received).toHaveLength(0);
  });

  it('keeps delivering when onUpdate throws', async () => {
    const receiver = await startReceiver();
    receiver.answer({ status: 500 });
    const { sender, logs } = makeSender();

    const result = await sender.send(receiver.url(), JOB, async () => {
      throw new Error('store down');
    });

    expect(result).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(logs.find('webhook delivery record could not be saved', ERROR)).toHaveLength(2);
  });

  describe('stopping', () => {
    /** A sleep that only ends when its signal aborts, and tells the test when it starts. */
    function blockingSleep() {
      const delays: number[] = [];
      let started!: () => void;
      const sleeping = new Promise<void>((resolve) => (started = resolve));
      const sleep = (ms: number, signal?: AbortSignal) => {
        delays.push(ms);
        started();
        return new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
      };
      return { delays, sleeping, sleep };
    }

    it('close() during backoff resolves the send as pending, with no further request', async () => {
      const receiver = await startReceiver();
      receiver.answer({ status: 500 }, { status: 500 });
      const { delays, sleeping, sleep } = blockingSleep();
      const { sender } = makeSender({ sleep });

      const sending = sender.send(receiver.url(), JOB);
      await sleeping;
      await sender.close();

      expect(await sending).toEqual({ url: receiver.url(), status: 'pending', attempts: 1, lastError: 'HTTP 500' });
      expect(delays).toEqual([500]);
      expect(receiver.received).toHaveLength(1);

      // After close(), a new send makes no attempt at all.
      expect(await sender.send(receiver.url(), JOB)).toEqual({ url: receiver.url(), status: 'pending', attempts: 0 });
      expect(receiver.received).toHaveLength(1);
    });

    it('close() ends the backoff even when the injected sleep ignores its signal', async () => {
      const receiver = await startReceiver();
      receiver.answer({ status: 503 });
      let started!: () => void;
      const sleeping = new Promise<void>((resolve) => (started = resolve));
      const { sender } = makeSender({
        sleep: () => {
          started();
          return new Promise<void>(() => undefined); // never resolves
        },
      });

      const sending = sender.send(receiver.url(), JOB);
      await sleeping;
      await sender.close();

      expect(await sending).toMatchObject({ status: 'pending', attempts: 1 });
      expect(receiver.received).toHaveLength(1);
    });

    it("the caller's signal stops the retries of its own send only", async () => {
      const receiver = await startReceiver();
      receiver.answer({ status: 500 });
      const { sleeping, sleep } = blockingSleep();
      const { sender } = makeSender({ sleep });
      const controller = new AbortController();

      const cancelled = sender.send(receiver.url('/a'), JOB, undefined, controller.signal);
      await sleeping;
      controller.abort();
      expect(await cancelled).toMatchObject({ status: 'pending', attempts: 1, lastError: 'HTTP 500' });

      expect(await sender.send(receiver.url('/b'), JOB)).toMatchObject({ status: 'delivered', attempts: 1 });
      expect(receiver.received.map((r) => r.path)).toEqual(['/a', '/b']);
    });

    it("the caller's signal abandons an attempt in flight", async () => {
      const receiver = await startReceiver();
      receiver.answer('hold');
      const { sender, delays } = makeSender({ timeoutMs: 30_000 });
      const controller = new AbortController();
      const updates: WebhookDelivery[] = [];

      const sending = sender.send(receiver.url(), JOB, (d) => void updates.push(d), controller.signal);
      await receiver.waitForRequests(1);
      controller.abort();

      expect(await sending).toEqual({ url: receiver.url(), status: 'pending', attempts: 1, lastError: 'cancelled' });
      expect(updates).toHaveLength(1);
      expect(delays).toEqual([]);
      // Settled by the abort, not by the 30 s attempt timeout: this test's own limit is far below it.
    }, 10_000);
  });
});
