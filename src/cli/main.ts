#!/usr/bin/env node
/**
 * `clarity-cdn [command]`, built on commander. Exit codes: 0 success, 1 failure, 2 usage error
 * (an unknown command or option, a bad argument, a bad configuration or presets file).
 *
 * Each command's module is imported when it runs: the server's graph (sharp, express, the engines)
 * takes a second or two to load, which `--help`, `cache stats` or `warm --server` never need.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError } from '../config.js';
import { PresetFileError } from '../params/index.js';
import { CommandFailedError, UsageError } from './usage.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

function program(): Command {
  const cli = new Command('clarity-cdn')
    .description('An image CDN transform proxy that puts AI upscaling behind plain <img src> URLs.\nConfiguration comes from the environment (see README: Configuration).')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(run clarity-cdn --help for usage)');

  cli
    .command('serve')
    .description('serve HTTP on HOST:PORT (default 0.0.0.0:3000) until SIGTERM; the default command')
    .action(async () => (await import('./serve.js')).serve());

  cli
    .command('worker')
    .description('cluster mode (CLUSTER_MODE=bullmq): make masters for every instance, without HTTP, until SIGTERM')
    .action(async () => (await import('./worker.js')).worker());

  cli
    .command('sign')
    .description('print a path (or URL) with its sig, signed with the first SIGNING_KEY')
    .argument('<path>', 'a path and query such as "/upscale/<hash>?scale=2", or a whole http(s) URL')
    .action(async (path: string) => (await import('./sign.js')).sign(path));

  cli
    .command('url')
    .description('print the /upscale URL of a source with parameters (signed when SIGNING_KEY is set) and an <img> tag')
    .argument('<hash>', 'the source hash from POST /sources')
    .argument('[params...]', 'key=value pairs, e.g. scale=2 format=webp w=800')
    .option('--base <url>', 'public root of the server (default: PUBLIC_BASE_URL, else http://localhost:PORT)')
    .action(async (hash: string, pairs: string[], options: { base?: string }) => (await import('./url.js')).url(hash, pairs, options));

  const serverOption = '--server <url>';
  const serverHelp = 'a running clarity-cdn server (its HTTP API) instead of working in-process on CACHE_DIR';
  const tokenHelp = 'ADMIN_TOKEN of the server (default: ADMIN_TOKEN from the environment, which keeps it out of ps and shell history)';

  cli
    .command('warm')
    .summary('submit a list of images as jobs in the warm lane (resumable)')
    .description('Submit a list of images as jobs in the warm lane, so the cache is full before visitors ask for them.')
    .addHelpText(
      'after',
      `
Each line of the list is one of:
  {"hash"|"file"|"url": "…", "params"?: {…}, "preset"?: "…", "variants"?: [{"format": "webp", "w": 800}]}
  /upscale/<hash>?scale=2&format=webp&w=800   (or /upscale/url/<base64url>?…, or an absolute URL:
                                               upscale fields become params, output fields one variant;
                                               sig is ignored)
  https://origin.example.com/photo.jpg        (an origin image, the default parameters)
Blank lines and # comments are skipped. "file" is a local image, registered as a source first; a
relative path is read from the list's directory (from the current directory for stdin).

Without --server the work runs in this process on CACHE_DIR (the environment's configuration).
Finished items are appended to the state file; a second run skips them. Ctrl-C stops starting
items and lets those in flight finish (a second Ctrl-C abandons them), then exits 130.
Exit codes: 0 no item failed, 1 an item failed, 2 usage error, 130 interrupted.`,
    )
    .argument('<file>', 'the list, or - for stdin')
    .option(serverOption, serverHelp)
    .option('--token <token>', tokenHelp)
    .option('--concurrency <n>', 'items in flight at once', positiveInt('--concurrency'), 4)
    .option('--poll-interval <ms>', 'with --server: ms between two GET /jobs/:id of one job', positiveInt('--poll-interval'), 1000)
    .option('--state <path>', 'the resume file (default: <file>.warm-state, or .clarity-warm-state for stdin)')
    .option('--json', 'one JSON object per item, then {"summary": …}')
    .option('--no-progress', 'one line per finished item even on a terminal (instead of a progress bar)')
    .option('--log-level <level>', 'in-process: the server log level, on stderr (default: warn, or LOG_LEVEL when quieter)')
    .action(async (input: string, options: import('./warm.js').WarmOptions) => (await import('./warm.js')).warm(input, options));

  cli
    .command('sources')
    .description('source images: sources add <file|url>')
    .command('add')
    .summary('register a source image')
    .description('register a source image (a file, or an http(s) URL the server fetches) and print {hash, width, height, format, bytes} as JSON')
    .argument('<file|url>', 'an image file, or an http(s) image URL')
    .option(serverOption, serverHelp)
    .option('--token <token>', tokenHelp)
    .action(async (target: string, options: { server?: string; token?: string }) => (await import('./sources.js')).addSource(target, options));

  cli
    .command('jobs')
    .summary('print a job as JSON')
    .description('print a job as JSON (as GET /jobs/:id shows it). Exit 0 when it exists and has not FAILED, 1 when it FAILED or does not exist')
    .argument('<id>', 'the job id (64 hex characters), as POST /jobs and warm print it')
    .option(serverOption, serverHelp)
    .option('--token <token>', tokenHelp)
    .action(async (id: string, options: { server?: string; token?: string }) => (await import('./jobs.js')).showJob(id, options));

  const cache = cli.command('cache').summary('cache stats | cache prune').description('the disk cache, source store and job records under CACHE_DIR (in-process: no server needed)');
  cache
    .command('stats')
    .description('print entries and bytes by kind, the budgets and the pinned bytes')
    .option('--json', 'as JSON')
    .action(async (options: { json?: boolean }) => (await import('./cache.js')).cacheStats(options));
  cache
    .command('prune')
    .description('evict now down to CACHE_DISK_MAX_BYTES and SOURCE_DISK_MAX_BYTES, drop job records past JOBS_RETENTION_SECONDS; print what was removed')
    .option('--json', 'as JSON')
    .action(async (options: { json?: boolean }) => (await import('./cache.js')).cachePrune(options));

  return cli;
}

/** A commander parser for a whole number ≥ 1; a bad one is a usage error (exit 2). */
function positiveInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a whole number of at least 1`);
    return n;
  };
}

async function main(argv: string[]): Promise<number | undefined> {
  try {
    // No command is `serve` (what `npm start` runs); an unknown word stays an unknown command.
    await program().parseAsync(argv.length === 0 ? ['serve'] : argv, { from: 'user' });
    return undefined;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are answers, not failures; commander printed the message already. A
      // command group without its subcommand (`clarity-cdn cache`) prints help too, as an error.
      const answer = ['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(error.code);
      return answer && error.exitCode === 0 ? 0 : 2;
    }
    throw error;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof PresetFileError || error instanceof UsageError) {
      process.stderr.write(`clarity-cdn: ${error.message}\n`);
      process.exit(2);
    }
    // StartupError by name: importing server.js for the class would load its whole graph here.
    if (error instanceof CommandFailedError || (error instanceof Error && error.name === 'StartupError')) {
      process.stderr.write(`clarity-cdn: ${error.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`clarity-cdn: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
