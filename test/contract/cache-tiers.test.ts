/** The CacheTier contract, run against every tier; Redis is the suite's real server. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { createClient } from '@keyv/redis';
import { createDiskTier } from '../../src/cache/disk.js';
import { createMemoryTier } from '../../src/cache/memory.js';
import { createRedisTier } from '../../src/cache/redis.js';
import { createLogger } from '../../src/logger.js';
import { cacheTierContract } from './cache-tier.js';

const logger = createLogger('silent');

cacheTierContract('memory', async () => ({ tier: createMemoryTier({ maxBytes: 64 * 1024 * 1024 }) }));

cacheTierContract('disk', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'clarity-disk-contract-'));
  const tier = createDiskTier({ dir, maxBytes: 256 * 1024 * 1024, logger });
  await tier.ready();
  return { tier, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

cacheTierContract('redis', async () => {
  // A prefix of this test's own: the suite's Redis is shared with other test files, so it cannot
  // be flushed; the test's keys are deleted instead.
  const prefix = `contract-${randomBytes(6).toString('hex')}`;
  const tier = createRedisTier({
    url: inject('redisUrl'),
    prefix,
    masterTtlSeconds: 600,
    variantTtlSeconds: 600,
    maxValueBytes: 8 * 1024 * 1024,
    // Generous: this suite checks behaviour, not latency, and CI machines stall.
    timeoutMs: 2000,
    logger,
  });
  await tier.whenUp();
  return {
    tier,
    async cleanup() {
      const raw = createClient({ url: inject('redisUrl') });
      raw.on('error', () => undefined);
      await raw.connect();
      const keys = await raw.keys(`${prefix}:*`);
      if (keys.length > 0) await raw.del(keys);
      raw.destroy();
    },
  };
});
