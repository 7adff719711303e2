/**
 * What every chaos scenario shares: a report (figures and checks), a load generator (undici
 * `Pool`s from this process, as bench/serve.ts does; autocannon is not a dependency), a real server
 * child process for the scenarios that SIGKILL one, and a seeded random source so a failing run can
 * be replayed.
 *
 * Checks are collected rather than thrown one by one: a scenario runs to its end and reports every
 * broken promise at once, with its figures, so one gap does not hide the next. Anything that makes
 * the rest meaningless (a server that did not start) still throws at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { AssertionError } from 'node:assert';
import { fileURLToPath } from 'node:url';
import { Pool, type Dispatcher } from 'undici';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** One scenario: `run` drives it at `scale` (1: the CI form; larger: `npm run chaos`). */
export interface Scenario {
  /** Short id, for `--only` and the table. */
  name: string;
  /** What is broken, in a few words. */
  title: string;
  run(scale: number, report: Report): Promise<void>;
}

export type Figure = string | number;

/** Figures (printed in order) and checks (all reported at the end) of one scenario run. */
export class Report {
  readonly figures: [string, Figure][] = [];
  readonly failures: string[] = [];

  figure(label: string, value: Figure): void {
    const existing = this.figures.find(([l]) => l === label);
    if (existing) existing[1] = value;
    else this.figures.push([label, value]);
  }

  /** Records a failure when `ok` is false; `message` says what was promised and what happened. */
  check(ok: boolean, message: string): boolean {
    if (!ok) this.failures.push(message);
    return ok;
  }

  /** `actual === expected`, with both in the message. */
  equal<T>(actual: T, expected: T, what: string): boolean {
    return this.check(Object.is(actual, expected), `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

export interface ScenarioOutcome {
  name: string;
  title: string;
  scale: number;
  ms: number;
  figures: [string, Figure][];
  failures: string[];
  /** An exception that stopped the scenario early (not a collected check). */
  error?: unknown;
}

/** Runs one scenario; never throws (see `assertOutcome`). */
export async function runScenario(scenario: Scenario, scale: number): Promise<ScenarioOutcome> {
  const report = new Report();
  const started = performance.now();
  let error: unknown;
  try {
    await scenario.run(scale, report);
  } catch (e) {
    error = e;
  }
  const ms = Math.round(performance.now() - started);
  return { name: scenario.name, title: scenario.title, scale, ms, figures: report.figures, failures: report.failures, ...(error !== undefined ? { error } : {}) };
}

/** Throws an `AssertionError` listing every failed check (and the early error, if any). */
export function assertOutcome(outcome: ScenarioOutcome): void {
  if (outcome.error !== undefined) throw outcome.error;
  if (outcome.failures.length > 0) {
    throw new AssertionError({
      message: `${outcome.name}: ${outcome.failures.length} broken promise(s):\n- ${outcome.failures.join('\n- ')}`,
    });
  }
}

export function formatFigures(outcome: ScenarioOutcome): string {
  const width = Math.max(...outcome.figures.map(([label]) => label.length), 10);
  const lines = outcome.figures.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`);
  const verdict = outcome.error !== undefined ? 'ERROR' : outcome.failures.length > 0 ? 'FAIL' : 'ok';
  return [`${outcome.name} (${outcome.title}), scale ${outcome.scale}: ${verdict} in ${(outcome.ms / 1000).toFixed(1)} s`, ...lines].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG in [0, 1); the same seed replays the same storm. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

export function shuffle<T>(random: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// HTTP: one request, and a load of them
// ---------------------------------------------------------------------------------------------

export interface HttpRequest {
  origin: string;
  path: string;
  method?: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** The scenario's own label (`hit`, `miss@A`…), kept on the answer. */
  tag?: string;
}

export interface HttpAnswer {
  request: HttpRequest;
  /** 0 when the request failed without an answer (`error` says why). */
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  ms: number;
  error?: string;
}

const pools = new Map<string, Pool>();

function poolFor(origin: string): Dispatcher {
  let pool = pools.get(origin);
  if (!pool) {
    pool = new Pool(origin, { connections: 16, pipelining: 1 });
    pools.set(origin, pool);
  }
  return pool;
}

/** Closes the pools to `origin` (a server about to stop or be killed). */
export async function closePools(origin?: string): Promise<void> {
  for (const [key, pool] of pools) {
    if (origin !== undefined && key !== origin) continue;
    pools.delete(key);
    await pool.destroy();
  }
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** One request through the origin's pool; a transport failure is an answer with status 0. */
export async function send(req: HttpRequest): Promise<HttpAnswer> {
  const started = performance.now();
  try {
    const res = await poolFor(req.origin).request({
      path: req.path,
      method: req.method ?? 'GET',
      headers: req.headers ?? {},
      ...(req.body !== undefined ? { body: req.body } : {}),
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { request: req, status: res.statusCode, headers: flatHeaders(res.headers), body, ms: performance.now() - started };
  } catch (error) {
    return { request: req, status: 0, headers: {}, body: Buffer.alloc(0), ms: performance.now() - started, error: String(error) };
  }
}

export async function sendJson(req: HttpRequest & { json?: unknown }): Promise<{ answer: HttpAnswer; json: any }> {
  const { json, ...rest } = req;
  const answer = await send({
    ...rest,
    ...(json !== undefined ? { body: JSON.stringify(json), headers: { 'content-type': 'application/json', ...rest.headers } } : {}),
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  return { answer, json: parsed };
}

/**
 * Steady load: `connections` workers, each with one request in flight, pulling the next request
 * from `next` until it returns undefined or `stop()` is called. Scenarios act on events
 * (`waitForCompleted`), not on the clock.
 */
export class Load {
  readonly answers: HttpAnswer[] = [];
  private stopped = false;
  private readonly waiters: { n: number; resolve: () => void }[] = [];
  private readonly workers: Promise<void>[];

  constructor(
    private readonly next: (index: number) => HttpRequest | undefined,
    connections: number,
    private readonly onAnswer?: (answer: HttpAnswer) => void,
  ) {
    let issued = 0;
    this.workers = Array.from({ length: connections }, async () => {
      while (!this.stopped) {
        const request = this.next(issued++);
        if (!request) break;
        const answer = await send(request);
        this.answers.push(answer);
        this.onAnswer?.(answer);
        for (const w of this.waiters.splice(0)) {
          if (this.answers.length >= w.n) w.resolve();
          else this.waiters.push(w);
        }
      }
    });
  }

  get completed(): number {
    return this.answers.length;
  }

  /** Resolves once `n` answers are in (or the load has ended). */
  waitForCompleted(n: number): Promise<void> {
    if (this.answers.length >= n) return Promise.resolve();
    return Promise.race([new Promise<void>((resolve) => this.waiters.push({ n, resolve })), this.done()]);
  }

  /** Resolves when every worker has finished (the generator ran dry, or `stop()`). */
  async done(): Promise<void> {
    await Promise.all(this.workers);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done();
  }
}

/** Counts of `key(answer)`, sorted by key: `{ "200": 812, "404 SOURCE_NOT_FOUND": 3 }`. */
export function tally<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

export const formatTally = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ') || '-';

/** `200`, or `503 UPSTREAM_UNAVAILABLE` for a problem answer. */
export function statusCode(answer: HttpAnswer): string {
  if (answer.status === 0) return `transport error`;
  const code = problemOf(answer)?.code;
  return code ? `${answer.status} ${String(code)}` : String(answer.status);
}

export function problemOf(answer: HttpAnswer): Record<string, unknown> | undefined {
  if (!(answer.headers['content-type'] ?? '').startsWith('application/problem+json')) return undefined;
  try {
    return JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** What a stack trace or an internal path looks like in a body. */
const LEAK = /\n\s+at |node_modules|\/src\/[\w/-]+\.ts|\bError: /;

/**
 * Why an error answer is not a clean problem+json (undefined when it is): the right type, a body
 * that parses, a `code`, a matching `status`, `no-store`, and nothing of a stack trace.
 */
export function problemDefect(answer: HttpAnswer): string | undefined {
  if (answer.status === 0) return `no answer (${answer.error ?? 'transport error'})`;
  const text = answer.body.toString('utf8');
  if (LEAK.test(text)) return `the body leaks internals: ${text.slice(0, 200)}`;
  const problem = problemOf(answer);
  if (!problem) return `not problem+json (${answer.headers['content-type'] ?? 'no Content-Type'}): ${text.slice(0, 120)}`;
  if (typeof problem.code !== 'string') return 'problem without a code';
  if (problem.status !== answer.status) return `problem status ${String(problem.status)} on an HTTP ${answer.status}`;
  if (answer.status >= 500 && answer.headers['cache-control'] !== 'no-store') return `a ${answer.status} with Cache-Control ${answer.headers['cache-control']}`;
  return undefined;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

export const ms = (value: number): string => (Number.isFinite(value) ? `${Math.round(value)} ms` : '-');

// ---------------------------------------------------------------------------------------------
// A real server process (for SIGKILL)
// ---------------------------------------------------------------------------------------------

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  origin: string;
  /** Everything it printed on stdout (its JSON log lines). */
  stdout(): string;
  /** Resolves once `count` stdout lines match `pattern`; rejects if the process exits first. */
  waitForLines(pattern: RegExp, count: number): Promise<void>;
  /** Lines of stdout matching `pattern`. */
  count(pattern: RegExp): number;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * `clarity-cdn serve` as a real child process on a free port, with only the environment given
 * (plus PATH and HOME): what a crash does to it is what a crash does in production.
 */
export async function spawnServer(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const checks = new Set<() => void>();
  const exited = once(child, 'exit');
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    for (const check of checks) check();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const countOf = (pattern: RegExp) => out.split('\n').filter((line) => pattern.test(line)).length;
  const waitForLines = (pattern: RegExp, count: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (countOf(pattern) < count) return;
        checks.delete(check);
        resolve();
      };
      checks.add(check);
      check();
      void exited.then(() => {
        if (!checks.delete(check)) return;
        reject(new Error(`the server exited before printing ${count}× ${pattern}\nstdout: ${out.slice(-2000)}\nstderr: ${err.slice(-2000)}`));
      });
    });
  await waitForLines(/clarity-cdn listening/, 1);
  const port = Number(/"port":(\d+)/.exec(out.split('\n').find((l) => l.includes('clarity-cdn listening')) ?? '')?.[1]);
  return {
    child,
    port,
    origin: `http://127.0.0.1:${port}`,
    stdout: () => out,
    waitForLines,
    count: countOf,
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}
