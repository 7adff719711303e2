import { describe, expect, it } from 'vitest';
import { parseResetAt, parseRetryAfter, retryDelay, type RetryPolicy } from '../../../../src/engines/segmind/retry.js';

const policy: RetryPolicy = { baseDelayMs: 100, factor: 2, maxDelayMs: 1000 };
const NOW = Date.parse('2026-11-24T12:00:00Z');

describe('retryDelay', () => {
  it.each([
    // attempt, random, expected: nominal = min(max, base × 2^attempt); delay = nominal/2 + random × nominal/2
    [0, 0, 50],
    [0, 0.5, 75],
    [0, 1, 100],
    [1, 0, 100],
    [1, 1, 200],
    [2, 0.5, 300],
    [3, 1, 800],
    [4, 0, 500], // nominal capped at 1000
    [4, 1, 1000],
    [30, 1, 1000],
  ])('attempt %i with random %d → %i ms', (attempt, random, expected) => {
    expect(retryDelay(attempt, undefined, policy, () => random)).toBe(expected);
  });

  it('never waits less than half the nominal delay, whatever the jitter', () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const nominal = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
      for (const r of [0, 0.1, 0.99]) {
        const d = retryDelay(attempt, undefined, policy, () => r);
        expect(d).toBeGreaterThanOrEqual(nominal / 2);
        expect(d).toBeLessThanOrEqual(nominal);
      }
    }
  });

  it('clamps a random source that strays outside [0, 1]', () => {
    expect(retryDelay(0, undefined, policy, () => 7)).toBe(100);
    expect(retryDelay(0, undefined, policy, () => -1)).toBe(50);
  });

  it.each([
    [0, 0],
    [1500, 1500],
    [60_000, 60_000], // the upstream's hint wins over the policy's ceiling
    [-20, 0],
    [12.2, 13],
  ])('obeys an upstream hint of %d ms → %d ms, without jitter', (hint, expected) => {
    expect(retryDelay(3, hint, policy, () => 0.5)).toBe(expected);
  });

  it('ignores a non-finite hint', () => {
    expect(retryDelay(0, Number.NaN, policy, () => 1)).toBe(100);
  });
});

describe('parseRetryAfter', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['0', 0],
    ['7', 7000],
    [' 120 ', 120_000],
    ['1.5', 1500],
    ['Tue, 24 Nov 2026 12:00:30 GMT', 30_000],
    ['Tue, 24 Nov 2026 11:00:00 GMT', 0], // in the past
    ['soon', undefined],
    ['-5', undefined],
  ])('%j → %j ms', (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });
});

describe('parseResetAt (x-rate-limit-reset-at-utc)', () => {
  it.each([
    [undefined, undefined],
    [String(NOW / 1000 + 20), 20_000], // epoch seconds
    [String(NOW + 2500), 2500], // epoch ms
    ['2026-11-24T12:00:05Z', 5000],
    ['2026-11-24T12:00:05.250Z', 5250],
    ['2026-11-24T12:00:05', 5000], // no zone: UTC, as the name says
    ['2026-11-24 12:00:05', 5000],
    ['2026-11-24T13:00:05+01:00', 5000],
    ['Tue, 24 Nov 2026 12:00:09 GMT', 9000],
    ['2026-11-24T11:00:00Z', 0],
    ['tomorrow', undefined],
  ])('%j → %j ms', (value, expected) => {
    expect(parseResetAt(value, NOW)).toBe(expected);
  });
});
