/**
 * The shared tier: Redis through keyv + @keyv/redis. An accelerator, never a single point of
 * failure: every failure (refused, dropped, slow, full) is a logged miss or a skipped write, never a
 * thrown error, and never the only copy of a master (the disk tier is written too).
 *
 * Binary without bloat. Keyv's default serializer is JSON, which turns a Buffer into a base64
 * string (+33 %), and @redis/client decodes replies as UTF-8 strings, which mangles binary. So:
 * - writes: Keyv's `serialize` returns one Buffer frame (`frame.ts`: small JSON header + raw
 *   bytes); @redis/client sends a Buffer argument as is;
 * - reads: the client is built with a type mapping that returns bulk strings as Buffers. Keyv only
 *   runs `deserialize` on strings; a Buffer is handed back untouched by `get(key, { raw: true })`
 *   and decoded here. A 100 KB image costs 100 KB plus the header (about 100 bytes) in Redis.
 *
 * Bounded. Each operation races a `timeoutMs` timer. The client does not queue commands while
 * disconnected (`disableOfflineQueue`: a command fails at once instead of waiting for a reconnect
 * that may take minutes), keeps reconnecting in the background with a capped backoff, and a circuit
 * breaker stops sending commands after consecutive failures (a hung Redis that still holds the TCP
 * connection would otherwise cost every request `timeoutMs`).
 *
 * Keys: `<prefix>:<kind>:<hex>`. TTL: masters and sources `masterTtlSeconds`, variants
 * `variantTtlSeconds`, failures until their `expiresAt` (any entry with an earlier `expiresAt`
 * expires then). Values over `maxValueBytes` are not written: they live on disk only. Because keys
 * are content-addressed, a skipped write never leaves a different value readable under the key.
 */
import KeyvRedis, { createClient, Keyv } from '@keyv/redis';
import type { Logger } from '../logger.js';
import { createCircuitBreaker, type BreakerOptions } from './breaker.js';
import { decodeFrame, encodeFrame, encodeHeader } from './frame.js';
import { isExpired, parseCacheKey, type CacheEntry, type CacheTier, type EntryMeta } from './types.js';

export type { BreakerOptions } from './breaker.js';

export interface RedisTierOptions {
  /** `redis://[user:password@]host:port[/db]`; never logged or reported. */
  url: string;
  /** Namespace of every key: `<prefix>:<kind>:<hex>`. */
  prefix: string;
  /** TTL of masters (and sources), seconds. */
  masterTtlSeconds: number;
  /** TTL of variants, seconds. */
  variantTtlSeconds: number;
  /** Values (data plus header) larger than this are not written to Redis. Bytes. */
  maxValueBytes: number;
  /** Longest one operation may take before it counts as a failed miss, ms. */
  timeoutMs: number;
  logger: Logger;
  /** Failure threshold and cool-downs; see `BREAKER_DEFAULTS`. */
  breaker?: BreakerOptions;
  /** Epoch ms, for `expiresAt`; `Date.now` by default. */
  clock?: () => number;
  /** Longest wait between two reconnection attempts, ms. Default 2000. */
  reconnectMaxDelayMs?: number;
}

export interface RedisTierStatus {
  /** `up`: connected; `down`: not connected (reconnecting); `open`: breaker open, not trying. */
  state: 'up' | 'down' | 'open';
  /** The last failure, without the URL (it may hold a password). */
  lastError?: string;
}

export interface RedisTier extends CacheTier {
  readonly name: 'redis';
  /** Releases files, connections and timers (always present on this tier). */
  close(): Promise<void>;
  /** For `/readyz`. */
  status(): RedisTierStatus;
  /**
   * Resolves once connected (at once when connected now). Nothing needs to wait for it: until
   * then every read is a miss and every write is skipped. Startup checks and tests use it.
   */
  whenUp(): Promise<void>;
}

/** RESP_TYPES.BLOB_STRING of @redis/client (`$`), which @keyv/redis does not re-export. */
const RESP_BLOB_STRING = 36;

/** TCP connect timeout: an unreachable host (no RST) must not leave the client stuck connecting. */
const CONNECT_TIMEOUT_MS = 3000;

/** Hard cap on commands waiting for replies: a hung server must not grow memory without bound. */
const COMMAND_QUEUE_MAX = 10_000;

class RedisTimeoutError extends Error {
  constructor(operation: string, ms: number) {
    super(`redis ${operation} took longer than ${ms} ms`);
    this.name = 'RedisTimeoutError';
  }
}

/** An error message fit for logs and /readyz: any URL (and its credentials) cut out. */
export function scrubRedisMessage(message: string): string {
  return message.replace(/rediss?:\/\/\S*/gi, 'redis://[redacted]');
}

/** The error to log: same name, code and stack, with any URL cut out of message and stack. */
function sanitizeError(error: unknown): Error {
  const source = error instanceof Error ? error : new Error(String(error));
  const safe = new Error(scrubRedisMessage(source.message));
  safe.name = source.name;
  if (source.stack !== undefined) safe.stack = scrubRedisMessage(source.stack);
  const code = (source as { code?: unknown }).code;
  if (typeof code === 'string') Object.assign(safe, { code });
  return safe;
}

function withTimeout<T>(promise: Promise<T>, ms: number, operation: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeoutError(operation, ms)), ms);
  });
  // Promise.race handles a late rejection of `promise`: no unhandled rejection after a timeout.
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function createRedisTier(options: RedisTierOptions): RedisTier {
  const { prefix, timeoutMs, maxValueBytes } = options;
  const clock = options.clock ?? Date.now;
  const reconnectMaxDelayMs = options.reconnectMaxDelayMs ?? 2000;
  const log = options.logger.child({ tier: 'redis' });
  let lastError: string | undefined;
  let connected = false;
  let everConnected = false;
  let warnedUnreachable = false;
  let closed = false;
  const upWaiters: (() => void)[] = [];

  const breaker = createCircuitBreaker(options.breaker, Date.now, {
    onOpen: ({ cooldownMs, failures }) =>
      log.warn({ cooldownMs, failures, lastError }, 'redis tier circuit open: serving from memory and disk'),
    onClose: () => {
      log.info('redis tier circuit closed: using redis again');
      if (connected) for (const resolve of upWaiters.splice(0)) resolve();
    },
  });

  const client = createClient({
    url: options.url,
    disableOfflineQueue: true,
    commandsQueueMaxLength: COMMAND_QUEUE_MAX,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Never give up: Redis coming back is the normal end of an outage. Jitter spreads the
      // reconnects of many instances after a Redis restart.
      reconnectStrategy: (retries: number) =>
        Math.min(50 * 2 ** Math.min(retries, 10), reconnectMaxDelayMs) * (0.75 + Math.random() * 0.5),
    },
  }).withTypeMapping({ [RESP_BLOB_STRING]: Buffer });

  // Unhandled, an `error` event would crash the process: the client emits one per failed
  // (re)connection attempt, so they are logged at debug; the transitions are logged above that.
  client.on('error', (error: unknown) => {
    lastError = sanitizeError(error).message;
    if (connected) {
      connected = false;
      log.warn({ err: sanitizeError(error) }, 'redis connection lost: serving from memory and disk while reconnecting');
    } else if (!everConnected && !warnedUnreachable) {
      warnedUnreachable = true;
      log.warn({ err: sanitizeError(error) }, 'redis unreachable: serving from memory and disk until it answers');
    } else {
      log.debug({ err: sanitizeError(error) }, 'redis connection attempt failed');
    }
  });
  client.on('ready', () => {
    connected = true;
    log.info(everConnected ? 'redis connection restored' : 'redis connected');
    everConnected = true;
    // A fresh connection is better evidence than the breaker's timer: use Redis again now.
    breaker.reset();
    for (const resolve of upWaiters.splice(0)) resolve();
  });

  const store = new KeyvRedis<CacheEntry>(client as unknown as ConstructorParameters<typeof KeyvRedis>[0], {
    namespace: prefix,
    keyPrefixSeparator: ':',
    // Errors must reach this module, not only the `error` event, so that the breaker counts them.
    throwOnErrors: true,
    throwOnConnectError: true,
  });
  const keyv = new Keyv<CacheEntry>(store, {
    namespace: prefix,
    // The adapter prefixes (`<prefix>:`); keyv's own prefix would add a second one.
    useKeyPrefix: false,
    throwOnErrors: true,
    // Keyv's types say string; @redis/client sends a Buffer argument byte for byte.
    serialize: ((data: { value?: CacheEntry }) => encodeFrame(data.value as CacheEntry, { checksum: false })) as unknown as Keyv['serialize'],
    // Only reached for a string reply, which the Buffer type mapping never produces: refuse it.
    deserialize: () => undefined,
  });
  // Always listened to (the house rule: hookified, under @keyv/redis, can throw an error event that
  // has no listener, and keyv's behaviour here has changed between versions), but silent:
  // everything it reports was already logged by the client listener above or by the failed
  // operation's own catch.
  keyv.on('error', () => undefined);

  // Connect in the background: construction must not wait for (or fail on) Redis. Connecting
  // here, not through the adapter, matters: `connect()` marks the client open at once and the
  // reconnect strategy keeps it open, so @keyv/redis never runs its own connect path, which on a
  // failure destroys the client and, on each retry, adds another set of event listeners.
  client.connect().catch((error: unknown) => {
    if (!closed) log.warn({ err: sanitizeError(error) }, 'redis client stopped connecting');
  });

  function failed(operation: string, key: string, error: unknown): void {
    lastError = sanitizeError(error).message;
    log.debug({ err: sanitizeError(error), operation, key }, 'redis operation failed: treated as a miss');
    breaker.failure();
  }

  function ttlMs(meta: EntryMeta): number | undefined {
    const byKind =
      meta.kind === 'variant'
        ? options.variantTtlSeconds * 1000
        : meta.kind === 'failure' || meta.kind === 'job'
          ? undefined
          : options.masterTtlSeconds * 1000;
    if (meta.expiresAt === undefined) return byKind ?? options.variantTtlSeconds * 1000;
    const left = meta.expiresAt - clock();
    return byKind === undefined ? left : Math.min(byKind, left);
  }

  return {
    name: 'redis',
    async get(key) {
      if (closed || !parseCacheKey(key) || !breaker.allow()) return undefined;
      let raw: unknown;
      try {
        raw = await withTimeout(keyv.get(key, { raw: true }), timeoutMs, 'get');
        breaker.success();
      } catch (error) {
        failed('get', key, error);
        return undefined;
      }
      if (raw === undefined || raw === null) return undefined;
      const decoded = Buffer.isBuffer(raw) ? decodeFrame(raw, { requireChecksum: false }) : { error: 'not a binary value' };
      if ('error' in decoded || decoded.entry.meta.kind !== parseCacheKey(key)?.kind) {
        log.warn({ key, reason: 'error' in decoded ? decoded.error : 'kind does not match the key' }, 'ignored an unreadable redis value');
        return undefined;
      }
      if (isExpired(decoded.entry.meta, clock())) return undefined;
      return decoded.entry;
    },
    async set(key, entry) {
      if (closed || !parseCacheKey(key)) return;
      const bytes = encodeHeader(entry, { checksum: false }).length + entry.data.length;
      if (bytes > maxValueBytes) {
        log.debug({ key, bytes, maxValueBytes }, 'value too large for redis: disk only');
        return;
      }
      const ttl = ttlMs(entry.meta);
      if (ttl !== undefined && ttl <= 0) return;
      if (!breaker.allow()) return;
      try {
        await withTimeout(keyv.set(key, entry, ttl), timeoutMs, 'set');
        breaker.success();
      } catch (error) {
        failed('set', key, error);
      }
    },
    async delete(key) {
      if (closed || !breaker.allow()) return;
      try {
        await withTimeout(keyv.delete(key), timeoutMs, 'delete');
        breaker.success();
      } catch (error) {
        failed('delete', key, error);
      }
    },
    status() {
      const state = breaker.state() !== 'closed' ? 'open' : connected ? 'up' : 'down';
      return lastError === undefined || state === 'up' ? { state } : { state, lastError };
    },
    whenUp() {
      if (connected && breaker.state() === 'closed') return Promise.resolve();
      return new Promise<void>((resolve) => upWaiters.push(resolve));
    },
    async close() {
      if (closed) return;
      closed = true;
      // Pending writes were each bounded by `timeoutMs` and awaited by their callers; what is left
      // is a command a hung server never answered: drop it rather than wait.
      try {
        client.destroy();
      } catch {
        // Already closed.
      }
    },
  };
}
