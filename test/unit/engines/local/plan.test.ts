import { describe, expect, it } from 'vitest';
import { downscaledSize, outputSize, pickModelScale, sharpenSigma } from '../../../../src/engines/local/plan.js';

describe('pickModelScale', () => {
  it.each([
    [1, 2],
    [1.5, 2],
    [2, 2],
    [2.01, 3],
    [2.5, 3],
    [3, 3],
    [3.2, 4],
    [4, 4],
  ])('scale_factor %s runs the x%i model', (scale, model) => {
    expect(pickModelScale(scale)).toBe(model);
  });

  it.each([0.5, 4.5, Number.NaN])('rejects %s', (scale) => {
    expect(() => pickModelScale(scale)).toThrow(RangeError);
  });
});

describe('downscaledSize', () => {
  it.each([
    [{ width: 40, height: 30 }, true, 20, { width: 20, height: 15 }],
    [{ width: 30, height: 40 }, true, 20, { width: 15, height: 20 }],
    [{ width: 1000, height: 3 }, true, 64, { width: 64, height: 1 }],
    [{ width: 40, height: 30 }, true, 40, { width: 40, height: 30 }],
    [{ width: 40, height: 30 }, true, 768, { width: 40, height: 30 }],
    [{ width: 4000, height: 3000 }, false, 768, { width: 4000, height: 3000 }],
  ])('%o, downscaling %s to %i → %o', (size, on, max, expected) => {
    expect(downscaledSize(size, on, max)).toEqual(expected);
  });
});

describe('outputSize', () => {
  it.each([
    [1, 24, 16],
    [2, 48, 32],
    [2.5, 60, 40],
    [3, 72, 48],
    [3.3, 79, 53],
    [4, 96, 64],
  ])('24×16 at %s → %i×%i', (scale, width, height) => {
    expect(outputSize({ width: 24, height: 16 }, scale)).toEqual({ width, height });
  });
});

describe('sharpenSigma', () => {
  it('is off at 0 and grows with the value up to 3 px at 10', () => {
    expect(sharpenSigma(0)).toBeUndefined();
    const sigmas = [0.5, 1, 2, 5, 10].map((v) => sharpenSigma(v)!);
    expect(sigmas).toEqual([...sigmas].sort((a, b) => a - b));
    expect(sigmas[0]).toBeGreaterThan(0);
    expect(sharpenSigma(10)).toBeCloseTo(3);
  });
});
