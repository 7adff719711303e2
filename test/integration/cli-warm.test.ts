/**
 * `clarity-cdn warm`, `sources add`, `jobs` and `cache` as an operator runs them: real child
 * processes against the fake upstream (segmind engine) on loopback, in-process on a CACHE_DIR or
 * against a real server listening in this process. Everything waits on process exits, printed
 * lines and the fake's counters; nothing sleeps. Spawns cost a second or two each, so each run
 * checks several things.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { readdirSync, statSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WarmSummary } from '../../src/cli/warm.js';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';
import { cliEnv, runCli, startCli, type CliResult } from '../helpers/cli.js';
import { makeImage } from '../helpers/images.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const ADMIN = 'warm-test-admin-token-0123';
const STACK_FRAME = /^\s+at /m;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const b64url = (text: string) => Buffer.from(text).toString('base64url');

interface ItemLine {
  line: number;
  outcome: 'done' | 'cached' | 'failed' | 'skipped';
  id?: string;
  code?: string;
  error?: string;
}
/** The summary `warm --json` prints last: the command's own type, so the test reads what it writes. */
type Summary = WarmSummary;

/** `--json` output: every line is JSON; the items, then the summary last. */
function parseJsonRun(stdout: string): { items: ItemLine[]; summary: Summary } {
  const lines = stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const last = lines.pop() as { summary: Summary };
  expect(Object.keys(last)).toEqual(['summary']);
  return { items: lines as unknown as ItemLine[], summary: last.summary };
}

const byOutcome = (items: ItemLine[]) =>
  items.reduce<Record<string, number>>((acc, i) => ({ ...acc, [i.outcome]: (acc[i.outcome] ?? 0) + 1 }), {});

/** Files of one kind in the disk tier (or the source store): their count and bytes. */
function filesUnder(dir: string, match: (name: string) => boolean): { entries: number; bytes: number } {
  let entries = 0;
  let bytes = 0;
  let shards: string[] = [];
  try {
    shards = readdirSync(dir);
  } catch {
    return { entries, bytes };
  }
  for (const shard of shards) {
    for (const name of readdirSync(join(dir, shard))) {
      if (!match(name)) continue;
      entries += 1;
      bytes += statSync(join(dir, shard, name)).size;
    }
  }
  return { entries, bytes };
}
const isHashName = (name: string) => /^[0-9a-f]{64}$/.test(name);

let fake: FakeSegmind;
let origin: Server;
let originUrl: string;
let dir: string;
const images: Record<'a' | 'b' | 'c' | 'o', { path: string; data: Buffer; hash: string }> = {} as never;

beforeAll(async () => {
  fake = await createFakeSegmind();
  dir = await tempDir('clarity-warm-');
  for (const [name, seed] of [['a', 1], ['b', 2], ['c', 3], ['o', 4]] as const) {
    const data = await makeImage(8, 6, { seed });
    const path = join(dir, `${name}.png`);
    await writeFile(path, data);
    images[name] = { path, data, hash: sha256(data) };
  }
  // An origin for `url` lines: the in-process server fetches from it (SOURCE_ALLOW_PRIVATE).
  origin = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' });
    res.end(images.o.data);
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}/o.png`;
});

afterAll(async () => {
  origin.close();
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

/** The environment of an in-process run: the fake upstream, fast polls, no rate limit to speak of. */
function segmindEnv(cacheDir?: string): Record<string, string> {
  return {
    UPSCALE_ENGINE: 'segmind',
    SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
    SEGMIND_BASE_URL: fake.url,
    SEGMIND_POLL_INTERVAL_MS: '10',
    UPSTREAM_RPM: '100000',
    UPSTREAM_CONCURRENCY: '8',
    UPSTREAM_RETRIES: '0',
    SOURCE_ALLOW_PRIVATE: 'true',
    ...(cacheDir ? { CACHE_DIR: cacheDir } : {}),
  };
}

describe('help and usage errors', () => {
  it('--help lists the new commands; warm --help explains the lines; bad input is exit 2', async () => {
    const [help, warmHelp, missing, badOption, group] = await Promise.all([
      runCli(['--help']),
      runCli(['warm', '--help']),
      runCli(['warm', join(dir, 'no-such-list.txt')]),
      runCli(['warm', images.a.path, '--concurrency', '0']),
      runCli(['cache']),
    ]);
    expect(help.code).toBe(0);
    for (const command of ['warm [options] <file>', 'sources', 'jobs [options] <id>', 'cache']) expect(help.stdout).toContain(command);
    expect(warmHelp).toMatchObject({ code: 0, stderr: '' });
    for (const text of ['--server <url>', '--concurrency <n>', '--state <path>', '--json', '/upscale/<hash>', '130']) expect(warmHelp.stdout).toContain(text);
    expect(missing).toMatchObject({ code: 2, stdout: '' });
    expect(missing.stderr).toContain('no such file');
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain('--concurrency must be a whole number of at least 1');
    // A command group without its subcommand shows its help, as a usage error.
    expect(group.code).toBe(2);
    expect(group.stderr).toContain('stats');
    for (const run of [missing, badOption]) expect(run.stderr).not.toMatch(STACK_FRAME);
  });
});

describe('in-process on one CACHE_DIR: warm, resume, jobs, cache stats and prune', () => {
  let cacheDir: string;
  let env: Record<string, string>;
  let list: string;
  let firstRun: CliResult;
  /** Line → job id of run 1, for `jobs`. */
  const ids = new Map<number, string>();
  let failedId = '';
  const FAILING_SEED = 7;
  const VALID = 44;

  beforeAll(async () => {
    cacheDir = join(dir, 'cache-1');
    env = segmindEnv(cacheDir);
    fake.reset();
    // One payload the upstream refuses: a job that ends FAILED (HTTP 422), once.
    fake.failWhen((payload) => payload.seed === FAILING_SEED, { error: 'Image flagged by the content filter' });
    const A = images.a.hash;
    const lines = [
      '# a warm list', // 1
      '', // 2
      JSON.stringify({ hash: A, params: { seed: 1 } }), // 3
      JSON.stringify({ file: images.b.path, params: { seed: 2 }, variants: [{ format: 'webp', w: 8 }] }), // 4
      `/upscale/${A}?scale=2&seed=3&format=webp&w=8&sig=not-checked-here`, // 5
      originUrl, // 6: an origin image, the defaults
      `http://localhost:1/img/upscale/url/${b64url(originUrl)}?seed=4&format=jpeg`, // 7: absolute, behind a path prefix
      JSON.stringify({ hash: 'f'.repeat(64), params: { seed: 5 } }), // 8: unknown hash
      `/upscale/${A}?scale=9`, // 9: out of range
      JSON.stringify({ file: join(dir, 'missing.png') }), // 10: no such file
      `{"hash": "${A}", "params": {"seed": 6}`, // 11: malformed JSON
      JSON.stringify({ hash: A, params: { seed: FAILING_SEED } }), // 12: the upstream fails it
    ];
    // Lines 13 to 50: distinct masters in the three spellings.
    for (let n = 13; n <= 50; n++) {
      const seed = 100 + n;
      lines.push(
        n % 3 === 0
          ? JSON.stringify({ hash: A, params: { seed } })
          : n % 3 === 1
            ? JSON.stringify({ file: images.c.path, params: { seed } })
            : `/upscale/${A}?seed=${seed}&format=png&w=4`,
      );
    }
    expect(lines).toHaveLength(50);
    list = join(dir, 'list-1.txt');
    await writeFile(list, `${lines.join('\n')}\n`);
    // Hash lines need their source registered: `sources add` does it, and prints its hash.
    const added = await runCli(['sources', 'add', images.a.path], env);
    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(added.stdout)).toEqual({ hash: images.a.hash, width: 8, height: 6, format: 'png', bytes: images.a.data.length });
  });

  it('a 50-line file: one job per valid line, the failures named by line, exit 1', async () => {
    firstRun = await runCli(['warm', list, '--concurrency', '6'], env);
    expect(firstRun.code).toBe(1);
    expect(firstRun.stderr).toBe('');
    const out = firstRun.stdout.trimEnd().split('\n');
    // One plain line per finished item, then the summary.
    const done = out.filter((l) => /^done [0-9a-f]{64}$/.test(l));
    expect(done).toHaveLength(VALID - 1);
    const failedLines = out.filter((l) => l.startsWith('failed line '));
    expect(failedLines).toHaveLength(5);
    expect(out).toContain(`warm: 48 items: ${VALID - 1} done, 0 cached, 0 skipped, 5 failed (state: ${list}.warm-state)`);
    const reasons = out.filter((l) => l.startsWith('  failed line '));
    expect(reasons).toEqual([
      expect.stringMatching(/^ {2}failed line 8: no source with hash f{64}.*\(SOURCE_NOT_FOUND\)$/),
      expect.stringMatching(/^ {2}failed line 9: .*scale.*out of range.*\(INVALID_PARAM\)$/),
      expect.stringMatching(/^ {2}failed line 10: no such file: .*missing\.png \(FILE_NOT_FOUND\)$/),
      expect.stringMatching(/^ {2}failed line 11: not valid JSON.*\(INVALID_LINE\)$/),
      expect.stringMatching(/^ {2}failed line 12: .*content filter.*\(UPSTREAM_REJECTED\)$/),
    ]);
    // Every valid line was paid for once, the one the upstream failed included; nothing else.
    expect(fake.submits).toHaveLength(VALID);
    expect(fake.submits.every((s) => s.route === 'POST /v2/clarity-upscaler')).toBe(true);

    // The state file: a header, then one record per finished item.
    const state = (await readFile(`${list}.warm-state`, 'utf8')).trimEnd().split('\n');
    expect(state[0]).toMatch(/^# clarity-cdn warm state/);
    const records = state.slice(1).map((l) => l.split(' '));
    expect(records).toHaveLength(VALID - 1);
    for (const [key, outcome, id, line] of records) {
      expect(key).toMatch(/^[0-9a-f]{64}$/);
      expect(outcome).toBe('done');
      expect(done).toContain(`done ${id}`);
      ids.set(Number(line), id as string);
    }
  });

  it('a second run skips everything recorded; without the state file everything is cached; no new upstream submit', async () => {
    const skipped = await runCli(['warm', list, '--json'], env);
    expect(skipped.code).toBe(1);
    const second = parseJsonRun(skipped.stdout);
    expect(second.summary).toMatchObject({ items: 48, done: 0, cached: 0, skipped: VALID - 1, failed: 5, not_run: 0, interrupted: false });
    expect(byOutcome(second.items)).toEqual({ skipped: VALID - 1, failed: 5 });
    expect(second.summary.failures.map((f) => [f.line, f.code])).toEqual([
      [8, 'SOURCE_NOT_FOUND'],
      [9, 'INVALID_PARAM'],
      [10, 'FILE_NOT_FOUND'],
      [11, 'INVALID_LINE'],
      [12, 'UPSTREAM_REJECTED'],
    ]);
    failedId = second.summary.failures.find((f) => f.line === 12)?.id ?? '';
    expect(failedId).toMatch(/^[0-9a-f]{64}$/);

    await rm(`${list}.warm-state`);
    const cachedRun = await runCli(['warm', list, '--json'], env);
    expect(cachedRun.code).toBe(1);
    const third = parseJsonRun(cachedRun.stdout);
    expect(third.summary).toMatchObject({ done: 0, cached: VALID - 1, skipped: 0, failed: 5 });
    for (const item of third.items.filter((i) => i.outcome === 'cached')) expect(item.id).toBe(ids.get(item.line));
    expect(fake.submits).toHaveLength(VALID);
  });

  it('jobs <id>: exit 0 for a completed job, 1 for a failed or unknown one', async () => {
    const completedId = ids.get(4) as string;
    const [completed, failed, unknown] = await Promise.all([
      runCli(['jobs', completedId], env),
      runCli(['jobs', failedId], env),
      runCli(['jobs', 'e'.repeat(64)], env),
    ]);
    expect(completed).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(completed.stdout)).toMatchObject({
      id: completedId,
      status: 'COMPLETED',
      error: null,
      source: images.b.hash,
      params: { seed: 2 },
      variants: [{ format: 'webp', w: 8 }],
    });
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({ id: failedId, status: 'FAILED', code: 'UPSTREAM_REJECTED' });
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toContain(`no job ${'e'.repeat(64)}`);
    expect(fake.submits).toHaveLength(VALID);
  });

  it('cache stats --json counts what is on disk; cache prune with a tiny budget removes the variants, keeps the paid masters', async () => {
    // A job record finished long ago: prune drops it.
    const oldId = '0'.repeat(63) + '1';
    await writeFile(
      join(cacheDir, 'jobs', `${oldId}.json`),
      JSON.stringify({ id: oldId, engine: 'segmind', source: images.a.hash, params: {}, variants: [], webhooks: [], lane: 'warm', state: 'COMPLETED', createdAt: 1, updatedAt: 1, completedAt: 1 }),
    );
    const stats = await runCli(['cache', 'stats', '--json'], env);
    expect(stats).toMatchObject({ code: 0, stderr: '' });
    const s = JSON.parse(stats.stdout) as {
      disk: { entries: number; bytes: number; pinned_bytes: number; by_kind: Record<string, { entries: number; bytes: number }> };
      sources: { entries: number; bytes: number; evicted: number };
      jobs: { records: number; completed: number; failed: number; active: number };
    };
    const onDisk = (kind: string) => filesUnder(join(cacheDir, 'cache', kind), isHashName);
    const masters = onDisk('master');
    const variants = onDisk('variant');
    expect(masters.entries).toBe(VALID - 1);
    // Lines 4, 5, 7 and every third of 13-50 ask for a variant.
    expect(variants.entries).toBe(3 + 13);
    expect(s.disk.by_kind.master).toEqual(masters);
    expect(s.disk.by_kind.variant).toEqual(variants);
    expect(s.disk.by_kind.failure).toEqual(onDisk('failure'));
    expect(s.disk.entries).toBe(['master', 'variant', 'failure', 'source', 'job'].reduce((n, k) => n + onDisk(k).entries, 0));
    expect(s.disk.pinned_bytes).toBe(masters.bytes);
    const sourceBytes = ['a', 'b', 'c', 'o'].reduce((n, k) => n + images[k as 'a'].data.length, 0);
    expect(s.sources).toMatchObject({ entries: 4, bytes: sourceBytes, evicted: 0 });
    expect(filesUnder(join(cacheDir, 'sources'), isHashName)).toEqual({ entries: 4, bytes: sourceBytes });
    expect(s.jobs).toEqual(expect.objectContaining({ records: VALID + 1, completed: VALID, failed: 1, active: 0 }));

    const prune = await runCli(['cache', 'prune', '--json'], { ...env, CACHE_DISK_MAX_BYTES: '1' });
    expect(prune).toMatchObject({ code: 0, stderr: '' });
    const p = JSON.parse(prune.stdout) as { disk: { removed_by_kind: Record<string, { entries: number; bytes: number }>; bytes: number }; jobs: { dropped: number } };
    expect(p.disk.removed_by_kind.variant).toEqual(variants);
    expect(p.disk.removed_by_kind.master).toBeUndefined();
    expect(onDisk('variant').entries).toBe(0);
    expect(onDisk('master')).toEqual(masters);
    expect(p.jobs.dropped).toBe(1);
    await expect(readFile(join(cacheDir, 'jobs', `${oldId}.json`))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('Ctrl-C and resume', () => {
  it('SIGINT lets the item in flight finish, records it, exits 130; the next run does only the rest', async () => {
    const cacheDir = join(dir, 'cache-2');
    const env = segmindEnv(cacheDir);
    fake.reset();
    const lines = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => JSON.stringify({ file: images.a.path, params: { seed } }));
    // The same job as line 1 in another spelling: cached, never a second submit.
    lines.push(`/upscale/${images.a.hash}?seed=1`);
    const list = join(dir, 'list-2.txt');
    await writeFile(list, lines.join('\n'));

    const cli = startCli(['warm', list, '--concurrency', '1', '--json'], env);
    await cli.waitFor(/"outcome":"done"[^\n]*\n[^\n]*"outcome":"done"/);
    fake.holdJobs();
    // An item is in flight, its job held upstream.
    await fake.waitFor(() => [...fake.jobs.values()].some((j) => j.state === 'PROCESSING' && j.polls > 2));
    cli.child.kill('SIGINT');
    await cli.waitFor(/interrupted: finishing 1 item\(s\) in flight/, 'stderr');
    fake.releaseJobs();
    expect(await cli.exited).toEqual({ code: 130, signal: null });
    const first = parseJsonRun(cli.stdout());
    expect(first.summary.interrupted).toBe(true);
    expect(first.summary.abandoned).toBe(0);
    expect(first.summary.failed).toBe(0);
    const finished = first.summary.done + first.summary.cached;
    expect(first.summary.done).toBeGreaterThanOrEqual(3);
    expect(finished + first.summary.not_run).toBe(9);
    expect(fake.submits).toHaveLength(first.summary.done);

    const resumed = await runCli(['warm', list, '--json'], env);
    expect(resumed.code).toBe(0);
    const second = parseJsonRun(resumed.stdout);
    expect(second.summary).toMatchObject({ items: 9, skipped: finished, failed: 0, not_run: 0, interrupted: false });
    expect(second.summary.done + second.summary.cached).toBe(9 - finished);
    // The duplicate (last line) is the same job as line 1: cached, not paid again.
    expect(second.items.find((i) => i.line === 9)?.outcome).toBe('cached');
    expect(fake.submits).toHaveLength(8);
  });
});

describe('--server: against a running server', () => {
  let server: TestServer;
  let base: string;

  beforeAll(async () => {
    fake.reset();
    server = await startTestServer({ ...segmindEnv(), HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, SIGNING_KEY: 'warm-test-signing-key-0123' });
    const { port } = await server.listen(0);
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    expect(server.logs()).not.toContain(ADMIN);
    await stopTestServer(server);
  });

  it('warm - (stdin) with ADMIN_TOKEN: file sources uploaded, /upscale URLs and origin URLs; then sources add and jobs through the API', async () => {
    const lines = [
      JSON.stringify({ file: images.b.path, params: { seed: 21 }, variants: [{ format: 'webp', w: 8 }] }),
      JSON.stringify({ file: images.b.path, params: { seed: 22 } }),
      `${base}/upscale/${images.b.hash}?seed=23&format=jpeg&sig=anything`,
      `/upscale/url/${b64url(originUrl)}?seed=24`,
      originUrl,
      `/upscale/${images.b.hash}?seed=25&bogus=1`,
    ];
    // One at a time: line 3 names the source that line 1 uploads.
    const statePath = join(dir, 'server.state');
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'warm', '-', '--server', base, '--concurrency', '1', '--poll-interval', '20', '--json', '--state', statePath], {
      cwd: ROOT,
      env: cliEnv({ ADMIN_TOKEN: ADMIN }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.end(`${lines.join('\n')}\n`);
    const [code] = (await once(child, 'close')) as [number];
    expect(stderr).toBe('');
    expect(code).toBe(1);
    const run = parseJsonRun(stdout);
    expect(run.summary).toMatchObject({ items: 6, done: 5, cached: 0, failed: 1, state: statePath });
    expect(run.summary.failures).toEqual([{ line: 6, code: 'INVALID_PARAM', error: expect.stringContaining('bogus') }]);
    expect(fake.submits).toHaveLength(5);
    for (const item of run.items.filter((i) => i.outcome === 'done')) {
      expect(server.jobs.get(item.id as string)).toMatchObject({ status: 'COMPLETED' });
    }
    expect(server.jobs.get(run.items.find((i) => i.line === 1)?.id as string).variants).toEqual([expect.objectContaining({ format: 'webp', w: 8 })]);
    expect(stdout).not.toContain(ADMIN);

    const [wrongToken, added, job, unknown] = await Promise.all([
      runCli(['warm', join(dir, 'list-2.txt'), '--server', base, '--token', 'not-the-admin-token', '--json', '--state', join(dir, 'wrong.state')]),
      runCli(['sources', 'add', images.c.path, '--server', base], { ADMIN_TOKEN: ADMIN }),
      runCli(['jobs', run.items.find((i) => i.line === 1)?.id as string, '--server', base]),
      runCli(['jobs', 'e'.repeat(64), '--server', base]),
    ]);
    // A refused token stops the run at its first item: every other would be refused too.
    expect(wrongToken.code).toBe(1);
    const refused = parseJsonRun(wrongToken.stdout);
    expect(refused.summary.failures[0]).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(refused.summary.done + refused.summary.cached).toBe(0);
    expect(refused.summary.not_run).toBeGreaterThan(0);
    expect(wrongToken.stderr).toContain('stopped:');

    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(added.stdout)).toEqual({ hash: images.c.hash, width: 8, height: 6, format: 'png', bytes: images.c.data.length });
    expect(job.code).toBe(0);
    expect(JSON.parse(job.stdout)).toMatchObject({ status: 'COMPLETED', source: images.b.hash, status_url: expect.stringContaining(base) });
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toContain('JOB_NOT_FOUND');
    expect(fake.submits).toHaveLength(5);
  });
});
