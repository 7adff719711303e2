import { describe, expect, it } from 'vitest';
import { parseUpscaleRequest } from '../../../src/params/index.js';

const HASH = 'a'.repeat(64);
const parse = (qs: string) => parseUpscaleRequest(HASH, new URLSearchParams(qs));

describe('parseUpscaleRequest (smoke)', () => {
  it('fills defaults', () => {
    expect(parse('').clarity.scale_factor).toBe(2);
  });
});
