import { describe, expect, it } from 'vitest';
import { negotiateFormat } from '../../../src/transform/index.js';

// Accept headers browsers send for <img> requests.
const CHROME = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const FIREFOX = 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const SAFARI_16 =
  'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const SAFARI_15 = 'image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5';
const EDGE_LEGACY = 'image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const CHROME_NAVIGATION =
  'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7';

describe('negotiateFormat', () => {
  it.each([
    ['Chrome', CHROME, false, 'avif'],
    ['Chrome, alpha', CHROME, true, 'avif'],
    ['Chrome navigation', CHROME_NAVIGATION, false, 'avif'],
    ['Firefox', FIREFOX, false, 'avif'],
    ['Safari 16', SAFARI_16, false, 'avif'],
    ['Safari 15 (webp, no avif)', SAFARI_15, false, 'webp'],
    ['Safari 15, alpha', SAFARI_15, true, 'webp'],
    ['legacy Edge', EDGE_LEGACY, false, 'jpeg'],
    ['legacy Edge, alpha', EDGE_LEGACY, true, 'png'],
    ['curl */*', '*/*', false, 'jpeg'],
    ['curl */*, alpha', '*/*', true, 'png'],
    ['image/* only', 'image/*', false, 'jpeg'],
    ['no header', undefined, false, 'jpeg'],
    ['no header, alpha', undefined, true, 'png'],
    ['empty header', '', false, 'jpeg'],
    ['avif refused with q=0', 'image/avif;q=0,image/webp,*/*', false, 'webp'],
    ['avif refused with q=0.000', 'image/avif;q=0.000,image/webp', false, 'webp'],
    ['both refused', 'image/avif;q=0, image/webp;q=0, */*', false, 'jpeg'],
    ['both refused, alpha', 'image/avif;q=0, image/webp;q=0, */*', true, 'png'],
    ['low but positive q still counts', 'image/avif;q=0.001', false, 'avif'],
    ['server order wins over client weights', 'image/webp;q=1, image/avif;q=0.5', false, 'avif'],
    ['spaces and case', ' Image/AVIF ; Q=0.9 , */*', false, 'avif'],
    ['other params before q', 'image/avif;foo=bar;q=0.7', false, 'avif'],
    ['malformed q is not support', 'image/avif;q=high,image/webp;q=2', false, 'jpeg'],
    ['a refusal anywhere wins for a repeated type', 'image/avif, image/avif;q=0, image/webp', false, 'webp'],
    ['a similar-looking type is not webp', 'image/webpx, image/avif-sequence', false, 'jpeg'],
  ] as const)('%s → %s', (_name, accept, hasAlpha, expected) => {
    expect(negotiateFormat(accept, hasAlpha)).toBe(expected);
  });
});
