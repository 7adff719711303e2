#!/usr/bin/env node
/**
 * `clarity-cdn [command]`, built on commander. Exit codes: 0 success, 1 failure, 2 usage error
 * (an unknown command or option, a bad argument, a bad configuration or presets file).
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config.js';
import { PresetFileError } from '../params/index.js';
import { StartupError } from '../server.js';
import { serve } from './serve.js';
import { sign } from './sign.js';
import { url } from './url.js';
import { UsageError } from './usage.js';

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
    .action(serve);

  cli
    .command('sign')
    .description('print a path (or URL) with its sig, signed with the first SIGNING_KEY')
    .argument('<path>', 'a path and query such as "/upscale/<hash>?scale=2", or a whole http(s) URL')
    .action(sign);

  cli
    .command('url')
    .description('print the /upscale URL of a source with parameters (signed when SIGNING_KEY is set) and an <img> tag')
    .argument('<hash>', 'the source hash from POST /sources')
    .argument('[params...]', 'key=value pairs, e.g. scale=2 format=webp w=800')
    .option('--base <url>', 'public root of the server (default: PUBLIC_BASE_URL, else http://localhost:PORT)')
    .action(url);

  return cli;
}

async function main(argv: string[]): Promise<number | undefined> {
  try {
    // No command is `serve` (what `npm start` runs); an unknown word stays an unknown command.
    await program().parseAsync(argv.length === 0 ? ['serve'] : argv, { from: 'user' });
    return undefined;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are answers, not failures; commander printed the message already.
      return ['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(error.code) ? 0 : 2;
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
    if (error instanceof StartupError) {
      process.stderr.write(`clarity-cdn: ${error.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`clarity-cdn: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
