import { describe, expect, it } from 'vitest';
import { parsePresets, parseUpscaleRequest, PresetFileError, InvalidParamError } from '../../../src/params/index.js';

const HASH = 'ab'.repeat(32);
const parse = (qs: string, options: Parameters<typeof parseUpscaleRequest>[2] = {}) =>
  parseUpscaleRequest(HASH, new URLSearchParams(qs), options);

const presets = parsePresets({
  hero: { scale: 2, creativity: 0.5, prompt: 'a sharp photo', format: 'webp', w: 1600 },
  thumb: { scale_factor: '1.5', sharpen: 1, downscaling: true },
});

describe('parsePresets', () => {
  it('resolves aliases and parses every value by the table', () => {
    expect(presets.get('hero')).toEqual({ scale_factor: 2, creativity: 0.5, prompt: 'a sharp photo', format: 'webp', w: 1600 });
    expect(presets.get('thumb')).toEqual({ scale_factor: 1.5, sharpen: 1, downscaling: true });
  });

  it('reports every bad preset and field at once, by name', () => {
    let error: unknown;
    try {
      parsePresets({
        hero: { creativity: 7, scale: 2 },
        'bad name': { scale: 2 },
        card: { nonsense: 1, format: 'gif' },
        list: [1, 2],
        twice: { scale: 2, scale_factor: 3 },
        nested: { prompt: { text: 'x' } },
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PresetFileError);
    const problems = (error as PresetFileError).problems;
    expect(problems).toHaveLength(7);
    expect(problems[0]).toBe('preset hero, field creativity: creativity="7" is out of range; expected a number from 0 to 1');
    expect(problems.some((p) => p.startsWith('preset "bad name": a name is'))).toBe(true);
    expect(problems.some((p) => p.startsWith('preset card, field nonsense: unknown field'))).toBe(true);
    expect(problems.some((p) => p.startsWith('preset card, field format: format="gif" is not allowed'))).toBe(true);
    expect(problems).toContain('preset list: expected an object of field → value');
    expect(problems).toContain('preset twice, field scale_factor: scale_factor is given twice');
    expect(problems).toContain('preset nested, field prompt: expected a number, string or boolean');
  });

  it('refuses a file that is not an object of presets', () => {
    expect(() => parsePresets([])).toThrow(PresetFileError);
    expect(() => parsePresets('hero')).toThrow(PresetFileError);
  });
});

describe('?preset=', () => {
  it('applies the preset over the defaults, and the query over the preset', () => {
    const hero = parse('preset=hero', { presets });
    expect(hero.clarity).toMatchObject({ scale_factor: 2, creativity: 0.5, prompt: 'a sharp photo', resemblance: 0.6 });
    expect(hero.output).toMatchObject({ format: 'webp', w: 1600 });
    const tuned = parse('preset=hero&creativity=0.35&w=800', { presets });
    expect(tuned.clarity.creativity).toBe(0.35);
    expect(tuned.output.w).toBe(800);
    expect(tuned.given).toEqual(expect.arrayContaining(['creativity', 'prompt', 'w']));
  });

  it('a preset with overrides equal to spelled-out values is the same request', () => {
    const viaPreset = parse('preset=hero&creativity=0.35', { presets });
    const spelled = parse('scale=2&creativity=0.35&prompt=a%20sharp%20photo&format=webp&w=1600', { presets });
    expect(viaPreset.clarity).toEqual(spelled.clarity);
    expect(viaPreset.output).toEqual(spelled.output);
  });

  it('an unknown or repeated preset is a 400 naming preset and listing the known ones', () => {
    const unknown = (() => {
      try {
        parse('preset=nope', { presets });
      } catch (e) {
        return e as InvalidParamError;
      }
    })();
    expect(unknown).toBeInstanceOf(InvalidParamError);
    expect(unknown).toMatchObject({ param: 'preset', allowed: 'one of: hero, thumb' });
    expect(() => parse('preset=hero&preset=thumb', { presets })).toThrow(/more than once/);
    expect(() => parse('preset=hero')).toThrow(/no presets are configured/);
  });

  it('ONLY_PRESETS refuses every upscale field in the query, keeps output fields free', () => {
    const only = { presets, onlyPresets: true };
    expect(parse('preset=hero&w=400&format=avif&quality=60&fit=cover&h=300', only).output).toMatchObject({ w: 400, format: 'avif' });
    for (const qs of ['preset=hero&creativity=0.35', 'scale=2', 'preset=thumb&seed=1', 'steps=10']) {
      let error: unknown;
      try {
        parse(qs, only);
      } catch (e) {
        error = e;
      }
      expect(error, qs).toBeInstanceOf(InvalidParamError);
      expect((error as InvalidParamError).detail, qs).toMatch(/presets only \(ONLY_PRESETS\)/);
    }
    // No preset at all: the defaults, one payload.
    expect(parse('w=100', only).clarity.scale_factor).toBe(2);
  });
});
