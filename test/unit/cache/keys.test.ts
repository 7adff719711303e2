import { describe, expect, it } from 'vitest';
import { cacheKey, isExpired, parseCacheKey } from '../../../src/cache/types.js';

const HEX = 'ab'.repeat(32);

describe('cache keys', () => {
  it.each(['master', 'variant', 'source', 'failure'] as const)('builds and parses %s keys', (kind) => {
    expect(cacheKey(kind, HEX)).toBe(`${kind}:${HEX}`);
    expect(parseCacheKey(`${kind}:${HEX}`)).toEqual({ kind, hash: HEX });
  });

  it.each([
    ['too short', 'ab'],
    ['upper case', 'AB'.repeat(32)],
    ['a path', `../${'a'.repeat(61)}`],
    ['too long', `${HEX}0`],
  ])('refuses a hash that is %s', (_name, hash) => {
    expect(() => cacheKey('master', hash)).toThrow(/64-hex/);
    expect(parseCacheKey(`master:${hash}`)).toBeUndefined();
  });

  it('refuses an unknown kind', () => {
    expect(parseCacheKey(`thumbnail:${HEX}`)).toBeUndefined();
  });

  it.each([
    [undefined, false],
    [999, true],
    [1000, false],
    [1001, false],
  ])('expiresAt %s at now=1000 → expired %s', (expiresAt, expired) => {
    expect(isExpired({ kind: 'failure', contentType: 'x', ...(expiresAt === undefined ? {} : { expiresAt }) }, 1000)).toBe(expired);
  });
});
