/**
 * The CLI as a user runs it: a real child process (`node --import tsx src/cli/main.ts …`), with an
 * environment made only of what the test gives (plus PATH and HOME), so a variable set in the
 * developer's shell (PORT, REDIS_URL, SIGNING_KEY…) never changes what a test sees.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CliResult extends CliExit {
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /**
   * Resolves with the match once stdout (or stderr, with `stream: 'stderr'`) matches `pattern`,
   * now or later; rejects if the process exits first, with what it printed.
   */
  waitFor(pattern: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpExecArray>;
  /** Resolves once the process has exited. */
  exited: Promise<CliExit>;
}

/** Only PATH and HOME from the parent; logs silent unless the test asks. */
export function cliEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    LOG_LEVEL: 'silent',
    ...env,
  };
}

export function startCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    env: cliEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  const checks = new Set<() => void>();
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }) as CliExit);
  // After 'close' both pipes are drained: nothing more can match.
  const closed = once(child, 'close').then(([code, signal]) => ({ code, signal }) as CliExit);
  child.stdout!.on('data', (chunk: Buffer) => {
    output.stdout += chunk.toString();
    for (const check of checks) check();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    output.stderr += chunk.toString();
    for (const check of checks) check();
  });
  return {
    child,
    stdout: () => output.stdout,
    stderr: () => output.stderr,
    exited,
    waitFor(pattern, stream = 'stdout') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(output[stream]);
          if (!match) return;
          checks.delete(check);
          resolve(match);
        };
        checks.add(check);
        check();
        void closed.then(({ code, signal }) => {
          if (!checks.has(check)) return;
          checks.delete(check);
          reject(
            new Error(
              `clarity-cdn exited (code ${code}, signal ${signal}) before printing ${pattern}\n` +
                `stdout: ${output.stdout}\nstderr: ${output.stderr}`,
            ),
          );
        });
      });
    },
  };
}

/** Runs `clarity-cdn <args>` to its end; stdout and stderr are complete once this resolves. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const cli = startCli(args, env);
  // 'close' (not 'exit'): both pipes are drained, so nothing printed is missed.
  const [code, signal] = (await once(cli.child, 'close')) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout: cli.stdout(), stderr: cli.stderr() };
}
