import { describe, expect, it } from 'vitest';
import {
  InvalidParamError,
  PARAMS,
  masterKey,
  parseUpscaleRequest,
  variantKey,
  type ParamName,
  type ParamSpec,
} from '../../../src/params/index.js';
import { DOCUMENTED_DEFAULTS } from '../../helpers/upstream-defaults.js';

const HASH = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const parse = (qs: string) => parseUpscaleRequest(HASH, new URLSearchParams(qs));

function rejection(qs: string): InvalidParamError {
  try {
    parse(qs);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidParamError);
    return error as InvalidParamError;
  }
  throw new Error(`expected ${qs} to be rejected`);
}

/**
 * Every numeric field's bounds, written out (UPSTREAM.md's ranges, and ours where we are stricter:
 * scale 1-4, seed 32-bit, downscaling_resolution 64-4096, output sizes up to WebP's 16383), so a
 * wrong range in the table fails here instead of agreeing with itself.
 */
const NUMERIC: [name: string, kind: 'int' | 'float', min: number, max: number, step?: number][] = [
  ['scale_factor', 'float', 1, 4],
  ['creativity', 'float', 0, 1],
  ['resemblance', 'float', 0, 3],
  ['dynamic', 'float', 1, 50],
  ['sharpen', 'float', 0, 10],
  ['seed', 'int', 0, 4294967295],
  ['num_inference_steps', 'int', 1, 100],
  ['tiling_width', 'int', 16, 256, 16],
  ['tiling_height', 'int', 16, 256, 16],
  ['downscaling_resolution', 'int', 64, 4096],
  ['quality', 'int', 1, 100],
  ['w', 'int', 1, 16383],
  ['h', 'int', 1, 16383],
];
const numeric = NUMERIC.map(([name, kind, min, max, step]) => [name, { kind, min, max, step }] as const);
const allowedText = (kind: 'int' | 'float', min: number, max: number, step?: number) =>
  kind === 'float' ? `a number from ${min} to ${max}` : `an integer from ${min} to ${max}${step ? ` in steps of ${step}` : ''}`;

it('the list above covers every numeric field of the table', () => {
  const inTable = (Object.entries(PARAMS) as [ParamName, ParamSpec][]).filter(([, s]) => s.kind === 'int' || s.kind === 'float');
  expect(inTable.map(([name]) => name).sort()).toEqual(NUMERIC.map(([name]) => name).sort());
});

describe('defaults', () => {
  it('fills every clarity field with the upstream default (scale 2, the original model)', () => {
    const { clarity, output, given } = parse('');
    expect(clarity).toEqual(DOCUMENTED_DEFAULTS);
    expect(output).toEqual({ format: 'auto', fit: 'inside' });
    expect(given).toEqual([]);
  });
});

describe('numeric boundaries', () => {
  it.each(numeric)('%s accepts its min and max', (name, spec) => {
    const { clarity, output } = parse(`${name}=${spec.min}`);
    expect({ ...clarity, ...output }[name]).toBe(spec.min);
    const high = parse(`${name}=${spec.max}`);
    expect({ ...high.clarity, ...high.output }[name]).toBe(spec.max);
  });

  it.each(numeric)('%s rejects values past its range, naming itself and the range', (name, spec) => {
    const step = spec.kind === 'int' ? (spec.step ?? 1) : 0.01;
    for (const value of [spec.min - step, spec.max + step]) {
      const error = rejection(`${name}=${value}`);
      expect(error.status).toBe(400);
      expect(error.code).toBe('INVALID_PARAM');
      expect(error.param).toBe(name);
      expect(error.allowed).toBe(allowedText(spec.kind, spec.min, spec.max, spec.step));
      expect(error.detail).toContain('out of range');
      expect(error.detail).toContain(`${spec.min} to ${spec.max}`);
    }
  });

  it.each(numeric)('%s rejects what is not a number', (name) => {
    for (const value of ['abc', '', '1e1', '0x10', '1,5', ' 1', 'Infinity', 'NaN']) {
      expect(rejection(`${name}=${encodeURIComponent(value)}`).param).toBe(name);
    }
  });

  it.each([
    ['seed', '1.5'],
    ['num_inference_steps', '18.0'],
    ['tiling_width', '64.5'],
    ['w', '100.1'],
    ['quality', '80.5'],
  ])('%s=%s is not an integer', (name, value) => {
    expect(rejection(`${name}=${value}`).detail).toContain('not an integer');
  });

  it.each(['tiling_width', 'tiling_height'])('%s must be a multiple of 16', (name) => {
    expect(parse(`${name}=48`).clarity[name as 'tiling_width']).toBe(48);
    const error = rejection(`${name}=40`);
    expect(error.detail).toContain('multiple of 16');
    expect(error.allowed).toBe('an integer from 16 to 256 in steps of 16');
  });
});

describe('enums, booleans, text and hashes', () => {
  it.each([
    ['handfix', 'hands_only'],
    ['scheduler', 'Euler a'],
    ['scheduler', 'DPM++ 2M SDE Heun Exponential'],
    ['sd_model', 'flat2DAnimerge_v45Sharp.safetensors'],
    ['format', 'avif'],
    ['fit', 'cover'],
  ])('%s accepts %s', (name, value) => {
    const { clarity, output } = parse(`${name}=${encodeURIComponent(value)}`);
    expect({ ...clarity, ...output }[name as ParamName]).toBe(value);
  });

  it.each([
    ['handfix', 'both', 'disabled, hands_only, image_and_hands'],
    ['format', 'gif', 'auto, webp, avif, jpeg, png'],
    ['format', 'WEBP', 'auto, webp, avif, jpeg, png'],
    ['fit', 'crop', 'inside, cover, contain, fill, outside'],
    ['scheduler', 'euler a', 'Euler a'],
    ['sd_model', 'sdxl', 'juggernaut_reborn.safetensors [338b85bc4f]'],
  ])('%s=%s is rejected with the allowed values', (name, value, listed) => {
    const error = rejection(`${name}=${encodeURIComponent(value)}`);
    expect(error.param).toBe(name);
    expect(error.allowed).toContain(listed);
    expect(error.detail).toContain('not allowed');
  });

  it.each([
    ['true', true],
    ['false', false],
    ['1', true],
    ['0', false],
  ])('downscaling=%s → %s', (raw, value) => {
    expect(parse(`downscaling=${raw}`).clarity.downscaling).toBe(value);
  });

  it.each(['yes', 'TRUE', '', '2'])('downscaling=%s is rejected', (raw) => {
    expect(rejection(`downscaling=${raw}`).allowed).toBe('true, false, 1 or 0');
  });

  it('text fields keep their value and refuse past their length', () => {
    expect(parse('prompt=a%20red%20fox').clarity.prompt).toBe('a red fox');
    expect(parse('prompt=').clarity.prompt).toBe('');
    const error = rejection(`prompt=${'x'.repeat(2001)}`);
    expect(error.param).toBe('prompt');
    expect(error.detail).toContain('too long');
    expect(error.detail.length).toBeLessThan(300);
  });

  it('URL fields take http(s) URLs only', () => {
    const url = 'https://example.com/model.safetensors';
    expect(parse(`custom_sd_model=${encodeURIComponent(url)}`).clarity.custom_sd_model).toBe(url);
    expect(rejection('custom_sd_model=file%3A%2F%2F%2Fetc%2Fpasswd').param).toBe('custom_sd_model');
    expect(parse('lora_links=https%3A%2F%2Fa.example%2Fx,https%3A%2F%2Fb.example%2Fy').clarity.lora_links).toBe(
      'https://a.example/x,https://b.example/y',
    );
    expect(rejection('lora_links=https%3A%2F%2Fa.example%2Fx,nope').param).toBe('lora_links');
  });

  it('mask is a source hash', () => {
    expect(parse(`mask=${OTHER}`).clarity.mask).toBe(OTHER);
    expect(rejection('mask=abc').allowed).toContain('64 lowercase hex');
    expect(rejection(`mask=${OTHER.toUpperCase()}`).param).toBe('mask');
  });

  it('the path hash must be a sha256 hex', () => {
    for (const bad of ['abc', 'A'.repeat(64), `${HASH}0`, '../../etc/passwd']) {
      expect(() => parseUpscaleRequest(bad, new URLSearchParams())).toThrow(
        expect.objectContaining({ status: 400, param: 'hash' }),
      );
    }
  });
});

describe('keys', () => {
  it('unknown keys are rejected, naming the key and listing the known ones', () => {
    const error = rejection('scal=2');
    expect(error.param).toBe('scal');
    expect(error.detail).toContain('unknown parameter "scal"');
    expect(error.detail).toContain('scale_factor');
  });

  it('a repeated key is rejected', () => {
    expect(rejection('scale=2&scale=3').detail).toBe('scale is given more than once; give it once');
  });

  it('a key and its alias together are rejected', () => {
    expect(rejection('scale=2&scale_factor=2').detail).toContain('scale_factor and scale name the same parameter');
  });

  it.each([
    ['scale', 'scale_factor', '3'],
    ['steps', 'num_inference_steps', '30'],
    ['model', 'sd_model', 'flat2DAnimerge_v45Sharp.safetensors'],
    ['q', 'quality', '70'],
    ['width', 'w', '300'],
    ['height', 'h', '200'],
  ])('alias %s means %s', (alias, name, value) => {
    const viaAlias = parse(`${alias}=${value}`);
    const viaName = parse(`${name}=${value}`);
    expect(viaAlias.clarity).toEqual(viaName.clarity);
    expect(viaAlias.output).toEqual(viaName.output);
    expect(viaAlias.given).toEqual([name]);
  });

  it('sig is reserved for signing and not a parameter', () => {
    expect(parse('sig=abc').given).toEqual([]);
  });
});

describe('canonical keys', () => {
  /** Every clarity field: what the segmind engine acts on. */
  const EVERY_FIELD = new Set(Object.keys(parse('').clarity).concat('mask'));
  const LOCAL_FIELDS = new Set(['scale_factor', 'sharpen', 'downscaling', 'downscaling_resolution']);
  const key = (qs: string, engine = 'segmind', honors: ReadonlySet<string> = EVERY_FIELD) => {
    const { source, clarity } = parse(qs);
    return masterKey(source, engine, clarity, honors);
  };

  it('number spelling, parameter order, aliases and explicit defaults do not change the key', () => {
    const base = key('scale=2&creativity=0.4');
    expect(key('creativity=0.40&scale=2')).toBe(base);
    expect(key('scale_factor=2.0&creativity=.4')).toBe(base);
    expect(key('creativity=0.4&seed=1337&scale=2')).toBe(base);
    expect(key('creativity=0.4')).toBe(base);
  });

  it('any different field, source or engine gives another key', () => {
    const base = key('creativity=0.4');
    expect(key('creativity=0.41')).not.toBe(base);
    expect(key('creativity=0.4&seed=1')).not.toBe(base);
    expect(key('creativity=0.4', 'local:esrgan-slim')).not.toBe(base);
    expect(masterKey(OTHER, 'segmind', parse('creativity=0.4').clarity, EVERY_FIELD)).not.toBe(base);
  });

  it('fields the engine does not act on stay out of its master key', () => {
    const local = (qs: string) => key(qs, 'local:esrgan-slim', LOCAL_FIELDS);
    const base = local('scale=2');
    expect(local('scale=2&creativity=0.9&seed=42&prompt=a%20fox&steps=50')).toBe(base);
    expect(local('scale=3')).not.toBe(base);
    expect(local('scale=2&sharpen=1')).not.toBe(base);
    expect(local('scale=2&downscaling=true')).not.toBe(base);
  });

  it('output fields stay out of the master key', () => {
    expect(key('format=webp&w=100&quality=50')).toBe(key(''));
  });

  it('variant keys depend on the master and on every output setting', () => {
    const m = key('');
    const spec = { format: 'webp', quality: 80, fit: 'inside' } as const;
    const v = variantKey(m, spec);
    expect(variantKey(m, { ...spec })).toBe(v);
    expect(variantKey(m, { ...spec, width: 100 })).not.toBe(v);
    expect(variantKey(m, { ...spec, format: 'avif' })).not.toBe(v);
    expect(variantKey(m, { ...spec, quality: 81 })).not.toBe(v);
    expect(variantKey(key('seed=2'), spec)).not.toBe(v);
    expect(v).toMatch(/^[0-9a-f]{64}$/);
  });
});
