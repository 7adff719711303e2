/**
 * `kill -9` while jobs are being polled. A real `clarity-cdn serve` process (segmind engine, the
 * fake upstream holding every job PROCESSING) takes a batch of jobs through `POST /jobs`; once every
 * one is submitted upstream and polled, the process is SIGKILLed and started again on the same
 * CACHE_DIR, and the fake lets the jobs finish.
 *
 * Promised (README "Jobs API", Restarts; "Never paying twice"): at start every unfinished job runs
 * again and every journaled upstream job is resumed, without waiting for a request. So every job
 * ends COMPLETED with its image, with zero new submits, and the only client requests after the
 * crash are status reads.
 */
import { rm } from 'node:fs/promises';
import sharp from 'sharp';
import { createFakeSegmind, FAKE_SEGMIND_KEY } from '../fakes/segmind.js';
import { tempDir } from '../helpers/app.js';
import { makeImage } from '../helpers/images.js';
import { closePools, formatTally, ms, send, sendJson, spawnServer, tally, type Scenario, type ServerProcess } from './harness.js';

export const killDuringPoll: Scenario = {
  name: 'kill-during-poll',
  title: 'kill -9 while jobs are being polled, restart on the same CACHE_DIR',
  async run(scale, report) {
    const jobs = Math.min(100, 20 * scale);
    const fake = await createFakeSegmind();
    const cacheDir = await tempDir('clarity-chaos-kill-');
    const env = {
      CACHE_DIR: cacheDir,
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '100',
      // Every job in flight at once: the crash must catch all of them mid-poll.
      UPSTREAM_CONCURRENCY: String(jobs),
      UPSTREAM_RPM: '6000',
    };
    const processes: ServerProcess[] = [];
    try {
      const first = await spawnServer(env);
      processes.push(first);
      const png = await makeImage(16, 12, { seed: 3 });
      const uploaded = await sendJson({ origin: first.origin, path: '/sources', method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
      const hash = uploaded.json.hash as string;

      fake.hold();
      const batch = await sendJson({
        origin: first.origin,
        path: '/jobs',
        method: 'POST',
        json: Array.from({ length: jobs }, (_, seed) => ({ source: hash, params: { seed, scale: 2 } })),
      });
      if (batch.answer.status !== 200) throw new Error(`POST /jobs answered ${batch.answer.status}: ${batch.answer.body.toString()}`);
      const items = batch.json.items as { status: number; job?: { id: string } }[];
      const ids = items.flatMap((item) => (item.job ? [item.job.id] : []));
      report.check(
        items.every((item) => item.status === 202) && ids.length === jobs,
        `every job is accepted (202): ${formatTally(tally(items, (item) => String(item.status)))}`,
      );

      // Submitted upstream, journaled and polled: the state a crash must not lose.
      await fake.waitFor(() => fake.jobs.size >= jobs && [...fake.jobs.values()].every((job) => job.polls >= 1));
      const submitsBefore = fake.submits.length;
      const pollsBefore = fake.calls.polls;
      await first.kill('SIGKILL');
      await closePools(first.origin);

      const restartedAt = performance.now();
      const second = await spawnServer(env);
      processes.push(second);
      await second.waitForLines(/resuming unfinished work/, 1);
      const resumed = JSON.parse(second.stdout().split('\n').find((l) => l.includes('resuming unfinished work')) ?? '{}') as { journal?: number; jobs?: number };
      fake.release();
      await second.waitForLines(/"msg":"job finished"/, jobs);
      const finishedMs = performance.now() - restartedAt;

      // The client's only part: reading each job's status (and, to check it, its image).
      const statuses = await Promise.all(ids.map((id) => sendJson({ origin: second.origin, path: `/jobs/${id}` })));
      const completed = statuses.filter((s) => s.json?.status === 'COMPLETED').length;
      const sample = await send({ origin: second.origin, path: `/jobs/${ids[0]}/result` });
      const meta = sample.status === 200 ? await sharp(sample.body).metadata() : undefined;

      report.figure('jobs', jobs);
      report.figure('submits / polls before the kill', `${submitsBefore} / ${pollsBefore}`);
      report.figure('resumed at start (journal / jobs)', `${resumed.journal ?? 0} / ${resumed.jobs ?? 0}`);
      report.figure('restart to all finished', ms(finishedMs));
      report.figure('statuses after the restart', formatTally(tally(statuses, (s) => String(s.json?.status))));
      report.figure('submits after the restart', fake.submits.length - submitsBefore);
      report.figure('billed in all', fake.calls.billed);

      report.equal(submitsBefore, jobs, 'submits before the kill');
      report.equal(resumed.journal, jobs, 'journaled upstream jobs resumed at start');
      report.equal(completed, jobs, 'jobs COMPLETED after the restart');
      report.equal(fake.submits.length - submitsBefore, 0, 'submits after the restart');
      report.equal(fake.calls.billed, jobs, 'billed jobs (one per job)');
      report.check(meta?.width === 32 && meta.height === 24, `a job's result is its ×2 image: ${sample.status} ${meta?.width}×${meta?.height}`);
    } finally {
      await closePools();
      for (const p of processes) await p.kill('SIGKILL');
      await fake.close();
      await rm(cacheDir, { recursive: true, force: true, maxRetries: 5 });
    }
  },
};
