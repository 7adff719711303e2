/**
 * `clarity-cdn warm <file|->`: turns a list of images (JSON lines, `/upscale` URLs, origin image
 * URLs: `warm-input.ts`) into jobs in the warm lane, so the cache is full before visitors arrive.
 * Against a running server (`--server`, the jobs API) or in-process (the same jobs service,
 * without HTTP). Each finished item is appended to a state file, so a second run skips it.
 *
 * Outcomes: `done` (made now), `cached` (already COMPLETED when submitted), `skipped` (finished
 * in an earlier run, per the state file), `failed` (a bad line, a missing file, the server's
 * refusal, or a job that FAILED). Exit 0 when nothing failed, 1 when anything did, 2 for a usage
 * error, 130 after Ctrl-C (items in flight finish first; a second Ctrl-C abandons them).
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Presets, SingleBar } from 'cli-progress';
import { loadConfig, type Config } from '../config.js';
import { CdnError } from '../errors.js';
import type { JobView } from '../jobs/index.js';
import { cliLogger } from './local.js';
import { createRemote, ServerProblemError } from './remote.js';
import { UsageError } from './usage.js';
import { jobBody, parseWarmLine, type WarmItem } from './warm-input.js';
import { openWarmState } from './warm-state.js';

export interface WarmOptions {
  server?: string;
  token?: string;
  /** Items in flight at once. Default 4. */
  concurrency: number;
  /** `--server` mode: ms between two `GET /jobs/:id` of one job. Default 1000. */
  pollInterval: number;
  state?: string;
  json?: boolean;
  /** `--no-progress`: plain lines even on a terminal. */
  progress: boolean;
  logLevel?: string;
}

type Outcome =
  | { line: number; outcome: 'done' | 'cached'; id: string }
  | { line: number; outcome: 'skipped' }
  | { line: number; outcome: 'failed'; id?: string; code: string; error: string };

export interface WarmSummary {
  items: number;
  done: number;
  cached: number;
  skipped: number;
  failed: number;
  failures: { line: number; code: string; error: string; id?: string }[];
  /** Items never started: after Ctrl-C, or once the server refused the token. */
  not_run: number;
  /** Items in flight when a second Ctrl-C left them (their jobs go on; the next run picks them up). */
  abandoned: number;
  interrupted: boolean;
  state: string;
}

/** How an item is worked: through the HTTP API or the in-process jobs service. */
interface Runner {
  run(item: WarmItem): Promise<Outcome>;
  close(): Promise<void>;
}

/** Stops the whole run: every further item would fail the same way (a wrong token, no server). */
class RunAbortedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A `file` item whose file cannot be read: the item fails, the run goes on. */
class LocalFileError extends Error {
  constructor(
    readonly code: 'FILE_NOT_FOUND' | 'FILE_UNREADABLE',
    message: string,
  ) {
    super(message);
  }
}

async function readSourceFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new LocalFileError('FILE_NOT_FOUND', `no such file: ${path}`);
    throw new LocalFileError('FILE_UNREADABLE', `cannot read ${path}: ${(error as Error).message}`);
  }
}

/** One registration per file per run, however many lines name it. */
function memo<T>(work: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const known = new Map<string, Promise<T>>();
  return (key) => {
    let promise = known.get(key);
    if (!promise) {
      promise = work(key);
      known.set(key, promise);
    }
    return promise;
  };
}

const failed = (item: WarmItem, code: string, error: string, id?: string): Outcome => ({
  line: item.line,
  outcome: 'failed',
  code,
  error,
  ...(id ? { id } : {}),
});

function finalOutcome(item: WarmItem, job: JobView): Outcome {
  return job.status === 'COMPLETED'
    ? { line: item.line, outcome: 'done', id: job.id }
    : failed(item, job.code ?? 'FAILED', job.error ?? 'the job failed', job.id);
}

async function remoteRunner(server: string, token: string | undefined, pollIntervalMs: number, baseDir: string): Promise<Runner> {
  const remote = createRemote({ server, ...(token ? { token } : {}) });
  try {
    await remote.health();
  } catch (error) {
    await remote.close();
    if (error instanceof ServerProblemError) throw new RunAbortedError(error.code, error.detail);
    throw error;
  }
  const register = memo(async (path) => (await remote.addSource(await readSourceFile(resolve(baseDir, path)))).source.hash);
  return {
    async run(item) {
      let id: string | undefined;
      try {
        const source = 'file' in item.source ? await register(item.source.file) : 'hash' in item.source ? item.source.hash : item.source;
        const submitted = await remote.submitJob(jobBody(item, source));
        id = submitted.job.id;
        if (submitted.status === 200) return { line: item.line, outcome: 'cached', id };
        let job = submitted.job;
        while (job.status !== 'COMPLETED' && job.status !== 'FAILED') {
          await sleep(pollIntervalMs);
          job = await remote.getJob(id);
        }
        return finalOutcome(item, job);
      } catch (error) {
        if (error instanceof LocalFileError) return failed(item, error.code, error.message);
        if (!(error instanceof ServerProblemError)) throw error;
        // Every other item would be refused the same way: stop, and say why.
        if (error.code === 'UNAUTHORIZED' || error.code === 'JOBS_NEED_ADMIN_TOKEN') {
          throw new RunAbortedError(error.code, `${error.detail}; set ADMIN_TOKEN (or --token) to the server's token`);
        }
        return failed(item, error.code, error.detail, id);
      }
    },
    close: () => remote.close(),
  };
}

async function localRunner(config: Config, logLevel: string | undefined, baseDir: string): Promise<Runner> {
  const logger = cliLogger(config, logLevel);
  // Loaded here: the server's whole graph (sharp, the engines) is needed by this mode only.
  const { buildServer } = await import('../server.js');
  const built = await buildServer(config, { logger });
  const base = config.PUBLIC_BASE_URL?.replace(/\/+$/, '') ?? '';
  // The server's own source store: its budget, its totals, and Redis when configured.
  const register = memo(async (path) => {
    const data = await readSourceFile(resolve(baseDir, path));
    return (await built.sources.put(data)).info.hash;
  });
  return {
    async run(item) {
      let id: string | undefined;
      try {
        const source = 'file' in item.source ? await register(item.source.file) : 'hash' in item.source ? item.source.hash : item.source;
        const submitted = await built.jobs.submit(jobBody(item, source), base);
        id = submitted.view.id;
        if (submitted.status === 200) return { line: item.line, outcome: 'cached', id };
        return finalOutcome(item, await built.jobs.wait(id));
      } catch (error) {
        if (error instanceof LocalFileError) return failed(item, error.code, error.message);
        if (error instanceof CdnError) return failed(item, error.code, error.detail, id);
        logger.error({ err: error, line: item.line }, 'warm item failed unexpectedly');
        return failed(item, 'INTERNAL', (error as Error).message, id);
      }
    },
    async close() {
      await built.close(0);
    },
  };
}

async function readInput(input: string): Promise<string[]> {
  if (input === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/);
  }
  try {
    return (await readFile(input, 'utf8')).split(/\r?\n/);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `no such file: ${input}` : `cannot read ${input}: ${(error as Error).message}`);
  }
}

/** Where outcomes go: a live bar on a terminal, else a line each (or JSON with `--json`). */
interface Reporter {
  start(work: number): void;
  item(outcome: Outcome): void;
  /** A message for the person at the terminal (stderr). */
  note(text: string): void;
  finish(summary: WarmSummary): void;
}

function createReporter(options: { json: boolean; bar: boolean }): Reporter {
  const out = (text: string) => process.stdout.write(`${text}\n`);
  if (options.json) {
    return {
      start() {},
      item: (o) => out(JSON.stringify(o)),
      note: (text) => process.stderr.write(`${text}\n`),
      finish: (summary) => out(JSON.stringify({ summary })),
    };
  }
  const printSummary = (s: WarmSummary) => {
    out(`warm: ${s.items} items: ${s.done} done, ${s.cached} cached, ${s.skipped} skipped, ${s.failed} failed (state: ${s.state})`);
    for (const f of s.failures) out(`  failed line ${f.line}: ${f.error} (${f.code})`);
    if (s.interrupted || s.not_run > 0 || s.abandoned > 0) {
      out(`  ${s.not_run} not started${s.abandoned > 0 ? `, ${s.abandoned} abandoned in flight` : ''}: run the same command again to resume`);
    }
  };
  if (!options.bar) {
    return {
      start() {},
      item(o) {
        if (o.outcome === 'done' || o.outcome === 'cached') out(`${o.outcome} ${o.id}`);
        else if (o.outcome === 'failed') out(`failed line ${o.line}: ${o.error} (${o.code})`);
      },
      note: (text) => process.stderr.write(`${text}\n`),
      finish: printSummary,
    };
  }
  const bar = new SingleBar(
    {
      format: 'warm [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted} | {failed} failed',
      hideCursor: true,
      stream: process.stderr,
    },
    Presets.shades_classic,
  );
  const started = Date.now();
  let failures = 0;
  let running = false;
  const payload = (value: number) => ({ failed: failures, rate: (value / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1) });
  return {
    start(work) {
      bar.start(work, 0, payload(0));
      running = true;
    },
    item(o) {
      if (o.outcome === 'failed') failures += 1;
      // Lines refused before the run and skipped ones are not part of the work the bar times.
      if (!running || o.outcome === 'skipped') return;
      bar.increment(1, payload(bar.getProgress() * bar.getTotal() + 1));
    },
    note: (text) => process.stderr.write(`\n${text}\n`),
    finish(summary) {
      if (running) bar.stop();
      running = false;
      printSummary(summary);
    },
  };
}

export async function warm(input: string, options: WarmOptions): Promise<void> {
  const lines = await readInput(input);
  const statePath = resolve(options.state ?? (input === '-' ? '.clarity-warm-state' : `${input}.warm-state`));
  const state = openWarmState(statePath);
  const config = loadConfig(process.env);
  const reporter = createReporter({ json: Boolean(options.json), bar: !options.json && options.progress && Boolean(process.stdout.isTTY && process.stderr.isTTY) });

  /** State keys of the items to work, by line. */
  const keys = new Map<number, string>();
  const work: WarmItem[] = [];
  const before: Outcome[] = [];
  let items = 0;
  for (const [index, text] of lines.entries()) {
    const parsed = parseWarmLine(text, index + 1);
    if (!parsed) continue;
    items += 1;
    if (parsed.kind === 'invalid') {
      const { line, code, error } = parsed.problem;
      before.push({ line, outcome: 'failed', code, error });
    } else if (state.has(parsed.item.key)) before.push({ line: parsed.item.line, outcome: 'skipped' });
    else {
      keys.set(parsed.item.line, parsed.item.key);
      work.push(parsed.item);
    }
  }
  const outcomes: Outcome[] = [];
  const report = (outcome: Outcome) => {
    outcomes.push(outcome);
    // Recorded as it finishes: a run stopped anywhere loses only what was in flight.
    if (outcome.outcome === 'done' || outcome.outcome === 'cached') state.record(keys.get(outcome.line) as string, outcome.outcome, outcome.id, outcome.line);
    reporter.item(outcome);
  };
  for (const outcome of before) report(outcome);

  let aborted: string | undefined;
  let next = 0;
  let inFlight = 0;
  let stopping = false;
  let abandonRun: () => void = () => undefined;
  const abandoned = new Promise<'abandoned'>((resolveAbandon) => {
    abandonRun = () => resolveAbandon('abandoned');
  });
  const onSigint = () => {
    if (stopping) {
      abandonRun();
      return;
    }
    stopping = true;
    reporter.note(`interrupted: finishing ${inFlight} item(s) in flight; Ctrl-C again to abandon them`);
  };
  process.on('SIGINT', onSigint);

  let runner: Runner | undefined;
  let ended: 'finished' | 'abandoned' = 'finished';
  try {
    if (work.length > 0) {
      // A relative `file` is found beside the list (a list and its images travel together); from stdin, in the current directory.
      const baseDir = input === '-' ? process.cwd() : dirname(resolve(input));
      runner = options.server
        ? await remoteRunner(options.server, options.token ?? config.ADMIN_TOKEN, options.pollInterval, baseDir)
        : await localRunner(config, options.logLevel, baseDir);
      const run = runner;
      reporter.start(work.length);
      const worker = async () => {
        while (!stopping && aborted === undefined && next < work.length) {
          const item = work[next++] as WarmItem;
          inFlight += 1;
          try {
            report(await run.run(item));
          } catch (error) {
            if (!(error instanceof RunAbortedError)) throw error;
            aborted ??= error.message;
            report({ line: item.line, outcome: 'failed', code: error.code, error: error.message });
          } finally {
            inFlight -= 1;
          }
        }
      };
      const workers = Promise.all(Array.from({ length: Math.min(options.concurrency, work.length) }, worker));
      ended = (await Promise.race([workers.then(() => 'finished' as const), abandoned])) === 'abandoned' ? 'abandoned' : 'finished';
    }
  } catch (error) {
    if (!(error instanceof RunAbortedError)) throw error;
    aborted = error.message;
  } finally {
    process.off('SIGINT', onSigint);
  }

  const count = (kind: Outcome['outcome']) => outcomes.filter((o) => o.outcome === kind).length;
  const summary: WarmSummary = {
    items,
    done: count('done'),
    cached: count('cached'),
    skipped: count('skipped'),
    failed: count('failed'),
    failures: outcomes.flatMap((o) => (o.outcome === 'failed' ? [{ line: o.line, code: o.code, error: o.error, ...(o.id ? { id: o.id } : {}) }] : [])),
    not_run: work.length - next,
    abandoned: ended === 'abandoned' ? inFlight : 0,
    interrupted: stopping,
    state: statePath,
  };
  summary.failures.sort((a, b) => a.line - b.line);
  if (aborted !== undefined) reporter.note(`clarity-cdn: stopped: ${aborted}`);
  if (ended === 'abandoned') {
    // The jobs left behind keep going (on the server, or journaled for the next start here).
    reporter.finish(summary);
    process.exit(130);
  }
  await runner?.close();
  reporter.finish(summary);
  process.exitCode = stopping ? 130 : summary.failed > 0 || aborted !== undefined ? 1 : 0;
}
