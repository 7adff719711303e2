/**
 * The Redis tier against real redis-servers: the suite's shared one for storage behaviour (keys
 * under a prefix of this file's own), and private ones for faults (killed, hung, restarted, never
 * there), so that no other test file sees them.
 *
 * No test here measures time. Fault tests wait on events (a log line written, a reply received, a
 * process exited) and assert outcomes: the read was a miss, the breaker is open, a warning was
 * written once, the server had answered nobody when the tier gave up. How long those take belongs
 * in bench/.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createClient } from '@keyv/redis';
import { createRedisTier, type RedisTier, type RedisTierOptions } from '../../../src/cache/redis.js';
import { cacheKey, type CacheEntry, type EntryKind, type EntryMeta } from '../../../src/cache/types.js';
import { createLogger } from '../../../src/logger.js';
import { captureLogger, INFO, WARN, type CapturedLogger, type LogLine } from '../../contract/capture-logger.js';
import { freePort, startRedis, type RedisProcess } from '../../helpers/redis.js';

const DEBUG = 20;

const hex = () => randomBytes(32).toString('hex');
const entry = (bytes: number, meta: Partial<EntryMeta> = {}): CacheEntry => ({
  data: randomBytes(bytes),
  meta: { kind: 'master', contentType: 'image/png', ...meta },
});

async function rawClient(url: string) {
  const client = createClient({ url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

interface WatchedLogger extends CapturedLogger {
  /** Resolves once `count` lines at `level` contain `text` in their message (now or later). */
  waitFor(text: string, level: number, count?: number): Promise<void>;
}

/** `captureLogger`, plus a promise per awaited line: the tier reports its transitions by logging. */
function watchLogger(): WatchedLogger {
  let raw = '';
  const waiters = new Set<() => void>();
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw += String(chunk);
      for (const check of [...waiters]) check();
      done();
    },
  });
  const lines = () =>
    raw
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as LogLine);
  const find = (text: string, level?: number) =>
    lines().filter((l) => l.msg.includes(text) && (level === undefined || l.level === level));
  return {
    logger: createLogger('debug', sink),
    lines,
    find,
    text: () => raw,
    waitFor: (text, level, count = 1) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (find(text, level).length < count) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      }),
  };
}

/** The redis-server process behind `client` (to stop and continue it). */
async function serverPid(client: Awaited<ReturnType<typeof rawClient>>): Promise<number> {
  const pid = Number(/process_id:(\d+)/.exec(String(await client.info('server')))?.[1]);
  expect(pid).toBeGreaterThan(0);
  return pid;
}

/**
 * Whether `promise` settles before the event loop next polls for I/O: true for work done in
 * memory only (microtasks), false for anything that waits on a socket or a timer.
 */
async function settlesWithoutIo(promise: Promise<unknown>): Promise<boolean> {
  return Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => setImmediate(() => resolve(false)))]);
}

describe('redis tier (shared server)', () => {
  const prefix = `redis-test-${randomBytes(6).toString('hex')}`;
  const options = { masterTtlSeconds: 1000, variantTtlSeconds: 500, maxValueBytes: 200_000 };
  let tier: RedisTier;
  let raw: Awaited<ReturnType<typeof rawClient>>;
  let logs: CapturedLogger;

  beforeAll(async () => {
    raw = await rawClient(inject('redisUrl'));
  });
  afterAll(async () => {
    for (const key of await raw.keys(`${prefix}:*`)) await raw.del(key);
    raw.destroy();
  });
  beforeEach(async () => {
    logs = captureLogger();
    tier = createRedisTier({ url: inject('redisUrl'), prefix, timeoutMs: 2000, logger: logs.logger, ...options });
    await tier.whenUp();
  });
  afterEach(async () => {
    await tier.close();
  });

  it('stores binary as raw bytes: a 100 KB image costs ~100 KB in Redis, not ~133 KB of base64', async () => {
    const key = cacheKey('master', hex());
    const data = randomBytes(100_000);
    await tier.set(key, { data, meta: { kind: 'master', contentType: 'image/png', paid: true } });
    const strlen = await raw.strLen(`${prefix}:${key}`);
    expect(strlen).toBeGreaterThanOrEqual(100_000);
    expect(strlen - 100_000).toBeLessThan(256); // the frame header
    expect(strlen).toBeLessThan(133_000);
    // The value ends with the image, byte for byte.
    const stored = await raw.withTypeMapping({ 36: Buffer }).get(`${prefix}:${key}`);
    expect(Buffer.isBuffer(stored) && stored.subarray(stored.length - data.length).equals(data)).toBe(true);
    const memory = await raw.memoryUsage(`${prefix}:${key}`);
    expect(memory).toBeLessThan(133_000);
  });

  it('namespaces every key as <prefix>:<kind>:<hex>', async () => {
    const h = hex();
    await tier.set(cacheKey('variant', h), entry(10, { kind: 'variant' }));
    expect(await raw.keys(`${prefix}:variant:${h}`)).toEqual([`${prefix}:variant:${h}`]);
  });

  it.each([
    ['master', {}, 1000],
    ['source', {}, 1000],
    ['variant', {}, 500],
    ['failure', { expiresAt: Date.now() + 60_000 }, 60],
    ['master', { expiresAt: Date.now() + 30_000 }, 30],
  ] as [EntryKind, Partial<EntryMeta>, number][])('sets the TTL of a %s (%o) to %i s', async (kind, meta, seconds) => {
    const key = cacheKey(kind, hex());
    await tier.set(key, entry(10, { kind, ...meta }));
    const ttl = await raw.ttl(`${prefix}:${key}`);
    expect(ttl).toBeGreaterThan(seconds - 5);
    expect(ttl).toBeLessThanOrEqual(seconds);
  });

  it('skips values over maxValueBytes (they stay on disk only)', async () => {
    const key = cacheKey('master', hex());
    await expect(tier.set(key, entry(options.maxValueBytes + 1))).resolves.toBeUndefined();
    expect(await raw.exists(`${prefix}:${key}`)).toBe(0);
    expect(await tier.get(key)).toBeUndefined();
  });

  it('treats a value it did not write as a logged miss', async () => {
    const key = cacheKey('master', hex());
    await raw.set(`${prefix}:${key}`, 'written by someone else');
    expect(await tier.get(key)).toBeUndefined();
    expect(logs.find('unreadable redis value', WARN)).toHaveLength(1);
  });

  it('reports up when connected', () => {
    expect(tier.status()).toEqual({ state: 'up' });
  });

  it('never shows the URL (or its password) in status or logs', async () => {
    // The server has no password, so AUTH fails on every attempt: a failure that carries the URL's
    // credentials through the client.
    const url = inject('redisUrl').replace('redis://', 'redis://:hunter2-secret@');
    const secretLogs = watchLogger();
    const locked = createRedisTier({ url, prefix, timeoutMs: 200, logger: secretLogs.logger, ...options });
    try {
      // The first refused AUTH is warned of: from then on the failure is known to the tier.
      await secretLogs.waitFor('redis unreachable', WARN);
      expect(await locked.get(cacheKey('master', hex()))).toBeUndefined();
      const status = locked.status();
      expect(status.state).not.toBe('up');
      expect(status.lastError).toBeDefined();
      expect(JSON.stringify(status)).not.toContain('hunter2');
      expect(secretLogs.text()).not.toContain('hunter2');
    } finally {
      await locked.close();
    }
  });
});

describe('redis tier faults (a private server)', () => {
  const timeoutMs = 150;
  let redis: RedisProcess;
  let tier: RedisTier;
  let logs: WatchedLogger;
  const make = (url: string, extra: Partial<RedisTierOptions> = {}) =>
    createRedisTier({
      url,
      prefix: 'faults',
      masterTtlSeconds: 1000,
      variantTtlSeconds: 500,
      maxValueBytes: 1 << 20,
      timeoutMs,
      logger: logs.logger,
      // A cool-down no test outlives: once open, the breaker stays open until a reconnect closes
      // it, so "open" cannot turn into a half-open probe while a test looks at it.
      breaker: { failureThreshold: 3, cooldownMs: 600_000, maxCooldownMs: 600_000 },
      reconnectMaxDelayMs: 100,
      ...extra,
    });

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });
  beforeEach(async () => {
    // Whatever the previous test did to it.
    await redis.start();
    logs = watchLogger();
    tier = make(redis.url);
    await tier.whenUp();
  });
  afterEach(async () => {
    await tier.close();
  });

  it('killed: reads are misses, writes do not throw, the breaker opens (warned of once), then it comes back', async () => {
    const before = cacheKey('master', hex());
    await tier.set(before, entry(1000, { paid: true }));
    expect(await tier.get(before)).toBeDefined();

    await redis.stop({ crash: true });
    for (let i = 0; i < 3; i++) expect(await tier.get(before)).toBeUndefined();
    await expect(tier.set(cacheKey('master', hex()), entry(100, { paid: true }))).resolves.toBeUndefined();
    expect(tier.status().state).toBe('open');
    expect(tier.status().lastError).toBeDefined();

    // Open: no command is even attempted (each attempt would be one more failed operation).
    const failedOperations = logs.find('redis operation failed', DEBUG).length;
    expect(failedOperations).toBe(3);
    expect(await tier.get(before)).toBeUndefined();
    expect(logs.find('redis operation failed', DEBUG)).toHaveLength(failedOperations);

    // The client keeps reconnecting in the background; each failed attempt is a debug line, and
    // the operator is warned once per transition, not once per attempt.
    await logs.waitFor('redis connection attempt failed', DEBUG, 2);
    expect(logs.find('redis connection lost', WARN)).toHaveLength(1);
    expect(logs.find('circuit open', WARN)).toHaveLength(1);

    await redis.start();
    await tier.whenUp();
    expect(tier.status()).toEqual({ state: 'up' });
    const after = cacheKey('variant', hex());
    await tier.set(after, entry(100, { kind: 'variant' }));
    expect(await tier.get(after)).toBeDefined();
    expect(logs.find('redis connection restored', INFO)).toHaveLength(1);
    expect(logs.find('circuit closed', INFO)).toHaveLength(1);
  });

  it('hung (connected, answering nobody): a read is a miss on its own timeout instead of holding the request; the same connection serves again after', async () => {
    const key = cacheKey('master', hex());
    await tier.set(key, entry(100, { paid: true }));
    const observer = await rawClient(redis.url);
    const pid = await serverPid(observer);

    // A stopped process keeps its sockets open and answers nothing until it is continued: a hung
    // Redis for as long as the test needs, with no duration to guess.
    process.kill(pid, 'SIGSTOP');
    let observerAnswered = false;
    let probe: Promise<unknown> | undefined;
    try {
      // Sent before the tier's read: while it is unanswered, Redis has answered nobody.
      probe = observer.ping().then(() => {
        observerAnswered = true;
      });
      expect(await tier.get(key)).toBeUndefined();
      expect(observerAnswered).toBe(false);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // The read gave up on the tier's own timeout, not on a connection error.
    const failures = logs.find('redis operation failed', DEBUG);
    expect(failures).toHaveLength(1);
    expect((failures[0]?.err as { message?: string } | undefined)?.message).toBe(`redis get took longer than ${timeoutMs} ms`);
    expect(logs.find('redis connection lost', WARN)).toHaveLength(0);

    await probe;
    observer.destroy();
    // The late answer to the abandoned read does not leave the connection out of step.
    const again = await tier.get(key);
    expect(again?.meta).toMatchObject({ kind: 'master', paid: true });
    expect(again?.data.length).toBe(100);
  });

  it('hung: after three timeouts the breaker opens, and reads stop waiting on Redis at all', async () => {
    const key = cacheKey('master', hex());
    await tier.set(key, entry(100, { paid: true }));
    const observer = await rawClient(redis.url);
    const pid = await serverPid(observer);
    observer.destroy();
    process.kill(pid, 'SIGSTOP');
    try {
      for (let i = 0; i < 3; i++) expect(await tier.get(key)).toBeUndefined();
      expect(tier.status().state).toBe('open');
      expect(logs.find('circuit open', WARN)).toHaveLength(1);
      // With the breaker closed this read would wait for its timeout; open, it waits on nothing.
      const read = tier.get(key);
      expect(await settlesWithoutIo(read)).toBe(true);
      expect(await read).toBeUndefined();
      expect(logs.find('redis operation failed', DEBUG)).toHaveLength(3);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('absent at startup: reads are misses, one warning however many attempts, and it connects once Redis appears', async () => {
    const port = await freePort();
    // Construction is synchronous: nothing waits for Redis.
    const later = make(`redis://127.0.0.1:${port}`);
    let server: RedisProcess | undefined;
    try {
      expect(await later.get(cacheKey('master', hex()))).toBeUndefined();
      expect(later.status().state).not.toBe('up');
      await logs.waitFor('redis connection attempt failed', DEBUG, 2);
      expect(logs.find('redis unreachable', WARN)).toHaveLength(1);

      server = await startRedis(port);
      await later.whenUp();
      expect(later.status()).toEqual({ state: 'up' });
      const key = cacheKey('master', hex());
      await later.set(key, entry(10));
      expect(await later.get(key)).toBeDefined();
    } finally {
      await later.close();
      await server?.stop();
    }
  });
});
