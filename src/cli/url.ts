/**
 * `clarity-cdn url <hash> [key=value…]`: the `/upscale` URL for a source and parameters, validated
 * by the same parser as the server (a bad value is the server's 400 message, exit 2), signed when
 * `SIGNING_KEY` is set, and an `<img>` tag to paste.
 */
import { loadConfig } from '../config.js';
import { InvalidParamError, parseUpscaleRequest } from '../params/index.js';
import { loadPresets } from '../server.js';
import { signPath } from '../security/index.js';
import { UsageError } from './usage.js';

const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

export async function url(hash: string, pairs: string[], options: { base?: string }): Promise<void> {
  const config = loadConfig(process.env);
  const query = new URLSearchParams();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected key=value, got ${JSON.stringify(pair)}`);
    query.append(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const presets = await loadPresets(config.PRESETS_FILE);
  try {
    parseUpscaleRequest(hash, query, { ...(presets ? { presets } : {}), onlyPresets: config.ONLY_PRESETS });
  } catch (error) {
    if (error instanceof InvalidParamError) throw new UsageError(error.detail);
    throw error;
  }
  const search = query.toString().replace(/\+/g, '%20');
  const path = `/upscale/${hash}${search ? `?${search}` : ''}`;
  const signed = config.SIGNING_KEY ? signPath(path, config.SIGNING_KEY[0] as string) : path;
  const base = (options.base ?? config.PUBLIC_BASE_URL ?? `http://localhost:${config.PORT}`).replace(/\/+$/, '');
  const full = base + signed;
  if (!config.SIGNING_KEY) process.stderr.write('note: SIGNING_KEY is not set, so the URL is unsigned\n');
  process.stdout.write(`${full}\n<img src="${escapeHtml(full)}" alt="" loading="lazy" decoding="async">\n`);
}
