#!/usr/bin/env node
/**
 * `clarity-cdn [command]`. Exit codes: 0 success, 1 failure, 2 usage error (bad command or
 * configuration).
 */
import { ConfigError, loadConfig } from '../config.js';
import { buildServer } from '../server.js';

const USAGE = `usage: clarity-cdn [serve] [--help]

commands:
  serve    serve HTTP on PORT (default 3000); configuration from the environment (see README)
`;

async function serve(): Promise<void> {
  const config = loadConfig(process.env);
  const built = await buildServer(config);
  await built.listen();
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    built.logger.info({ signal }, 'shutting down');
    await built.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

async function main(argv: string[]): Promise<number | undefined> {
  const [command = 'serve', ...rest] = argv;
  if (command === '--help' || command === '-h' || rest.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command !== 'serve') {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    return 2;
  }
  await serve();
  return undefined;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`clarity-cdn: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`clarity-cdn: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
