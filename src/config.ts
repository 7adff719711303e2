/**
 * The environment schema. The only module that reads `process.env` (through `loadConfig(env)`):
 * every variable with its default, unit and meaning; a bad value stops the process with a message
 * naming each variable at fault (secrets are never echoed). The README configuration table is
 * generated from `CONFIG_DOCS` below (see `test/unit/readme.test.ts`).
 */
import { z } from 'zod';

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

const UNITS: Record<string, number> = { b: 1, kb: 1000, kib: KIB, mb: 1e6, mib: MIB, gb: 1e9, gib: GIB };

/** `268435456`, `256MiB`, `10 GiB`, `1.5GB` → bytes. */
const bytes = z.string().transform((raw, ctx) => {
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw.trim());
  const factor = match ? UNITS[(match[2] || 'b').toLowerCase()] : undefined;
  if (!match || factor === undefined) {
    ctx.addIssue({ code: 'custom', message: 'expected a byte size such as 268435456, 256MiB or 10GiB' });
    return z.NEVER;
  }
  return Math.floor(Number(match[1]) * factor);
});

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, `expected a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`));

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** A non-negative decimal number (a price). */
const decimal = z
  .string()
  .regex(/^\d+(?:\.\d+)?$/, 'expected a decimal number such as 0.05')
  .transform(Number);

/** Comma-separated items, blanks dropped. */
const list = (item: z.ZodType<string, string>, what: string) =>
  z
    .string()
    .transform((raw) => raw.split(',').map((s) => s.trim()).filter((s) => s !== ''))
    .pipe(z.array(item).min(1, `expected a comma-separated list of ${what}`));

/**
 * Express's `trust proxy`: `true` (every hop: only behind a proxy that overwrites
 * X-Forwarded-For), a hop count, or addresses/CIDRs/`loopback`/`linklocal`/`uniquelocal`.
 */
const trustProxy = z.string().transform((raw, ctx): boolean | number | string[] => {
  const value = raw.trim();
  if (value === 'true' || value === 'false') return value === 'true';
  if (/^\d+$/.test(value)) return Number(value);
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  const ok = items.every((i) => ['loopback', 'linklocal', 'uniquelocal'].includes(i) || /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(i));
  if (!ok || items.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'expected true, false, a hop count, or addresses/CIDRs (or loopback, linklocal, uniquelocal), comma-separated' });
    return z.NEVER;
  }
  return items;
});

const url = z.string().url('expected an absolute URL such as https://api.segmind.com').refine(
  (u) => /^https?:\/\//.test(u),
  'expected an http(s) URL',
);

/** One entry per variable: schema (with its default as the string a user would write) and meaning. */
const VARIABLES = {
  PORT: { schema: int(0, 65535), default: '3000', doc: 'Port to listen on.' },
  HOST: { schema: z.string().min(1), default: '0.0.0.0', doc: 'Address to listen on.' },
  LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    doc: 'pino log level.',
  },
  UPSCALE_ENGINE: {
    schema: z.enum(['auto', 'segmind', 'local']),
    default: 'auto',
    doc: '`segmind`, `local`, or `auto` (segmind when `SEGMIND_API_KEY` is set, else local).',
  },
  SEGMIND_API_KEY: {
    schema: z.string().min(1, 'expected a non-empty key'),
    secret: true,
    doc: 'Segmind API key, sent as `x-api-key`. Never logged, never echoed.',
  },
  SEGMIND_BASE_URL: { schema: url, default: 'https://api.segmind.com', doc: 'The upstream API root.' },
  SEGMIND_MODE: {
    schema: z.enum(['async', 'sync']),
    default: 'async',
    doc: '`async`: v2 submit + poll; `sync`: v1, one request answered with the image.',
  },
  SEGMIND_POLL_INTERVAL_MS: { schema: int(10, 60_000), default: '1000', doc: 'v2 poll cadence, ms.' },
  SEGMIND_IMAGE_DELIVERY: {
    schema: z.enum(['base64', 'url']),
    default: 'base64',
    doc: 'How the source travels upstream: inline base64, or `url` (`{PUBLIC_BASE_URL}/sources/<hash>`).',
  },
  UPSTREAM_CONCURRENCY: { schema: int(1, 256), default: '4', doc: 'Most engine calls in flight at once.' },
  UPSTREAM_RPM: { schema: int(1, 100_000), default: '60', doc: 'Most engine submissions per minute.' },
  UPSTREAM_TIMEOUT_MS: { schema: int(1000), default: '600000', doc: 'Give up on one upstream job after this many ms.' },
  UPSTREAM_RETRIES: {
    schema: int(0, 20),
    default: '4',
    doc: 'Retries of a 429/5xx/connection failure before answering 503.',
  },
  UPSTREAM_DAILY_LIMIT: {
    schema: int(0),
    doc: 'Most upstream submissions per UTC day; unset: no limit. Past it: 503.',
  },
  UPSTREAM_FALLBACK: {
    schema: z.enum(['none', 'local']),
    default: 'none',
    doc: '`local`: answer with the local engine (briefly cached) while the upstream is out of credits, rejects the key or is down.',
  },
  FAILED_TTL_SECONDS: {
    schema: int(0),
    default: '3600',
    doc: 'How long an upstream FAILED answer is remembered (422) so the payload is not paid for again.',
  },
  FALLBACK_TTL_SECONDS: { schema: int(0), default: '300', doc: 'How long a fallback result is cached.' },
  REQUEST_TIMEOUT_MS: {
    schema: int(100),
    default: '120000',
    doc: 'Longest a request waits for an upscale; past it 504 + `Retry-After`, and the work still lands in the cache.',
  },
  CACHE_DIR: { schema: z.string().min(1), default: './.cache', doc: 'Disk tier, source store and job journal.' },
  CACHE_DISK_MAX_BYTES: {
    schema: bytes,
    default: '10GiB',
    doc: 'Disk tier size; variants are evicted first, paid masters never.',
  },
  CACHE_MEMORY_MAX_BYTES: { schema: bytes, default: '256MiB', doc: 'Memory tier size (LRU).' },
  SOURCE_MAX_BYTES: { schema: bytes, default: '25MiB', doc: 'Largest accepted source upload (413 past it).' },
  SOURCE_MAX_PIXELS: {
    schema: int(1),
    default: '50000000',
    doc: 'Largest accepted source, in pixels (sharp `limitInputPixels`; 413 past it).',
  },
  OUTPUT_MAX_PIXELS: {
    schema: int(1),
    default: '100000000',
    doc: 'Largest upscaled master, in pixels (source × scale²); larger requests are a 400.',
  },
  LOCAL_MODEL: {
    schema: z.enum(['esrgan-slim', 'esrgan-medium', 'esrgan-thick']),
    default: 'esrgan-slim',
    doc: 'UpscalerJS ESRGAN model the local engine runs.',
  },
  LOCAL_WORKERS: { schema: int(1, 64), default: '2', doc: 'Inference worker threads of the local engine.' },
  LOCAL_TILE_SIZE: { schema: int(32, 1024), default: '128', doc: 'Tile edge (px) fed to the model.' },
  LOCAL_TILE_OVERLAP: {
    schema: int(0, 128),
    default: '16',
    doc: 'Overlap (px) around each tile, so borders do not show as seams.',
  },
  AVIF_EFFORT: {
    schema: int(0, 9),
    default: '4',
    doc: 'AVIF encoder effort (0-9) of the variants kept: 4 is sharp\'s default (the smallest files for the time); it takes seconds per large image, which `AVIF_DRAFT_EFFORT` hides.',
  },
  AVIF_DRAFT_EFFORT: {
    schema: int(0, 9),
    default: '0',
    doc: 'A visitor\'s new AVIF variant is first answered at this effort (no-store, `X-Upscale-Status: pending`) while the `AVIF_EFFORT` one is made; equal to `AVIF_EFFORT`: no drafts.',
  },
  REDIS_URL: {
    schema: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL'),
    secret: true,
    doc: 'Enables the shared Redis tier.',
  },
  CLUSTER_MODE: {
    schema: z.enum(['none', 'bullmq']),
    default: 'none',
    doc: '`bullmq` (needs `REDIS_URL`): masters are made through one BullMQ queue, so de-duplication, the upstream limits, the lanes and never-pay-twice hold across instances.',
  },
  CLUSTER_WORKER: {
    schema: bool,
    default: 'true',
    doc: 'In cluster mode, whether `serve` also runs a queue worker; `false` for HTTP-only instances (run `clarity-cdn worker` elsewhere).',
  },
  REDIS_PREFIX: { schema: z.string().min(1), default: 'clarity-cdn', doc: 'Namespace of every Redis key.' },
  REDIS_MASTER_TTL_SECONDS: { schema: int(1), default: String(30 * 86400), doc: 'TTL of masters in Redis.' },
  REDIS_VARIANT_TTL_SECONDS: { schema: int(1), default: String(7 * 86400), doc: 'TTL of variants in Redis.' },
  REDIS_MAX_VALUE_BYTES: {
    schema: bytes,
    default: '8MiB',
    doc: 'Values larger than this stay out of Redis (disk only).',
  },
  REDIS_TIMEOUT_MS: {
    schema: int(1, 60_000),
    default: '250',
    doc: 'Longest a Redis operation may hold a request; past it, a miss.',
  },
  ADMIN_TOKEN: {
    schema: z.string().min(16, 'expected at least 16 characters'),
    secret: true,
    doc: 'When set, `POST /sources` requires `Authorization: Bearer <token>`. Unset with a non-loopback `HOST`: a warning at start.',
  },
  PUBLIC_BASE_URL: { schema: url, doc: 'The proxy\'s public root, for absolute URLs it hands out.' },
  SIGNING_KEY: {
    schema: list(z.string().min(16, 'expected each key to have at least 16 characters'), 'keys'),
    secret: true,
    doc: 'When set, `/upscale` URLs need a valid `sig` (403 otherwise). Comma-separated keys: any verifies, the first signs (rotation).',
  },
  PRESETS_FILE: { schema: z.string().min(1), doc: 'JSON file of named parameter sets, used as `?preset=name` (see `config/presets.example.json`).' },
  ONLY_PRESETS: {
    schema: bool,
    default: 'false',
    doc: '`true`: upscale fields come from presets only (output fields stay free), bounding the distinct paid payloads.',
  },
  SOURCE_ALLOWED_HOSTS: {
    schema: list(z.string().regex(/^[A-Za-z0-9.*?[\]{}!_-]+$/, 'expected host names or globs such as images.example.com or *.example.org'), 'host globs'),
    doc: 'Hosts origin URLs may name (globs, comma-separated). Setting it enables `GET /upscale/url/…`.',
  },
  SOURCE_ALLOW_PRIVATE: {
    schema: bool,
    default: 'false',
    doc: '`true` lets origin fetches reach loopback, private and link-local addresses (tests, private origins). Off, they are refused at connect time.',
  },
  SOURCE_URL_TTL_SECONDS: {
    schema: int(0),
    default: '3600',
    doc: 'How long an origin URL maps to the source it gave without asking the origin again; then revalidated with its ETag/Last-Modified.',
  },
  SOURCE_FETCH_TIMEOUT_MS: { schema: int(100, 600_000), default: '15000', doc: 'Longest an origin fetch may take, redirects and body included.' },
  SOURCE_DISK_MAX_BYTES: {
    schema: bytes,
    default: '5GiB',
    doc: 'Disk budget of source images: past it the least recently used are dropped (their info stays; sources a journaled job needs never).',
  },
  CLIENT_MISS_RPM: {
    schema: int(1),
    doc: 'Most cold misses (requests that start an engine run) per client IP per minute; past it 429. Hits are never limited. Unset: no limit.',
  },
  TRUST_PROXY: {
    schema: trustProxy,
    default: 'false',
    doc: 'Whose `X-Forwarded-For` names the client: `false`, `true`, a hop count, or proxy addresses/CIDRs (Express `trust proxy`).',
  },
  MAX_URL_LENGTH: { schema: int(256, 1_000_000), default: '8192', doc: 'Longest request URL (path and query) accepted; past it 414.' },
  MAX_QUERY_LENGTH: { schema: int(64, 1_000_000), default: '6144', doc: 'Longest query string accepted; past it 414.' },
  MAX_HEADER_BYTES: {
    schema: bytes,
    default: '16KiB',
    doc: 'Largest request headers (names and values, the request line not counted); past it 431.',
  },
  HTTP_HEADERS_TIMEOUT_MS: {
    schema: int(100, 600_000),
    default: '10000',
    doc: 'Longest a client may take to send its request headers (slowloris); then the connection is closed.',
  },
  HTTP_REQUEST_TIMEOUT_MS: {
    schema: int(100, 3_600_000),
    default: '120000',
    doc: 'Longest a client may take to send a whole request (an upload included).',
  },
  SHUTDOWN_GRACE_MS: {
    schema: int(0, 600_000),
    default: '25000',
    doc: 'On SIGTERM: how long requests in flight may finish before connections are closed. A second signal exits at once.',
  },
  PLACEHOLDER: {
    schema: z.enum(['none', 'local', 'lanczos']),
    default: 'none',
    doc: 'Stand-in for a cold `<img>` miss not ready after `PLACEHOLDER_AFTER_MS` (`local`: the embedded ESRGAN, `lanczos`: a resize), answered `no-store` while the real job goes on; `?placeholder=` overrides it.',
  },
  PLACEHOLDER_AFTER_MS: { schema: int(0, 600_000), default: '1500', doc: 'How long a cold miss waits for the real image before a placeholder is answered.' },
  PLAYGROUND: { schema: bool, default: 'true', doc: 'Serve the playground page at `GET /`.' },
  JOBS_MAX_BATCH: { schema: int(1, 10_000), default: '100', doc: 'Most jobs in one `POST /jobs` batch (or `dry_run` quote).' },
  JOBS_RETENTION_SECONDS: {
    schema: int(60),
    default: String(7 * 86400),
    doc: 'How long a finished job stays readable at `GET /jobs/:id` (its images stay cached regardless).',
  },
  GATEWAY_API_KEYS: {
    schema: list(z.string().min(8, 'expected each key to have at least 8 characters'), 'keys'),
    secret: true,
    doc: 'Keys the Segmind-compatible gateway (`/v1`, `/v2`) accepts in `x-api-key` (comma-separated). Unset: the gateway is off.',
  },
  GATEWAY_OPEN: {
    schema: bool,
    default: 'false',
    doc: '`true` serves the gateway without keys (a private network only; refused together with `SIGNING_KEY`).',
  },
  UPSTREAM_PRICE_USD: {
    schema: decimal,
    doc: 'Price of one upstream call (USD), for `dry_run` quotes and the savings metric (which otherwise uses the mean cost the upstream reported).',
  },
} as const satisfies Record<
  string,
  { schema: z.ZodType<unknown, string>; default?: string; doc: string; secret?: boolean }
>;

type Variables = typeof VARIABLES;
type Name = keyof Variables;
type Value<N extends Name> = z.output<Variables[N]['schema']>;

/** The validated configuration; optional variables without a default are `undefined` when unset. */
export type Config = Readonly<{
  [N in Name]: Variables[N] extends { default: string } ? Value<N> : Value<N> | undefined;
}>;

/** For the README table: name, default, meaning. */
export const CONFIG_DOCS = (Object.entries(VARIABLES) as [Name, Variables[Name]][]).map(([name, v]) => ({
  name,
  default: 'default' in v ? v.default : undefined,
  doc: v.doc,
}));

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Validates every variable at once; throws a `ConfigError` listing each bad one by name. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, spec] of Object.entries(VARIABLES) as [Name, Variables[Name]][]) {
    const raw = env[name] === '' ? undefined : env[name];
    const given = raw ?? ('default' in spec ? spec.default : undefined);
    if (given === undefined) {
      out[name] = undefined;
      continue;
    }
    const parsed = (spec.schema as z.ZodType<unknown, string>).safeParse(given);
    if (parsed.success) out[name] = parsed.data;
    else {
      const shown = 'secret' in spec && spec.secret ? '(value hidden)' : JSON.stringify(given);
      problems.push(`${name}=${shown}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
    }
  }
  const config = out as Config;
  // Checks across variables run whatever else failed, so one run reports everything.
  if (config.UPSCALE_ENGINE === 'segmind' && !config.SEGMIND_API_KEY) {
    problems.push('SEGMIND_API_KEY: required when UPSCALE_ENGINE=segmind');
  }
  if (config.SEGMIND_IMAGE_DELIVERY === 'url' && !config.PUBLIC_BASE_URL) {
    problems.push('PUBLIC_BASE_URL: required when SEGMIND_IMAGE_DELIVERY=url');
  }
  if (config.GATEWAY_OPEN && config.SIGNING_KEY && !config.GATEWAY_API_KEYS) {
    problems.push('GATEWAY_OPEN: an open gateway would let anyone start the paid work SIGNING_KEY bounds; set GATEWAY_API_KEYS instead');
  }
  if (config.CLUSTER_MODE === 'bullmq' && !config.REDIS_URL) {
    problems.push('REDIS_URL: required when CLUSTER_MODE=bullmq (the queue lives in Redis)');
  }
  if (config.ONLY_PRESETS && !config.PRESETS_FILE) {
    problems.push('PRESETS_FILE: required when ONLY_PRESETS=true');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** The engine `auto` resolves to. */
export function resolveEngine(config: Config): 'segmind' | 'local' {
  if (config.UPSCALE_ENGINE !== 'auto') return config.UPSCALE_ENGINE;
  return config.SEGMIND_API_KEY ? 'segmind' : 'local';
}
