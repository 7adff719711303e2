/**
 * The Redis tier against real redis-servers: the suite's shared one for storage behaviour (keys
 * under a prefix of this file's own), and private ones for faults (killed, slow, restarted, never
 * there), so that no other test file sees them.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createClient } from '@keyv/redis';
import { createRedisTier, type RedisTier, type RedisTierOptions } from '../../../src/cache/redis.js';
import { cacheKey, type CacheEntry, type EntryKind, type EntryMeta } from '../../../src/cache/types.js';
import { freePort } from '../../helpers/redis.js';
import { captureLogger, INFO, WARN, type CapturedLogger } from '../../contract/capture-logger.js';
import { startRedis, type RedisProcess } from '../../helpers/redis.js';

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

/** Resolves `promise`, or fails the test after `ms` instead of hanging it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
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
    await within(tier.whenUp(), 5000, 'connect');
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
    const secretLogs = captureLogger();
    const locked = createRedisTier({ url, prefix, timeoutMs: 200, logger: secretLogs.logger, ...options });
    try {
      for (let i = 0; i < 50 && !locked.status().lastError; i++) await new Promise((r) => setTimeout(r, 20));
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
  const margin = 150;
  let redis: RedisProcess;
  let tier: RedisTier;
  let logs: CapturedLogger;
  const make = (url: string, extra: Partial<RedisTierOptions> = {}) =>
    createRedisTier({
      url,
      prefix: 'faults',
      masterTtlSeconds: 1000,
      variantTtlSeconds: 500,
      maxValueBytes: 1 << 20,
      timeoutMs,
      logger: logs.logger,
      breaker: { failureThreshold: 3, cooldownMs: 200, maxCooldownMs: 1000 },
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
    logs = captureLogger();
    tier = make(redis.url);
    await within(tier.whenUp(), 5000, 'connect');
  });
  afterEach(async () => {
    await tier.close();
  });

  it('killed: reads are misses within timeoutMs, writes do not throw, the breaker opens, then it comes back', async () => {
    const before = cacheKey('master', hex());
    await tier.set(before, entry(1000, { paid: true }));
    expect(await tier.get(before)).toBeDefined();

    await redis.stop({ crash: true });
    for (let i = 0; i < 3; i++) {
      const { value, ms } = await timed(() => tier.get(before));
      expect(value).toBeUndefined();
      expect(ms).toBeLessThan(timeoutMs + margin);
    }
    await expect(tier.set(cacheKey('master', hex()), entry(100, { paid: true }))).resolves.toBeUndefined();
    expect(tier.status().state).toBe('open');
    expect(tier.status().lastError).toBeDefined();
    expect(logs.find('circuit open', WARN)).toHaveLength(1);
    expect(logs.find('redis connection lost', WARN)).toHaveLength(1);

    // Open: no attempt at all, so no wait at all.
    const { ms } = await timed(() => tier.get(before));
    expect(ms).toBeLessThan(20);

    await redis.start();
    await within(tier.whenUp(), 5000, 'reconnect after restart');
    expect(tier.status()).toEqual({ state: 'up' });
    const after = cacheKey('variant', hex());
    await tier.set(after, entry(100, { kind: 'variant' }));
    expect(await tier.get(after)).toBeDefined();
    expect(logs.find('redis connection restored', INFO)).toHaveLength(1);
    expect(logs.find('circuit closed', INFO)).toHaveLength(1);
  });

  it('slow (a busy server): a read gives up after timeoutMs instead of holding the request', async () => {
    const key = cacheKey('master', hex());
    await tier.set(key, entry(100, { paid: true }));
    const blocker = await rawClient(redis.url);
    // A script that spins for 600 ms: Redis answers nobody meanwhile, the connection stays up.
    const busy = blocker
      .eval(
        "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > 600000 return 1",
      )
      .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    const { value, ms } = await timed(() => tier.get(key));
    expect(value).toBeUndefined();
    expect(ms).toBeLessThan(timeoutMs + margin);
    await busy;
    blocker.destroy();
    expect(await tier.get(key)).toBeDefined();
  });

  it('absent at startup: construction does not wait, reads are misses, and it connects once Redis appears', async () => {
    const port = await freePort();
    const later = make(`redis://127.0.0.1:${port}`);
    try {
      const { value, ms } = await timed(() => later.get(cacheKey('master', hex())));
      expect(value).toBeUndefined();
      expect(ms).toBeLessThan(timeoutMs + margin);
      expect(later.status().state).not.toBe('up');
      for (let i = 0; i < 50 && logs.find('redis unreachable', WARN).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(logs.find('redis unreachable', WARN)).toHaveLength(1);
      const server = await startRedis(port);
      try {
        await within(later.whenUp(), 5000, 'connect once started');
        const key = cacheKey('master', hex());
        await later.set(key, entry(10));
        expect(await later.get(key)).toBeDefined();
      } finally {
        await later.close();
        await server.stop();
      }
    } finally {
      await later.close();
    }
  });
});
