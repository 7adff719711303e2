/**
 * Once per `npm test`: a real Redis for the suite. `REDIS_URL` wins when given (CI on a machine
 * with a Redis of its own); otherwise a private redis-server is started on a free port. Tests read
 * it with `inject('redisUrl')` and namespace their keys with a prefix of their own.
 */
import type { TestProject } from 'vitest/node';
import { startRedis } from '../helpers/redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject) {
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL);
    return;
  }
  const redis = await startRedis();
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
  };
}
