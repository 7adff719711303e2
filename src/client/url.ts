/**
 * `/upscale` URLs built from code (a CMS, a static-site build) without running the server: the
 * same table validates every field, so a URL this returns is one the server parses, and a value it
 * refuses is refused with the `InvalidParamError` the server would answer 400 with.
 *
 * The text is canonical, because a signature covers the URL byte for byte: fields in the table's
 * order (never the caller's object order), upstream names (never aliases), numbers as `String(n)`,
 * booleans as `true`/`false`, `preset` first. Equal options give equal URLs, hence equal
 * signatures and one cache entry per payload.
 */
import {
  describeAllowed,
  InvalidParamError,
  PARAMS,
  parseSourceHash,
  parseValue,
  PRESET_KEY,
  PRESET_NAME,
  type ClarityParams,
  type OutputParams,
  type ParamName,
  type ParamSpec,
} from '../params/index.js';
// The module itself, not `security/index.js`: that one also loads the SSRF dispatcher (undici) and
// the miss limiter, which a CMS build has no use for.
import { signPath } from '../security/signature.js';

type Fields = ClarityParams & OutputParams;

/**
 * Every field of the parameter table under its upstream name, typed as the table checks it:
 * numbers as `number`, enums as their string unions, booleans as `boolean`. All optional: a field
 * left out takes the server's default (or the preset's value).
 *
 * Derived from `ClarityParams`/`OutputParams`, which `params/table.ts` ties to `PARAMS` both ways,
 * so a field added to the table appears here by itself.
 * TODO(lead): `placeholder?: 'local' | 'lanczos' | 'none'` was not in `PARAMS` when this was
 * written; once it is in the table and `OutputParams` it is a field here with no change to this
 * file. Add it to the exact-URL test in test/unit/client/url.test.ts then.
 */
export type UpscaleFields = { [K in keyof Fields]?: NonNullable<Fields[K]> };

export interface BuildUpscaleUrlOptions {
  /**
   * The proxy's public root, e.g. `https://img.example.com` (a trailing `/` is dropped). A path
   * prefix is kept (`https://example.com/img` → `https://example.com/img/upscale/…`) but is not
   * signed: the server sees and verifies only its own path, `/upscale/…`, so the proxy in front
   * must strip the prefix. No query, fragment or credentials (TypeError).
   */
  baseUrl: string;
  /** Exactly one of: a source hash (from `POST /sources`): 64 lowercase hex characters… */
  hash?: string;
  /** …or an origin image URL, absolute http(s), served through `/upscale/url/<base64url>`. */
  url?: string;
  /** The fields to set; checked against the parameter table. */
  params?: UpscaleFields;
  /**
   * A preset name (`?preset=hero`), written first. Only its spelling is checked here: which
   * presets exist is the server's `PRESETS_FILE`, and an unknown one is its 400.
   */
  preset?: string;
  /** The first key of the server's `SIGNING_KEY`; when given, the URL carries `sig`. */
  signingKey?: string;
}

/**
 * The `/upscale` URL for a source and fields, signed when `signingKey` is given.
 *
 * Throws `InvalidParamError` (`param`, `allowed`, `detail` as the server's 400) for a bad field,
 * hash, origin URL or preset name; `TypeError` for options that are not a request at all (neither
 * or both of `hash`/`url`, a `baseUrl` that is not an http(s) root, an empty `signingKey`).
 */
export function buildUpscaleUrl(options: BuildUpscaleUrlOptions): string {
  const base = baseOf(options.baseUrl);
  const path = `/upscale/${sourceSegment(options)}`;
  const pairs: string[] = [];
  if (options.preset !== undefined) pairs.push(`${PRESET_KEY}=${encode(presetName(options.preset))}`);
  for (const [name, text] of fieldTexts(options.params ?? {})) pairs.push(`${name}=${text}`);
  const pathAndQuery = pairs.length > 0 ? `${path}?${pairs.join('&')}` : path;
  if (options.signingKey === undefined) return base + pathAndQuery;
  if (typeof options.signingKey !== 'string' || options.signingKey === '') {
    throw new TypeError('buildUpscaleUrl: signingKey must be a non-empty string (the first key of SIGNING_KEY)');
  }
  return base + signPath(pathAndQuery, options.signingKey);
}

/**
 * `encodeURIComponent`, plus `!'()*`: browsers rewrite `'` in the query of an http(s) URL to `%27`
 * (the WHATWG URL parser), which would change the bytes the server verifies; the other four follow
 * RFC 3986 for intermediaries that normalize the same way. Spaces are `%20`, never `+`.
 */
function encode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function baseOf(baseUrl: string): string {
  let url: URL | undefined;
  try {
    url = new URL(baseUrl);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new TypeError(`buildUpscaleUrl: baseUrl must be an absolute http(s) URL such as https://img.example.com, got ${JSON.stringify(baseUrl)}`);
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new TypeError(`buildUpscaleUrl: baseUrl must be a root (scheme, host, optional path), without query, fragment or credentials, got ${JSON.stringify(baseUrl)}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

/** `<hash>` or `url/<base64url of the origin URL>`, as the two routes take them. */
function sourceSegment({ hash, url }: BuildUpscaleUrlOptions): string {
  if ((hash === undefined) === (url === undefined)) {
    throw new TypeError(
      `buildUpscaleUrl: give exactly one of hash (a source hash) and url (an origin image URL), not ${hash === undefined ? 'neither' : 'both'}`,
    );
  }
  if (hash !== undefined) return parseSourceHash(String(hash));
  const text = String(url);
  // The server's own test (`decodeOriginUrl`), plus one that the text parses as a URL at all.
  let parsed: URL | undefined;
  try {
    parsed = new URL(text);
  } catch {
    // reported below
  }
  if (!/^https?:\/\/[^\s]+$/i.test(text) || !parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new InvalidParamError({
      param: 'url',
      allowed: 'an absolute http(s) URL',
      detail: `url=${JSON.stringify(text.slice(0, 80))} is not an absolute http(s) URL`,
    });
  }
  // The string as given, not `parsed.href`: the server maps the URL it decodes to a source, and
  // the caller's spelling is the one they expect to see there.
  return `url/${Buffer.from(text, 'utf8').toString('base64url')}`;
}

function presetName(name: string): string {
  if (typeof name !== 'string' || !PRESET_NAME.test(name)) {
    throw new InvalidParamError({
      param: PRESET_KEY,
      allowed: 'a preset name: 1-64 letters, digits, _ or -, starting with a letter or digit',
      detail: `preset=${JSON.stringify(String(name).slice(0, 80))} is not a preset name; a name is 1-64 letters, digits, _ or -, starting with a letter or digit`,
    });
  }
  return name;
}

const TYPE_OF_KIND: Record<ParamSpec['kind'], 'number' | 'boolean' | 'string'> = {
  int: 'number',
  float: 'number',
  bool: 'boolean',
  enum: 'string',
  text: 'string',
  hash: 'string',
};

/** `[name, encoded value]` in the table's order, each value checked by the server's parser. */
function fieldTexts(params: UpscaleFields): [ParamName, string][] {
  const given = params as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (Object.hasOwn(PARAMS, key)) continue;
    // Aliases are the query's shorthand; here each field has one spelling, so one canonical URL.
    throw new InvalidParamError({
      param: key,
      allowed: Object.keys(PARAMS).join(', '),
      detail: `unknown field ${JSON.stringify(key)}; fields go by their upstream names: ${Object.keys(PARAMS).join(', ')}`,
    });
  }
  const texts: [ParamName, string][] = [];
  for (const [name, spec] of Object.entries(PARAMS) as [ParamName, ParamSpec][]) {
    const value = given[name];
    if (value === undefined) continue;
    const type = TYPE_OF_KIND[spec.kind];
    // Checked before writing: `"1"` for a boolean would parse, but as a second spelling of `true`.
    if (typeof value !== type) {
      throw new InvalidParamError({
        param: name,
        allowed: describeAllowed(spec),
        detail: `${name} must be a ${type}, got ${value === null ? 'null' : typeof value}; expected ${describeAllowed(spec)}`,
      });
    }
    // String(n) writes very small or large numbers with an exponent (1e-7), which the parser
    // refuses: such values are outside every range but creativity's, where they mean nothing.
    const parsed = parseValue(name, spec, typeof value === 'string' ? value : String(value));
    try {
      texts.push([name, encode(String(parsed))]);
    } catch {
      // encodeURIComponent throws URIError on a lone surrogate; no URL can carry one.
      throw new InvalidParamError({
        param: name,
        allowed: describeAllowed(spec),
        detail: `${name} is not well-formed Unicode (a lone surrogate); expected ${describeAllowed(spec)}`,
      });
    }
  }
  return texts;
}
