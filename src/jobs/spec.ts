/**
 * A job as a client writes it, checked by the same parameter table as `/upscale`:
 *
 *   {"source": "<hash>" | {"url": "https://…"}, "params": {…} , "preset": "hero",
 *    "variants": [{"format": "webp", "w": 800}], "webhook": "https://…", "lane": "warm"}
 *
 * `params` holds upscale fields only (their names and aliases as in the query); output fields
 * belong to `variants`. A bad field is a 400 naming its path (`params.creativity`, `variants[1].w`).
 */
import {
  InvalidParamError,
  parseUpscaleRequest,
  PARAMS,
  parseValue,
  resolveKey,
  type ParamName,
  type ParseOptions,
  type UpscaleRequest,
} from '../params/index.js';
import type { Lane } from '../pipeline/index.js';
import type { VariantFields } from './types.js';
import { parseWebhookUrl } from './webhook.js';

export interface JobItem {
  source: string | { url: string };
  /** The clarity fields resolved (defaults, preset, params); `source` is set once it is known. */
  request: UpscaleRequest;
  /** As given, under their upstream names. */
  params: Record<string, string | number | boolean>;
  preset?: string;
  variants: VariantFields[];
  webhook?: string;
  lane: Lane;
}

/** Stands for the source until an origin URL is resolved to its hash. */
const UNKNOWN_SOURCE = '0'.repeat(64);
const HASH = /^[0-9a-f]{64}$/;
const ITEM_KEYS = new Set(['source', 'params', 'preset', 'variants', 'webhook', 'lane']);
const JOB_LANES: readonly Lane[] = ['jobs', 'warm'];

const invalid = (param: string, allowed: string, detail: string) => new InvalidParamError({ param, allowed, detail });

/**
 * The same fields under their upstream names (`scale` → `scale_factor`) and their own types
 * (`"2"` → 2), as URLs are built. Called on fields the parser has accepted.
 */
function canonical(fields: Record<string, string | number | boolean>): Record<string, string | number | boolean> {
  return Object.fromEntries(
    Object.entries(fields).map(([key, value]) => {
      const field = resolveKey(key) as ParamName;
      return [field, parseValue(key, PARAMS[field], String(value))];
    }),
  );
}

function scalars(value: unknown, path: string): Record<string, string | number | boolean> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(path, 'an object of field → value', `${path} must be an object of field → value`);
  }
  for (const [key, v] of Object.entries(value)) {
    if (!['string', 'number', 'boolean'].includes(typeof v)) {
      throw invalid(`${path}.${key}`, 'a number, string or boolean', `${path}.${key} must be a number, string or boolean`);
    }
  }
  return value as Record<string, string | number | boolean>;
}

/** Parses the fields as `/upscale` would parse them in a query; errors name `path.field`. */
function asQuery(fields: Record<string, string | number | boolean>, preset: string | undefined): URLSearchParams {
  const query = new URLSearchParams();
  if (preset !== undefined) query.append('preset', preset);
  for (const [key, value] of Object.entries(fields)) query.append(key, String(value));
  return query;
}

function withPath<T>(prefix: (param: string) => string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof InvalidParamError && error.param !== undefined) {
      throw new InvalidParamError({
        param: prefix(error.param),
        ...(error.allowed !== undefined ? { allowed: error.allowed } : {}),
        detail: `${prefix(error.param)}: ${error.detail}`,
      });
    }
    throw error;
  }
}

export function parseJobItem(raw: unknown, options: ParseOptions): JobItem {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid('body', 'a JSON object {source, params | preset, variants?, webhook?}', 'a job is a JSON object');
  }
  const body = raw as Record<string, unknown>;
  const unknown = Object.keys(body).find((k) => !ITEM_KEYS.has(k));
  if (unknown !== undefined) {
    throw invalid(unknown, [...ITEM_KEYS].join(', '), `unknown job field ${JSON.stringify(unknown)}; a job has ${[...ITEM_KEYS].join(', ')}`);
  }

  let source: JobItem['source'];
  const src = body.source;
  if (typeof src === 'string' && HASH.test(src)) source = src;
  else if (typeof src === 'object' && src !== null && typeof (src as { url?: unknown }).url === 'string') {
    source = { url: (src as { url: string }).url };
  } else {
    throw invalid('source', 'a source hash (64 hex) or {"url": "https://…"}', 'source must be a source hash from POST /sources or {"url": "https://…"}');
  }

  const preset = body.preset;
  if (preset !== undefined && typeof preset !== 'string') throw invalid('preset', 'a preset name', 'preset must be a string');
  const params = scalars(body.params, 'params');
  for (const key of Object.keys(params)) {
    const field = resolveKey(key);
    if (field && PARAMS[field].group === 'output') {
      throw invalid(`params.${key}`, 'upscale fields only', `params.${key} is an output field: put it in variants`);
    }
  }
  const request = withPath(
    (p) => (p === 'preset' ? 'preset' : `params.${p}`),
    () => parseUpscaleRequest(UNKNOWN_SOURCE, asQuery(params, preset), options),
  );

  if (body.variants !== undefined && !Array.isArray(body.variants)) {
    throw invalid('variants', 'an array of {format, w, h, fit, quality}', 'variants must be an array');
  }
  const variants = ((body.variants ?? []) as unknown[]).map((v, i) => {
    const fields = scalars(v, `variants[${i}]`);
    for (const key of Object.keys(fields)) {
      const field = resolveKey(key);
      if (!field || PARAMS[field].group !== 'output') {
        throw invalid(`variants[${i}].${key}`, 'output fields: format, quality, w, h, fit', `variants[${i}].${key} is not an output field`);
      }
    }
    // Checked with the job's own fields, exactly as its URL will be.
    withPath((p) => `variants[${i}].${p}`, () => parseUpscaleRequest(UNKNOWN_SOURCE, asQuery({ ...params, ...fields }, preset), options));
    return fields;
  });

  const webhook = body.webhook;
  if (webhook !== undefined) {
    const checked = typeof webhook === 'string' ? parseWebhookUrl(webhook) : { ok: false as const, reason: 'it is not a string' };
    if (!checked.ok) throw invalid('webhook', 'an absolute http(s) URL without credentials', `webhook is not usable: ${checked.reason}`);
  }
  const lane = body.lane ?? 'jobs';
  if (!JOB_LANES.includes(lane as Lane)) throw invalid('lane', JOB_LANES.join(', '), `lane must be one of ${JOB_LANES.join(', ')}`);

  return {
    source,
    request,
    params: canonical(params),
    ...(preset !== undefined ? { preset } : {}),
    variants: variants.map(canonical),
    ...(typeof webhook === 'string' ? { webhook } : {}),
    lane: lane as Lane,
  };
}
