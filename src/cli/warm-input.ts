/**
 * The lines `clarity-cdn warm` reads, as pure functions: each line becomes a warm item (a job to
 * submit, its source still to resolve), is skipped (blank, `#` comment), or is refused with a
 * reason naming the line. Validation of the fields themselves is the server's (the jobs API runs
 * the same parameter table as `/upscale`), so a bad value fails with the server's own words.
 *
 * A line is one of:
 *   {"hash" | "file" | "url": …, "params"?: {…}, "preset"?: "…", "variants"?: [{…}]}
 *   /upscale/<hash>?scale=2&format=webp&w=800        (a path, or an absolute URL)
 *   /upscale/url/<base64url>?…                         (an origin image through /upscale/url)
 *   https://origin.example.com/photo.jpg               (an origin image, the default parameters)
 */
import { createHash } from 'node:crypto';
import { PARAMS, PRESET_KEY, resolveKey } from '../params/index.js';
import { SIGNATURE_PARAM } from '../security/signature.js';

type Scalar = string | number | boolean;

/** Where the image of an item comes from; `file` is registered (`POST /sources`) first. */
export type WarmSource = { hash: string } | { file: string } | { url: string };

export interface WarmItem {
  /** 1-based line number in the input. */
  line: number;
  /** sha256 of the normalised line: what the state file records once the item is finished. */
  key: string;
  source: WarmSource;
  params?: Record<string, Scalar>;
  preset?: string;
  variants?: Record<string, Scalar>[];
}

/** A line refused before anything is sent: its number and why. */
export interface WarmLineError {
  line: number;
  /** `INVALID_LINE` for a line that is not an item at all. */
  code: string;
  error: string;
}

export type WarmLine = { kind: 'item'; item: WarmItem } | { kind: 'invalid'; problem: WarmLineError };

const JSON_FIELDS = new Set(['hash', 'file', 'url', 'params', 'preset', 'variants']);
const SOURCE_FIELDS = ['hash', 'file', 'url'] as const;
/** `<base path>/upscale/<hash>` or `<base path>/upscale/url/<base64url>`. */
const UPSCALE_PATH = /\/upscale\/(?:url\/([^/]*)|([^/]*))$/;
const HASH = /^[0-9a-f]{64}$/;

const invalid = (line: number, error: string): WarmLine => ({ kind: 'invalid', problem: { line, code: 'INVALID_LINE', error } });

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** JSON with object keys sorted at every level: equal items, equal text, whatever the spelling. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function scalars(value: unknown): value is Record<string, Scalar> {
  return isPlainObject(value) && Object.values(value).every((v) => ['string', 'number', 'boolean'].includes(typeof v));
}

function fromJson(text: string, line: number): WarmLine {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return invalid(line, `not valid JSON: ${(error as Error).message}`);
  }
  if (!isPlainObject(parsed)) return invalid(line, 'a JSON line must be an object {"hash"|"file"|"url": …, "params"?: {…}}');
  const unknown = Object.keys(parsed).find((k) => !JSON_FIELDS.has(k));
  if (unknown !== undefined) {
    return invalid(line, `unknown field ${JSON.stringify(unknown)}; a line has ${[...JSON_FIELDS].join(', ')}`);
  }
  const given = SOURCE_FIELDS.filter((f) => parsed[f] !== undefined);
  if (given.length !== 1) {
    return invalid(line, `give exactly one of "hash", "file" and "url"${given.length > 1 ? `, not ${given.join(' and ')}` : ''}`);
  }
  const field = given[0] as (typeof SOURCE_FIELDS)[number];
  const value = parsed[field];
  if (typeof value !== 'string' || value === '') return invalid(line, `"${field}" must be a non-empty string`);
  const { params, preset, variants } = parsed;
  // Only the shapes are checked here; the fields themselves are the server's to judge.
  if (params !== undefined && !scalars(params)) return invalid(line, '"params" must be an object of field → number, string or boolean');
  if (preset !== undefined && typeof preset !== 'string') return invalid(line, '"preset" must be a string');
  if (variants !== undefined && !(Array.isArray(variants) && variants.every(scalars))) {
    return invalid(line, '"variants" must be an array of objects such as {"format": "webp", "w": 800}');
  }
  return {
    kind: 'item',
    item: {
      line,
      key: sha256(`json\n${canonicalJson(parsed)}`),
      source: { [field]: value } as WarmSource,
      ...(params !== undefined ? { params } : {}),
      ...(preset !== undefined ? { preset } : {}),
      ...(variants !== undefined ? { variants } : {}),
    },
  };
}

/** The origin URL inside `/upscale/url/<base64url>`, as the server decodes it. */
function decodeOrigin(encoded: string): string | undefined {
  const url = /^[A-Za-z0-9_-]+={0,2}$/.test(encoded) ? Buffer.from(encoded, 'base64url').toString('utf8') : '';
  return /^https?:\/\/[^\s]+$/i.test(url) ? url : undefined;
}

/**
 * An `/upscale` URL as a page uses it: upscale fields become the job's params (the preset kept),
 * output fields one variant, and `sig` is dropped (the jobs API is authorised by ADMIN_TOKEN).
 */
function fromUpscaleUrl(url: URL, match: RegExpExecArray, line: number): WarmLine {
  let source: WarmSource;
  if (match[1] !== undefined) {
    const origin = decodeOrigin(match[1]);
    if (!origin) return invalid(line, '/upscale/url/ must be followed by the base64url encoding of an http(s) URL');
    source = { url: origin };
  } else {
    // A malformed hash goes to the server as given: its answer says what a hash looks like.
    source = { hash: decodeURIComponent(match[2] as string) };
  }
  const params: Record<string, Scalar> = {};
  const variant: Record<string, Scalar> = {};
  let preset: string | undefined;
  const seen = new Set<string>();
  const kept: [string, string][] = [];
  for (const [key, value] of url.searchParams) {
    if (key === SIGNATURE_PARAM) continue;
    if (seen.has(key)) return invalid(line, `repeated parameter ${JSON.stringify(key)}`);
    seen.add(key);
    kept.push([key, value]);
    if (key === PRESET_KEY) preset = value;
    else {
      const field = resolveKey(key);
      // An unknown key stays among the params, where the server names it.
      if (field && PARAMS[field].group === 'output') variant[key] = value;
      else params[key] = value;
    }
  }
  kept.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // The same request, absolute or a path, signed or not, is the same item.
  const normalised = `${match[0]}?${new URLSearchParams(kept).toString()}`;
  return {
    kind: 'item',
    item: {
      line,
      key: sha256(`upscale\n${normalised}`),
      source,
      ...(Object.keys(params).length > 0 ? { params } : {}),
      ...(preset !== undefined ? { preset } : {}),
      ...(Object.keys(variant).length > 0 ? { variants: [variant] } : {}),
    },
  };
}

/** One input line (without its newline); `undefined` for a blank line or a `#` comment. */
export function parseWarmLine(raw: string, line: number): WarmLine | undefined {
  const text = raw.trim();
  if (text === '' || text.startsWith('#')) return undefined;
  if (text.startsWith('{')) return fromJson(text, line);
  return fromUrl(text.replace(/&amp;/g, '&'), line);
}

/**
 * A URL line. `&amp;` is read as `&`: URLs grepped out of HTML come escaped, and no parameter's
 * name starts with `amp;`.
 */
function fromUrl(text: string, line: number): WarmLine {
  const isAbsolute = /^https?:\/\//i.test(text);
  if (!isAbsolute && !text.startsWith('/')) {
    return invalid(line, 'expected a JSON object, an /upscale URL or an http(s) image URL');
  }
  let url: URL;
  try {
    url = new URL(text, 'http://path.invalid');
  } catch {
    return invalid(line, 'not a valid URL');
  }
  const match = UPSCALE_PATH.exec(url.pathname);
  if (!isAbsolute) {
    if (match) return fromUpscaleUrl(url, match, line);
    return invalid(line, 'a path must be an /upscale path: /upscale/<hash>?… or /upscale/url/<base64url>?…');
  }
  // An absolute URL is ours only with a hash or url/ after /upscale/: an origin may well keep
  // its own images under a folder of that name.
  if (match && (match[1] !== undefined || HASH.test(match[2] as string))) return fromUpscaleUrl(url, match, line);
  return { kind: 'item', item: { line, key: sha256(`origin\n${text}`), source: { url: text } } };
}

/** The body of `POST /jobs` for an item whose source is known: always in the warm lane. */
export function jobBody(item: WarmItem, source: string | { url: string }): Record<string, unknown> {
  return {
    source,
    ...(item.params ? { params: item.params } : {}),
    ...(item.preset !== undefined ? { preset: item.preset } : {}),
    ...(item.variants ? { variants: item.variants } : {}),
    lane: 'warm',
  };
}
