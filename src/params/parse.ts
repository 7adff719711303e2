/**
 * Query string → validated `UpscaleRequest`, driven only by the table. Strict on purpose: every
 * spelling a cache key could fork on (unknown keys, repeats, `1e1`, `0x10`) is refused with a 400
 * that names the parameter and what is allowed, rather than guessed at.
 */
import { InvalidParamError } from './errors.js';
import type { Presets } from './presets.js';
import { PARAMS, PRESET_KEY, RESERVED_KEYS, type ParamName, type ParamSpec } from './table.js';
import type { ClarityParams, OutputParams, UpscaleRequest } from './types.js';

const HASH = /^[0-9a-f]{64}$/;
const INT = /^-?\d+$/;
const FLOAT = /^-?(?:\d+(?:\.\d*)?|\.\d+)$/;
const BOOLS: Record<string, boolean> = { true: true, false: false, '1': true, '0': false };

/** Query key (name or alias) → canonical field name. */
const KEYS = new Map<string, ParamName>();
for (const [name, spec] of Object.entries(PARAMS) as [ParamName, ParamSpec][]) {
  KEYS.set(name, name);
  for (const alias of spec.aliases ?? []) KEYS.set(alias, name);
}

/** A query key (name or alias) → its field name; undefined when unknown. */
export function resolveKey(key: string): ParamName | undefined {
  return KEYS.get(key);
}

/** The `:hash` of a path, checked: a 400 naming `hash` unless it is a sha256 hex. */
export function parseSourceHash(hash: string): string {
  if (!HASH.test(hash)) {
    throw new InvalidParamError({
      param: 'hash',
      allowed: describeAllowed(PARAMS.mask),
      detail: 'the path must end in a source hash: 64 lowercase hex characters (sha256), as returned by POST /sources',
    });
  }
  return hash;
}

/** Human-readable description of what a field accepts; used in 400s and the README. */
export function describeAllowed(spec: ParamSpec): string {
  switch (spec.kind) {
    case 'int':
      return `an integer from ${spec.min} to ${spec.max}${'step' in spec && spec.step ? ` in steps of ${spec.step}` : ''}`;
    case 'float':
      return `a number from ${spec.min} to ${spec.max}`;
    case 'enum':
      return `one of: ${spec.values.join(', ')}`;
    case 'bool':
      return 'true, false, 1 or 0';
    case 'text':
      return spec.format === 'url'
        ? `an http(s) URL, at most ${spec.maxLength} characters`
        : spec.format === 'url-list'
          ? `comma-separated http(s) URLs, at most ${spec.maxLength} characters`
          : `text of at most ${spec.maxLength} characters`;
    case 'hash':
      return 'a source hash: 64 lowercase hex characters (sha256), as returned by POST /sources';
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Parses one raw value against its spec; throws `InvalidParamError` naming `key`. */
export function parseValue(key: string, spec: ParamSpec, raw: string): number | string | boolean {
  const fail = (why: string): never => {
    throw new InvalidParamError({
      param: key,
      allowed: describeAllowed(spec),
      detail: `${key}=${JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw)} ${why}; expected ${describeAllowed(spec)}`,
    });
  };
  switch (spec.kind) {
    case 'int':
    case 'float': {
      if (!(spec.kind === 'int' ? INT : FLOAT).test(raw)) fail(spec.kind === 'int' ? 'is not an integer' : 'is not a number');
      const n = Number(raw);
      if (n < spec.min || n > spec.max) fail('is out of range');
      if ('step' in spec && spec.step && n % spec.step !== 0) fail(`is not a multiple of ${spec.step}`);
      // -0 becomes 0 so that `0` and `-0` give one key.
      return n === 0 ? 0 : n;
    }
    case 'enum':
      if (!spec.values.includes(raw)) fail('is not allowed');
      return raw;
    case 'bool': {
      const b = BOOLS[raw];
      if (b === undefined) fail('is not a boolean');
      return b as boolean;
    }
    case 'text':
      if (raw.length > spec.maxLength) fail('is too long');
      if (spec.format === 'url' && raw !== '' && !isHttpUrl(raw)) fail('is not an http(s) URL');
      if (spec.format === 'url-list' && raw !== '' && !raw.split(',').every((u) => isHttpUrl(u.trim()))) {
        fail('is not a list of http(s) URLs');
      }
      return raw;
    case 'hash':
      if (!HASH.test(raw)) fail('is not a source hash');
      return raw;
  }
}

function defaults(group: 'clarity' | 'output'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(PARAMS) as [ParamName, ParamSpec][]) {
    if (spec.group === group && spec.default !== undefined) out[name] = spec.default;
  }
  return out;
}

export interface ParseOptions {
  /** Named parameter sets usable as `?preset=name`. */
  presets?: Presets;
  /** Refuse clarity fields in the query: they come from presets only (`ONLY_PRESETS`). */
  onlyPresets?: boolean;
}

/** The preset a query names (`preset=hero`), checked; undefined without one. */
function presetOf(query: URLSearchParams, options: ParseOptions) {
  const names = query.getAll(PRESET_KEY);
  if (names.length === 0) return undefined;
  const known = [...(options.presets?.keys() ?? [])];
  const allowed = known.length > 0 ? `one of: ${known.join(', ')}` : 'no presets are configured (PRESETS_FILE)';
  if (names.length > 1) {
    throw new InvalidParamError({ param: PRESET_KEY, allowed, detail: 'preset is given more than once; give it once' });
  }
  const name = names[0] as string;
  const values = options.presets?.get(name);
  if (!values) {
    throw new InvalidParamError({
      param: PRESET_KEY,
      allowed,
      detail: `preset=${JSON.stringify(name.slice(0, 80))} is not a configured preset; ${allowed}`,
    });
  }
  return values;
}

/**
 * Parses `/upscale/:hash?…`. `query` should come from the raw URL (`new URLSearchParams(search)`),
 * not a framework's parsed object, so that repeated keys are seen. Values resolve in this order:
 * the table's defaults, then the named preset, then the query's own fields.
 */
export function parseUpscaleRequest(hash: string, query: URLSearchParams, options: ParseOptions = {}): UpscaleRequest {
  parseSourceHash(hash);
  const clarity = defaults('clarity');
  const output = defaults('output');
  const given = new Set<ParamName>();
  const preset = presetOf(query, options);
  for (const [name, value] of Object.entries(preset ?? {}) as [ParamName, unknown][]) {
    (PARAMS[name].group === 'clarity' ? clarity : output)[name] = value;
    given.add(name);
  }
  const seen = new Map<ParamName, string>();
  for (const [key, raw] of query) {
    if ((RESERVED_KEYS as readonly string[]).includes(key)) continue;
    const name = KEYS.get(key);
    if (name === undefined) {
      throw new InvalidParamError({
        param: key,
        allowed: [...KEYS.keys(), ...RESERVED_KEYS].join(', '),
        detail: `unknown parameter ${JSON.stringify(key)}; known parameters: ${Object.keys(PARAMS).join(', ')}, ${RESERVED_KEYS.join(', ')}`,
      });
    }
    const earlier = seen.get(name);
    if (earlier !== undefined) {
      throw new InvalidParamError({
        param: key,
        allowed: 'one value per parameter',
        detail:
          earlier === key
            ? `${key} is given more than once; give it once`
            : `${key} and ${earlier} name the same parameter (${name}); give it once`,
      });
    }
    seen.set(name, key);
    const spec: ParamSpec = PARAMS[name];
    if (spec.group === 'clarity' && options.onlyPresets) {
      const presets = [...(options.presets?.keys() ?? [])].join(', ');
      throw new InvalidParamError({
        param: key,
        allowed: `preset=<name> (${presets}) and the output fields: ${OUTPUT_KEYS.join(', ')}`,
        detail: `${key} cannot be set here: this server takes upscale fields from presets only (ONLY_PRESETS); use preset=<name>`,
      });
    }
    (spec.group === 'clarity' ? clarity : output)[name] = parseValue(key, spec, raw);
    given.add(name);
  }
  return {
    source: hash,
    clarity: clarity as unknown as ClarityParams,
    output: output as unknown as OutputParams,
    given: [...given],
  };
}

const OUTPUT_KEYS = Object.entries(PARAMS)
  .filter(([, spec]) => spec.group === 'output')
  .map(([name]) => name);
