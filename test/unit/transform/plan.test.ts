import { describe, expect, it } from 'vitest';
import type { OutputParams } from '../../../src/params/types.js';
import { variantKey } from '../../../src/params/canonical-key.js';
import { planOutput, variantSpec } from '../../../src/transform/index.js';

const CHROME = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const out = (o: Partial<OutputParams> = {}): OutputParams => ({ format: 'auto', fit: 'inside', ...o });

describe('planOutput', () => {
  it.each([
    ['webp', 80, 'image/webp'],
    ['avif', 50, 'image/avif'],
    ['jpeg', 80, 'image/jpeg'],
    ['png', 100, 'image/png'],
  ] as const)('explicit %s: default quality %i, %s, no Vary', (format, quality, contentType) => {
    expect(planOutput(out({ format }), CHROME, false)).toEqual({
      format,
      quality,
      fit: 'inside',
      vary: false,
      contentType,
    });
  });

  it.each([
    ['Chrome', CHROME, false, 'avif', 50],
    ['Safari 15', 'image/webp,image/png,image/*;q=0.8', false, 'webp', 80],
    ['curl', '*/*', false, 'jpeg', 80],
    ['curl, alpha', '*/*', true, 'png', 100],
  ] as const)('format=auto from %s: %s q%i with Vary', (_name, accept, hasAlpha, format, quality) => {
    const plan = planOutput(out(), accept, hasAlpha);
    expect(plan).toMatchObject({ format, quality, vary: true, contentType: `image/${format}` });
  });

  it('keeps a given quality for lossy formats', () => {
    expect(planOutput(out({ format: 'webp', quality: 55 }), undefined, false).quality).toBe(55);
    expect(planOutput(out({ quality: 30 }), CHROME, false)).toMatchObject({ format: 'avif', quality: 30 });
  });

  it.each([1, 50, 99, 100])('normalizes png quality %i to 100 (lossless: one variant)', (quality) => {
    expect(planOutput(out({ format: 'png', quality }), undefined, false).quality).toBe(100);
    expect(planOutput(out({ quality }), '*/*', true)).toMatchObject({ format: 'png', quality: 100 });
  });

  it.each(['cover', 'contain', 'fill', 'outside'] as const)('keeps fit=%s when both w and h are set', (fit) => {
    expect(planOutput(out({ format: 'webp', w: 100, h: 50, fit }), undefined, false)).toMatchObject({
      width: 100,
      height: 50,
      fit,
    });
  });

  it.each([
    ['w only', { w: 100 }],
    ['h only', { h: 100 }],
    ['neither', {}],
  ] as const)('normalizes fit to inside with %s', (_name, size) => {
    for (const fit of ['cover', 'contain', 'fill', 'outside'] as const) {
      expect(planOutput(out({ format: 'webp', fit, ...size }), undefined, false)).toEqual(
        planOutput(out({ format: 'webp', ...size }), undefined, false),
      );
    }
  });

  it('leaves absent sizes out of the plan, so the variant key does not depend on how they were absent', () => {
    const plan = planOutput(out({ format: 'jpeg', w: 10 }), undefined, false);
    expect(plan).toHaveProperty('width', 10);
    expect(Object.keys(plan)).not.toContain('height');
  });

  it('gives equal variant keys to requests that render the same bytes', () => {
    const a = planOutput(out({ format: 'png', quality: 10, w: 100, fit: 'cover' }), undefined, false);
    const b = planOutput(out({ format: 'png', w: 100 }), undefined, false);
    expect(variantKey('m', a)).toBe(variantKey('m', b));
  });

  it('variantSpec drops what does not change the bytes: explicit webp and negotiated webp share a key', () => {
    const explicit = planOutput(out({ format: 'webp', w: 100 }), undefined, false);
    const negotiated = planOutput(out({ w: 100 }), 'image/webp,*/*', false);
    expect(negotiated.vary).toBe(true);
    const encoder = { avifEffort: 2 };
    expect(variantSpec(explicit, encoder)).toEqual({ format: 'webp', quality: 80, width: 100, fit: 'inside', encoder: 'v1' });
    expect(variantKey('m', variantSpec(explicit, encoder))).toBe(variantKey('m', variantSpec(negotiated, encoder)));
    // The whole plan would fork the key on `vary`.
    expect(variantKey('m', explicit)).not.toBe(variantKey('m', negotiated));
  });

  it('the encoder settings that change bytes are in the key: AVIF effort for AVIF only', () => {
    const avif = planOutput(out({ format: 'avif', w: 100 }), undefined, false);
    const webp = planOutput(out({ format: 'webp', w: 100 }), undefined, false);
    const key = (plan: typeof avif, avifEffort: number) => variantKey('m', variantSpec(plan, { avifEffort }));
    expect(key(avif, 2)).not.toBe(key(avif, 4));
    expect(key(webp, 2)).toBe(key(webp, 4));
  });
});
