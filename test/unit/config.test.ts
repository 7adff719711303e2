/**
 * `loadConfig` as an operator meets it: the defaults of an empty environment, one error naming
 * every bad variable, byte sizes in the units people write, secrets never echoed. Every expected
 * value is written out here, not read back from the schema, so a wrong default or unit fails.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, resolveEngine } from '../../src/config.js';

const KEY = 'SG_0123456789abcdef';

/** The `ConfigError` that `env` must raise. */
function refusal(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

/** The variable each problem names: what precedes its `=` or `:`. */
const named = (error: ConfigError) => error.problems.map((p) => /^[A-Z_]+/.exec(p)?.[0]);

describe('defaults', () => {
  it('an empty environment gives the documented defaults, the optional variables unset', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      PORT: 3000,
      HOST: '0.0.0.0',
      LOG_LEVEL: 'info',
      UPSCALE_ENGINE: 'auto',
      SEGMIND_BASE_URL: 'https://api.segmind.com',
      SEGMIND_MODE: 'async',
      SEGMIND_POLL_INTERVAL_MS: 1000,
      SEGMIND_IMAGE_DELIVERY: 'base64',
      UPSTREAM_CONCURRENCY: 4,
      UPSTREAM_RPM: 60,
      UPSTREAM_TIMEOUT_MS: 600_000,
      UPSTREAM_RETRIES: 4,
      UPSTREAM_FALLBACK: 'none',
      FAILED_TTL_SECONDS: 3600,
      FALLBACK_TTL_SECONDS: 300,
      REQUEST_TIMEOUT_MS: 120_000,
      CACHE_DIR: './.cache',
      CACHE_DISK_MAX_BYTES: 10_737_418_240, // 10 GiB
      CACHE_MEMORY_MAX_BYTES: 268_435_456, // 256 MiB
      SOURCE_MAX_BYTES: 26_214_400, // 25 MiB
      SOURCE_MAX_PIXELS: 50_000_000,
      OUTPUT_MAX_PIXELS: 100_000_000,
      LOCAL_MODEL: 'esrgan-slim',
      LOCAL_WORKERS: 2,
      LOCAL_TILE_SIZE: 128,
      LOCAL_TILE_OVERLAP: 16,
      AVIF_EFFORT: 4,
      AVIF_DRAFT_EFFORT: 0,
      REDIS_PREFIX: 'clarity-cdn',
      REDIS_MASTER_TTL_SECONDS: 2_592_000, // 30 days
      REDIS_VARIANT_TTL_SECONDS: 604_800, // 7 days
      REDIS_MAX_VALUE_BYTES: 8_388_608, // 8 MiB
      REDIS_TIMEOUT_MS: 250,
    });
    for (const optional of ['SEGMIND_API_KEY', 'UPSTREAM_DAILY_LIMIT', 'REDIS_URL', 'ADMIN_TOKEN', 'PUBLIC_BASE_URL'] as const) {
      expect(config[optional]).toBeUndefined();
    }
    expect(resolveEngine(config)).toBe('local');
  });

  it('an empty string counts as unset: the default applies, or the variable stays unset', () => {
    const config = loadConfig({
      PORT: '',
      CACHE_DISK_MAX_BYTES: '',
      UPSTREAM_DAILY_LIMIT: '',
      SEGMIND_API_KEY: '',
      REDIS_URL: '',
      ADMIN_TOKEN: '',
      PUBLIC_BASE_URL: '',
    });
    expect(config.PORT).toBe(3000);
    expect(config.CACHE_DISK_MAX_BYTES).toBe(10_737_418_240);
    expect(config.UPSTREAM_DAILY_LIMIT).toBeUndefined();
    expect(config.SEGMIND_API_KEY).toBeUndefined();
    expect(config.REDIS_URL).toBeUndefined();
    expect(config.ADMIN_TOKEN).toBeUndefined();
    expect(config.PUBLIC_BASE_URL).toBeUndefined();
    // An empty key is no key: `auto` stays local, `segmind` is refused.
    expect(resolveEngine(config)).toBe('local');
    expect(named(refusal({ UPSCALE_ENGINE: 'segmind', SEGMIND_API_KEY: '' }))).toEqual(['SEGMIND_API_KEY']);
  });

  it('returns a frozen object', () => {
    const config = loadConfig({ PORT: '8080' });
    expect(Object.isFrozen(config)).toBe(true);
    // ESM is strict mode: writing a frozen property throws.
    expect(() => {
      (config as { PORT: number }).PORT = 1;
    }).toThrow(TypeError);
    expect(config.PORT).toBe(8080);
  });
});

describe('every bad variable at once', () => {
  it('one ConfigError names each bad variable, with its value and what was expected', () => {
    const error = refusal({
      PORT: '99999',
      LOG_LEVEL: 'loud',
      SEGMIND_BASE_URL: 'ftp://api.example.com',
      UPSTREAM_RETRIES: '-1',
      CACHE_DISK_MAX_BYTES: '10 potatoes',
      LOCAL_WORKERS: 'two',
      // Valid ones are not reported.
      HOST: '127.0.0.1',
      REDIS_PREFIX: 'mine',
    });
    expect(error.name).toBe('ConfigError');
    expect(named(error)).toEqual(['PORT', 'LOG_LEVEL', 'SEGMIND_BASE_URL', 'UPSTREAM_RETRIES', 'CACHE_DISK_MAX_BYTES', 'LOCAL_WORKERS']);
    expect(error.problems).toEqual([
      'PORT="99999": expected at most 65535',
      expect.stringMatching(/^LOG_LEVEL="loud": .*"fatal".*"silent"/),
      'SEGMIND_BASE_URL="ftp://api.example.com": expected an http(s) URL',
      'UPSTREAM_RETRIES="-1": expected a whole number from 0 to 20',
      'CACHE_DISK_MAX_BYTES="10 potatoes": expected a byte size such as 268435456, 256MiB or 10GiB',
      'LOCAL_WORKERS="two": expected a whole number from 1 to 64',
    ]);
    // The message an operator reads lists them all.
    expect(error.message).toMatch(/^invalid configuration:\n/);
    for (const problem of error.problems) expect(error.message).toContain(`  - ${problem}`);
  });

  it('checks across variables are reported with the others, not after they are fixed', () => {
    const error = refusal({ PORT: 'abc', UPSCALE_ENGINE: 'segmind', ONLY_PRESETS: 'true' });
    expect(error.problems).toEqual([
      'PORT="abc": expected a whole number from 0 to 65535',
      'SEGMIND_API_KEY: required when UPSCALE_ENGINE=segmind',
      'PRESETS_FILE: required when ONLY_PRESETS=true',
    ]);
  });
});

describe('byte sizes', () => {
  it.each([
    ['268435456', 268_435_456],
    ['256MiB', 268_435_456],
    ['10 GiB', 10_737_418_240],
    ['1.5GB', 1_500_000_000],
    ['1kb', 1000],
    ['1KiB', 1024],
    ['25mib', 26_214_400],
    ['  8MiB  ', 8_388_608],
  ])('%j is %i bytes', (raw, bytes) => {
    const config = loadConfig({ CACHE_DISK_MAX_BYTES: raw, CACHE_MEMORY_MAX_BYTES: raw, SOURCE_MAX_BYTES: raw, REDIS_MAX_VALUE_BYTES: raw });
    expect(config.CACHE_DISK_MAX_BYTES).toBe(bytes);
    expect(config.CACHE_MEMORY_MAX_BYTES).toBe(bytes);
    expect(config.SOURCE_MAX_BYTES).toBe(bytes);
    expect(config.REDIS_MAX_VALUE_BYTES).toBe(bytes);
  });

  // '' is unset (the default applies, see above); blank text is a value, and a wrong one.
  it.each(['10 potatoes', '-1', '   ', 'MiB', '1e3', '0x10', '10 GiBs'])('%j is refused, naming the variable', (raw) => {
    const error = refusal({ CACHE_MEMORY_MAX_BYTES: raw });
    expect(error.problems).toEqual([
      `CACHE_MEMORY_MAX_BYTES=${JSON.stringify(raw)}: expected a byte size such as 268435456, 256MiB or 10GiB`,
    ]);
    expect(error.message).toContain('CACHE_MEMORY_MAX_BYTES');
  });
});

describe('secrets', () => {
  it.each([
    ['REDIS_URL', 'http://:hunter2-secret@redis.internal:6379', 'expected a redis:// or rediss:// URL'],
    ['ADMIN_TOKEN', 'hunter2-secret', 'expected at least 16 characters'],
  ])('a bad %s is reported as (value hidden), its value nowhere in the error', (name, value, expected) => {
    const error = refusal({ [name]: value });
    expect(error.problems).toEqual([`${name}=(value hidden): ${expected}`]);
    expect(error.message).not.toContain('hunter2');
    expect(JSON.stringify(error.problems)).not.toContain('hunter2');
  });

  it('the Segmind key, REDIS_URL and ADMIN_TOKEN never appear when other variables are refused', () => {
    const secrets = {
      SEGMIND_API_KEY: KEY,
      REDIS_URL: 'redis://:hunter2-redis@redis.internal:6379',
      ADMIN_TOKEN: 'hunter2-admin-token-0123456789',
    };
    const error = refusal({ ...secrets, PORT: 'x', REDIS_TIMEOUT_MS: '0' });
    expect(named(error)).toEqual(['PORT', 'REDIS_TIMEOUT_MS']);
    for (const value of [KEY, 'hunter2']) {
      expect(error.message).not.toContain(value);
      expect(error.problems.join('\n')).not.toContain(value);
    }
  });
});

describe('engine selection', () => {
  it.each([
    ['auto', KEY, 'segmind'],
    ['auto', undefined, 'local'],
    ['segmind', KEY, 'segmind'],
    ['local', KEY, 'local'],
    ['local', undefined, 'local'],
  ] as const)('UPSCALE_ENGINE=%s with key %s → %s', (engine, key, expected) => {
    expect(resolveEngine(loadConfig({ UPSCALE_ENGINE: engine, SEGMIND_API_KEY: key }))).toBe(expected);
  });

  it('UPSCALE_ENGINE=segmind without a key is refused, naming SEGMIND_API_KEY', () => {
    const error = refusal({ UPSCALE_ENGINE: 'segmind' });
    expect(error.problems).toEqual(['SEGMIND_API_KEY: required when UPSCALE_ENGINE=segmind']);
  });

  it('an unknown engine is refused, naming UPSCALE_ENGINE', () => {
    expect(named(refusal({ UPSCALE_ENGINE: 'replicate' }))).toEqual(['UPSCALE_ENGINE']);
  });

  it('SEGMIND_IMAGE_DELIVERY=url needs PUBLIC_BASE_URL', () => {
    const error = refusal({ SEGMIND_IMAGE_DELIVERY: 'url' });
    expect(error.problems).toEqual(['PUBLIC_BASE_URL: required when SEGMIND_IMAGE_DELIVERY=url']);
    const config = loadConfig({ SEGMIND_IMAGE_DELIVERY: 'url', PUBLIC_BASE_URL: 'https://img.example.com' });
    expect(config.SEGMIND_IMAGE_DELIVERY).toBe('url');
    expect(config.PUBLIC_BASE_URL).toBe('https://img.example.com');
  });
});
