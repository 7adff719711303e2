/**
 * `clarity-cdn url <hash> [key=value…]`: the `/upscale` URL for a source and parameters, validated
 * by the same parser as the server (a bad value is the server's 400 message, exit 2), signed when
 * `SIGNING_KEY` is set, and an `<img>` tag to paste. The URL itself is `buildUpscaleUrl`'s, so the
 * command and the library write the same bytes (upstream names, table order) for the same request.
 */
import { buildUpscaleUrl, type UpscaleFields } from '../client/index.js';
import { loadConfig } from '../config.js';
import { InvalidParamError, loadPresetsFile, PARAMS, parseUpscaleRequest, parseValue, PRESET_KEY, resolveKey } from '../params/index.js';
import { SIGNATURE_PARAM } from '../security/index.js';
import { UsageError } from './usage.js';

const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** The pairs as the builder takes them: aliases resolved, each value parsed by the table. */
function typedFields(query: URLSearchParams): { params: UpscaleFields; preset?: string } {
  const params: Record<string, number | string | boolean> = {};
  let preset: string | undefined;
  for (const [key, raw] of query) {
    if (key === PRESET_KEY) {
      preset = raw;
      continue;
    }
    if (key === SIGNATURE_PARAM) throw new UsageError('sig is not a parameter: the URL is signed with SIGNING_KEY');
    // Known and given once: parseUpscaleRequest has checked the whole query already.
    const name = resolveKey(key)!;
    params[name] = parseValue(key, PARAMS[name], raw);
  }
  // Sound: each value is what parseValue returns for its field's kind, which is the field's type.
  return { params: params as UpscaleFields, ...(preset !== undefined ? { preset } : {}) };
}

export async function url(hash: string, pairs: string[], options: { base?: string }): Promise<void> {
  const config = loadConfig(process.env);
  const query = new URLSearchParams();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected key=value, got ${JSON.stringify(pair)}`);
    query.append(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const presets = config.PRESETS_FILE ? await loadPresetsFile(config.PRESETS_FILE) : undefined;
  const baseUrl = options.base ?? config.PUBLIC_BASE_URL ?? `http://localhost:${config.PORT}`;
  let full: string;
  try {
    // The server's own check first, as the user spelled it: unknown and repeated keys, the presets
    // this configuration knows, ONLY_PRESETS; the builder knows none of the server's presets.
    parseUpscaleRequest(hash, query, { ...(presets ? { presets } : {}), onlyPresets: config.ONLY_PRESETS });
    full = buildUpscaleUrl({ baseUrl, hash, ...typedFields(query), ...(config.SIGNING_KEY ? { signingKey: config.SIGNING_KEY[0] as string } : {}) });
  } catch (error) {
    if (error instanceof InvalidParamError) throw new UsageError(error.detail);
    // Hash and key are checked above: a TypeError of the builder here is about --base.
    if (error instanceof TypeError && error.message.startsWith('buildUpscaleUrl: baseUrl')) {
      throw new UsageError(error.message.replace('buildUpscaleUrl: baseUrl', '--base'));
    }
    throw error;
  }
  if (!config.SIGNING_KEY) process.stderr.write('note: SIGNING_KEY is not set, so the URL is unsigned\n');
  process.stdout.write(`${full}\n<img src="${escapeHtml(full)}" alt="" loading="lazy" decoding="async">\n`);
}
