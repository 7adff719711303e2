/**
 * `clarity-cdn sources add <file|url>`: registers a source image and prints
 * `{hash, width, height, format, bytes}` as JSON (the answer of `POST /sources`). With `--server`,
 * through that server; without, straight into `CACHE_DIR`'s source store, with the server's limits
 * (and, for a URL, its SSRF guard and `SOURCE_ALLOWED_HOSTS`).
 */
import { readFile } from 'node:fs/promises';
import { loadConfig } from '../config.js';
import { CdnError } from '../errors.js';
import { cliLogger, openSourceStore, registerOriginUrl } from './local.js';
import { createRemote, ServerProblemError, type SourceAnswer } from './remote.js';
import { CommandFailedError, UsageError } from './usage.js';

export interface SourcesAddOptions {
  server?: string;
  token?: string;
}

const isUrl = (target: string) => /^https?:\/\//i.test(target);

async function readImage(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `no such file: ${path}` : `cannot read ${path}: ${(error as Error).message}`);
  }
}

const print = (s: SourceAnswer) =>
  process.stdout.write(`${JSON.stringify({ hash: s.hash, width: s.width, height: s.height, format: s.format, bytes: s.bytes })}\n`);

export async function addSource(target: string, options: SourcesAddOptions): Promise<void> {
  const data = isUrl(target) ? undefined : await readImage(target);
  const config = loadConfig(process.env);
  if (options.server) {
    const remote = createRemote({ server: options.server, ...((options.token ?? config.ADMIN_TOKEN) ? { token: options.token ?? config.ADMIN_TOKEN } : {}) });
    try {
      print((await remote.addSource(data ?? { url: target })).source);
    } catch (error) {
      if (error instanceof ServerProblemError) throw new CommandFailedError(error.message);
      throw error;
    } finally {
      await remote.close();
    }
    return;
  }
  const logger = cliLogger(config);
  const store = await openSourceStore(config, logger);
  try {
    const { info } = data ? await store.put(data) : await registerOriginUrl(config, store, logger, target);
    print(info);
  } catch (error) {
    if (error instanceof CdnError) throw new CommandFailedError(`${error.detail} (${error.code})`);
    throw error;
  } finally {
    await store.close();
  }
}
