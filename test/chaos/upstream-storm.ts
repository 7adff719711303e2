/**
 * An upstream storm: the fake Segmind answers 30% of submits and status polls with a 5xx and 20%
 * with a 429 without `Retry-After`, and keeps each job PROCESSING for several polls, while
 * concurrent clients ask for N distinct payloads, some of them several times.
 *
 * The fake has no probabilistic mode: its `onRequest` hook runs before the fault queue is read, so
 * the storm injects one fault for the very call that is arriving, chosen by a seeded random source
 * (the same seed, the same sequence of verdicts). It has no latency fault either, so "slow" is
 * `pollsBeforeComplete` polls at `SEGMIND_POLL_INTERVAL_MS`, each one a chance to fail.
 *
 * Promised (README "What upstream failures look like to a client", "Never paying twice"): every
 * request ends 200 or in a documented status (503 UPSTREAM_UNAVAILABLE or 504 UPSCALE_PENDING, with
 * `Retry-After`); a submit is repeated only after a 429/5xx; no payload is ever billed twice, not
 * even by the retries of clients after their 503s (a journaled job is resumed, not resubmitted).
 */
import { createFakeSegmind, FAKE_SEGMIND_KEY, FAULTS, type FakeSegmind, type FaultTarget } from '../fakes/segmind.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';
import { makeImage } from '../helpers/images.js';
import {
  closePools,
  formatTally,
  Load,
  ms,
  percentile,
  pick,
  problemDefect,
  problemOf,
  seededRandom,
  send,
  shuffle,
  statusCode,
  tally,
  type HttpAnswer,
  type Scenario,
} from './harness.js';

/** The statuses a client may see during the storm, besides 200. */
const DOCUMENTED = new Map([
  [503, 'UPSTREAM_UNAVAILABLE'],
  [504, 'UPSCALE_PENDING'],
]);

export const upstreamStorm: Scenario = {
  name: 'upstream-storm',
  title: 'upstream storm: 30% 5xx, 20% 429 without Retry-After, slow polls',
  async run(scale, report) {
    const random = seededRandom(4242);
    const injected: Record<string, number> = {};
    let storming = true;
    // Assigned before the first request can arrive: the hook only runs for requests.
    let fake!: FakeSegmind;
    fake = await createFakeSegmind({
      pollsBeforeComplete: 4,
      onRequest(request) {
        if (!storming) return;
        const target: FaultTarget | undefined = request.route === 'POST /v2/clarity-upscaler' ? 'submit' : request.route === 'GET /v2/requests/:id/status' ? 'poll' : undefined;
        if (!target) return;
        const roll = random();
        if (roll < 0.3) {
          const status = pick(random, [500, 502, 503, 504] as const);
          fake.inject(target, FAULTS.serverError(status));
          injected[`${target} 5xx`] = (injected[`${target} 5xx`] ?? 0) + 1;
        } else if (roll < 0.5) {
          fake.inject(target, FAULTS.rateLimited());
          injected[`${target} 429`] = (injected[`${target} 429`] ?? 0) + 1;
        }
      },
    });
    let server: TestServer | undefined;
    try {
      server = await startTestServer({
        HOST: '127.0.0.1',
        UPSCALE_ENGINE: 'segmind',
        SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
        SEGMIND_BASE_URL: fake.url,
        SEGMIND_POLL_INTERVAL_MS: '50',
        UPSTREAM_CONCURRENCY: '4',
        UPSTREAM_RPM: '6000',
        UPSTREAM_RETRIES: '2',
        // Short enough that a request meets the storm's worst stretches as a 504.
        REQUEST_TIMEOUT_MS: '6000',
      });
      const origin = `http://127.0.0.1:${(await server.listen(0)).port}`;
      const png = await makeImage(8, 8, { seed: 7 });
      const uploaded = await send({ origin, path: '/sources', method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
      const { hash } = JSON.parse(uploaded.body.toString()) as { hash: string };

      // N distinct payloads; a third of them asked for twice or three times.
      const distinct = 8 * scale;
      const paths = shuffle(
        random,
        Array.from({ length: distinct }, (_, seed) => Array(seed % 3 === 0 ? 1 + (seed % 2) + 1 : 1).fill(`/upscale/${hash}?seed=${seed}&format=png`) as string[]).flat(),
      );
      let i = 0;
      const stormStarted = performance.now();
      const load = new Load(() => (i < paths.length ? { origin, path: paths[i++]!, tag: 'storm' } : undefined), 2 * distinct > 16 ? 16 : 2 * distinct);
      await load.done();
      const stormMs = performance.now() - stormStarted;
      const billedDuringStorm = fake.calls.billed;
      const submitsDuringStorm = fake.submits.length;

      // The storm ends; every payload is asked for once more: all land, none is billed again.
      storming = false;
      const settleStarted = performance.now();
      const settle = await Promise.all(
        Array.from({ length: distinct }, (_, seed) => send({ origin, path: `/upscale/${hash}?seed=${seed}&format=png`, tag: 'settle' })),
      );
      const settleMs = performance.now() - settleStarted;

      const storm = load.answers;
      const submitFaults = (injected['submit 5xx'] ?? 0) + (injected['submit 429'] ?? 0);
      const billedBySeed = new Map<number, number>();
      for (const job of fake.jobs.values()) {
        const seed = Number(job.payload.seed);
        billedBySeed.set(seed, (billedBySeed.get(seed) ?? 0) + 1);
      }
      const twice = [...billedBySeed].filter(([, n]) => n > 1);

      report.figure('distinct payloads / requests', `${distinct} / ${paths.length}`);
      report.figure('faults injected', formatTally(injected));
      report.figure('storm answers', formatTally(tally(storm, statusCode)));
      report.figure('storm p50 / p99 / max', `${ms(percentile(storm.map((a) => a.ms), 0.5))} / ${ms(percentile(storm.map((a) => a.ms), 0.99))} / ${ms(Math.max(...storm.map((a) => a.ms)))}`);
      report.figure('storm duration', ms(stormMs));
      report.figure('submits / billed during the storm', `${submitsDuringStorm} / ${billedDuringStorm}`);
      report.figure('after the storm: answers', formatTally(tally(settle, statusCode)));
      report.figure('after the storm: duration', ms(settleMs));
      report.figure('submits / billed in all', `${fake.submits.length} / ${fake.calls.billed}`);
      report.figure('payloads billed twice', twice.length);

      const undocumented = storm.filter((a) => !documented(a));
      report.check(
        undocumented.length === 0,
        `every storm answer is a 200, a 503 UPSTREAM_UNAVAILABLE or a 504 UPSCALE_PENDING with Retry-After, as clean problem+json: ${undocumented
          .slice(0, 3)
          .map((a) => `${statusCode(a)} ${problemDefect(a) ?? ''} retry-after=${a.headers['retry-after']}`)
          .join('; ')}`,
      );
      report.check(
        submitsDuringStorm <= distinct + submitFaults,
        `submits (${submitsDuringStorm}) ≤ distinct payloads (${distinct}) + submits answered 429/5xx (${submitFaults})`,
      );
      report.check(twice.length === 0, `no payload billed twice: ${twice.map(([seed, n]) => `seed ${seed} ×${n}`).join(', ')}`);
      report.check(
        settle.every((a) => a.status === 200),
        `once the storm is over every payload is served: ${formatTally(tally(settle, statusCode))}`,
      );
      report.equal(fake.calls.billed, distinct, 'billed jobs in all (one per payload)');
      report.check(Object.keys(injected).length === 4, `the storm hit submits and polls with both 5xx and 429: ${formatTally(injected)}`);
    } finally {
      await closePools();
      if (server) await stopTestServer(server);
      await fake.close();
    }
  },
};

function documented(answer: HttpAnswer): boolean {
  if (answer.status === 200) return (answer.headers['content-type'] ?? '') === 'image/png';
  const code = DOCUMENTED.get(answer.status);
  if (!code || problemDefect(answer) !== undefined) return false;
  return problemOf(answer)?.code === code && Number(answer.headers['retry-after']) >= 1;
}
