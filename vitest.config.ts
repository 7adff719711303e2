import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Redis is started once for the whole run (test/setup/redis.ts) and shared through REDIS_URL.
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: model inference runs in worker threads already; more forks only contend.
    maxWorkers: 2,
  },
});
