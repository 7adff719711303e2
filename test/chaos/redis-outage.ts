/**
 * Redis SIGKILLed and restarted under load. Two instances (each its own CACHE_DIR, the local
 * engine) share a private redis-server; a steady mix of hits, conversions and new masters goes to
 * both while Redis is killed, and restarted (empty: nothing is persisted) later.
 *
 * Promised (README "Several instances: Redis"): Redis is an accelerator, never a single point of
 * failure. So: no answer but 200 through the whole run; and every master made is on the disk of
 * the instance that made it (proved by a restarted instance without Redis: `HIT; tier=disk+transform`,
 * no engine call), and reaches the other instance once Redis is back (or was on its own disk
 * already), again without an engine call: zero lost masters.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createClient } from '@redis/client';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';
import { makeImage } from '../helpers/images.js';
import { startRedis } from '../helpers/redis.js';
import {
  closePools,
  formatTally,
  Load,
  ms,
  percentile,
  seededRandom,
  send,
  shuffle,
  statusCode,
  tally,
  type HttpAnswer,
  type HttpRequest,
  type Scenario,
} from './harness.js';

type Name = 'A' | 'B';
const NAMES: Name[] = ['A', 'B'];
const other = (name: Name): Name => (name === 'A' ? 'B' : 'A');

interface Master {
  id: string;
  hash: string;
  /** The part of the query that makes the master (what the local engine honors). */
  query: string;
  /** Instances that answered a request for it with `X-Cache: MISS` (an engine run). */
  makers: Set<Name>;
  /** The load phase of its first MISS. */
  phase?: number;
}

const FORMATS = ['png', 'webp', 'jpeg'] as const;

export const redisOutage: Scenario = {
  name: 'redis-outage',
  title: 'Redis SIGKILLed and restarted under load, two instances',
  async run(scale, report) {
    const random = seededRandom(1701);
    const redis = await startRedis();
    const prefix = `chaos-${randomUUID().slice(0, 8)}`;
    const dirs: Record<Name, string> = { A: await tempDir('clarity-chaos-a-'), B: await tempDir('clarity-chaos-b-') };
    const servers: TestServer[] = [];
    const origins = {} as Record<Name, string>;
    const instances = {} as Record<Name, TestServer>;

    async function startPair(withRedis: boolean): Promise<void> {
      for (const name of NAMES) {
        const server = await startTestServer(
          { HOST: '127.0.0.1', ...(withRedis ? { REDIS_URL: redis.url, REDIS_PREFIX: prefix, REDIS_TIMEOUT_MS: '200' } : {}) },
          dirs[name],
        );
        servers.push(server);
        instances[name] = server;
        origins[name] = `http://127.0.0.1:${(await server.listen(0)).port}`;
        if (withRedis) await server.waitForLog('redis connected');
      }
    }
    async function stopPair(): Promise<void> {
      await closePools();
      for (const server of servers.splice(0)) await stopTestServer(server, { keepDir: true });
    }

    try {
      await startPair(true);

      // Sources are uploaded to both: Redis also carries sources, and loses them when it dies.
      const sourceCount = 3 + scale;
      const hashes: string[] = [];
      for (let i = 0; i < sourceCount; i++) {
        const png = await makeImage(12, 12, { seed: 100 + i });
        for (const name of NAMES) {
          const res = await send({ origin: origins[name], path: '/sources', method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
          if (res.status !== 201 && res.status !== 200) throw new Error(`upload to ${name} answered ${res.status}`);
          if (name === 'A') hashes.push(JSON.parse(res.body.toString()).hash as string);
        }
      }

      // Every master the run may ask for, in a shuffled order: source × scale × sharpen.
      const fresh: Master[] = shuffle(
        random,
        hashes.flatMap((hash, s) =>
          [1.5, 2].flatMap((scaleFactor) =>
            Array.from({ length: 21 }, (_, k) => ({
              id: `s${s}x${scaleFactor}sh${k / 2}`,
              hash,
              query: `scale=${scaleFactor}&sharpen=${k / 2}`,
              makers: new Set<Name>(),
            })),
          ),
        ),
      );
      const masters = new Map<string, Master>();
      const answered: { path: string; master: Master }[] = [];
      let phase = 1;
      const perPhase = 25 * scale;

      const next = (): HttpRequest | undefined => {
        const target: Name = random() < 0.5 ? 'A' : 'B';
        const roll = random();
        const known = [...masters.values()];
        let master: Master;
        let path: string;
        let kind: string;
        if (roll < 0.6 && answered.length > 0) {
          kind = 'hit';
          ({ master, path } = answered[Math.floor(random() * answered.length)]!);
        } else if (roll < 0.85 && known.length > 0) {
          kind = 'conversion';
          master = known[Math.floor(random() * known.length)]!;
          path = `/upscale/${master.hash}?${master.query}&format=${FORMATS[Math.floor(random() * 3)]}&w=${8 + Math.floor(random() * 16)}`;
        } else {
          kind = 'new master';
          master = fresh.pop() ?? known[Math.floor(random() * known.length)]!;
          masters.set(master.id, master);
          path = `/upscale/${master.hash}?${master.query}&format=png`;
        }
        return { origin: origins[target], path, tag: `${phase}|${target}|${kind}|${master.id}` };
      };
      const onAnswer = (answer: HttpAnswer) => {
        const [p, target, , id] = (answer.request.tag ?? '').split('|');
        const master = masters.get(id ?? '');
        if (!master || answer.status !== 200) return;
        answered.push({ path: answer.request.path, master });
        if (answer.headers['x-cache'] === 'MISS') {
          master.makers.add(target as Name);
          master.phase ??= Number(p);
        }
      };

      const load = new Load(next, 6, onAnswer);
      await load.waitForCompleted(perPhase);
      phase = 2;
      const killedAt = performance.now();
      await redis.stop({ crash: true });
      await load.waitForCompleted(2 * perPhase);
      await redis.start();
      await Promise.all(NAMES.map((name) => instances[name].waitForLog('redis connection restored')));
      const outageMs = performance.now() - killedAt;
      phase = 3;
      await load.waitForCompleted(load.completed + perPhase);
      await load.stop();

      const answers = load.answers;
      const byPhase = (p: number) => answers.filter((a) => a.request.tag?.startsWith(`${p}|`));
      report.figure('requests (before / during / after the outage)', [1, 2, 3].map((p) => byPhase(p).length).join(' / '));
      report.figure('answers', formatTally(tally(answers, statusCode)));
      report.figure('X-Cache', formatTally(tally(answers.filter((a) => a.status === 200), (a) => a.headers['x-cache'] ?? '-')));
      report.figure('p50 / p99 before', `${ms(percentile(byPhase(1).map((a) => a.ms), 0.5))} / ${ms(percentile(byPhase(1).map((a) => a.ms), 0.99))}`);
      report.figure('p50 / p99 during', `${ms(percentile(byPhase(2).map((a) => a.ms), 0.5))} / ${ms(percentile(byPhase(2).map((a) => a.ms), 0.99))}`);
      report.figure('Redis down (kill to both reconnected)', ms(outageMs));
      const made = [...masters.values()].filter((m) => m.makers.size > 0);
      report.figure('masters made (before / during / after)', [1, 2, 3].map((p) => made.filter((m) => m.phase === p).length).join(' / '));
      report.figure('masters made by both instances', made.filter((m) => m.makers.size === 2).length);
      const bad = answers.filter((a) => a.status !== 200);
      report.check(
        bad.length === 0,
        `every answer under load is a 200; got ${formatTally(tally(bad, statusCode))} (first: ${bad[0]?.request.path} → ${bad[0]?.body.toString().slice(0, 200)})`,
      );
      report.check(made.length >= 10, `the run made masters in every phase (made ${made.length})`);

      // 1. From its own disk: restarted without Redis (memory empty, no shared tier), every maker
      //    converts each of its masters from disk, with no engine call.
      await stopPair();
      await startPair(false);
      let fromOwnDisk = 0;
      let othersHadIt = 0;
      const lost = new Set<string>();
      for (const master of made) {
        const path = `/upscale/${master.hash}?${master.query}&format=png&w=5`;
        for (const name of NAMES) {
          if (master.makers.has(name)) {
            const res = await send({ origin: origins[name], path });
            if (res.status === 200 && res.headers['x-cache'] === 'HIT; tier=disk+transform') fromOwnDisk++;
            else lost.add(`${master.id} on ${name} (maker): ${res.status} ${res.headers['x-cache'] ?? ''}`);
          } else {
            // HEAD never starts engine work: it says whether the master is on this disk already.
            const res = await send({ origin: origins[name], path, method: 'HEAD' });
            if ((res.headers['x-cache'] ?? '').startsWith('HIT')) othersHadIt++;
          }
        }
      }
      const engineCallsFromDisk = instances.A.engineCalls() + instances.B.engineCalls();

      // 2. Redis back (restarted empty): the maker's disk hit refills it, and the other instance
      //    gets the master from Redis (or its own disk), still without an engine call.
      await stopPair();
      await redis.stop();
      await redis.start();
      const watcher = createClient({ url: redis.url });
      await watcher.connect();
      await watcher.configSet('notify-keyspace-events', 'K$');
      const subscriber = watcher.duplicate();
      await subscriber.connect();
      const refilled = new Set<string>();
      let onRefill = () => {};
      await subscriber.pSubscribe(`__keyspace@*__:${prefix}:master:*`, (_event, channel) => {
        refilled.add(channel);
        onRefill();
      });
      let viaRedis = 0;
      try {
        await startPair(true);
        for (const master of made) {
          const maker = [...master.makers][0]!;
          const res = await send({ origin: origins[maker], path: `/upscale/${master.hash}?${master.query}&format=png&w=6` });
          if (res.status !== 200 || !(res.headers['x-cache'] ?? '').startsWith('HIT')) {
            lost.add(`${master.id} on ${maker} (maker, Redis back): ${res.status} ${res.headers['x-cache'] ?? ''}`);
          }
        }
        // Promotion into Redis is off the response path: Redis says when each master is written.
        await new Promise<void>((resolve) => {
          onRefill = () => refilled.size >= made.length && resolve();
          onRefill();
        });
        for (const master of made) {
          if (master.makers.size === 2) continue;
          const name = other([...master.makers][0]!);
          const res = await send({ origin: origins[name], path: `/upscale/${master.hash}?${master.query}&format=png&w=7` });
          const cache = res.headers['x-cache'] ?? '';
          if (res.status === 200 && cache === 'HIT; tier=redis+transform') viaRedis++;
          else if (res.status !== 200 || !/^HIT; tier=(redis|disk)\+transform$/.test(cache)) {
            lost.add(`${master.id} on ${name} (other, Redis back): ${res.status} ${cache}`);
          }
        }
      } finally {
        await subscriber.quit().catch(() => undefined);
        await watcher.quit().catch(() => undefined);
      }
      const engineCallsAfter = instances.A.engineCalls() + instances.B.engineCalls();

      report.figure('maker hits from its own disk (no Redis)', `${fromOwnDisk} of ${made.reduce((n, m) => n + m.makers.size, 0)}`);
      report.figure("other instance already had it on disk", othersHadIt);
      report.figure('other instance served it via Redis once back', viaRedis);
      report.figure('masters refilled into Redis from disk', refilled.size);
      report.figure('engine calls during the checks', engineCallsFromDisk + engineCallsAfter);
      report.figure('lost masters', lost.size);
      report.check(lost.size === 0, `every master is served by its maker from disk and by the other instance: ${[...lost].slice(0, 5).join('; ')}`);
      report.equal(engineCallsFromDisk + engineCallsAfter, 0, 'engine calls while serving the masters made under load');
    } finally {
      await stopPair();
      await redis.stop();
      for (const dir of Object.values(dirs)) await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    }
  },
};
