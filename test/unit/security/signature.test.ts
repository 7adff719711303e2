import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signingInput, signPath, verifyPath } from '../../../src/security/signature.js';

const KEY = 'k3y-0123456789abcdef';
const OLD = 'old-0123456789abcdef';
const HASH = 'ab'.repeat(32);

/** The documented recipe, written out: base64url(HMAC-SHA256(key, path?query-without-sig)). */
const expected = (key: string, text: string) => createHmac('sha256', key).update(text).digest('base64url');

describe('signPath', () => {
  it('appends sig = base64url(HMAC-SHA256(key, path + "?" + query)) over the URL as written', () => {
    const path = `/upscale/${HASH}?scale=2&creativity=0.40&prompt=a%20fox`;
    expect(signPath(path, KEY)).toBe(`${path}&sig=${expected(KEY, path)}`);
  });

  it('signs a path without a query as the path alone', () => {
    expect(signPath(`/upscale/${HASH}`, KEY)).toBe(`/upscale/${HASH}?sig=${expected(KEY, `/upscale/${HASH}`)}`);
  });

  it('replaces a sig already present instead of signing it', () => {
    const once = signPath(`/upscale/${HASH}?scale=2`, KEY);
    expect(signPath(once, KEY)).toBe(once);
  });

  it('is a 43-character base64url digest', () => {
    const sig = new URL(signPath(`/upscale/${HASH}?w=10`, KEY), 'http://x').searchParams.get('sig');
    expect(sig).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('signingInput', () => {
  it.each([
    ['/p?a=1&sig=S&b=2', '/p?a=1&b=2', ['S']],
    ['/p?sig=S', '/p', ['S']],
    ['/p?sig=A&sig=B', '/p', ['A', 'B']],
    ['/p?a=1&&b=2', '/p?a=1&b=2', []],
    ['/p?signature=1', '/p?signature=1', []],
    ['/p', '/p', []],
  ])('%s → %s', (url, input, sigs) => {
    expect(signingInput(url)).toEqual({ input, signatures: sigs });
  });
});

describe('verifyPath', () => {
  const signed = signPath(`/upscale/${HASH}?scale=2&format=webp`, KEY);

  it('accepts a signed path wherever sig sits in the query', () => {
    expect(verifyPath(signed, [KEY])).toBe('valid');
    const sig = signed.split('sig=')[1];
    expect(verifyPath(`/upscale/${HASH}?sig=${sig}&scale=2&format=webp`, [KEY])).toBe('valid');
  });

  it('refuses a one-character change anywhere', () => {
    expect(verifyPath(signed.replace('scale=2', 'scale=3'), [KEY])).toBe('invalid');
    expect(verifyPath(signed.replace('webp', 'avif'), [KEY])).toBe('invalid');
    expect(verifyPath(signed.replace(`/upscale/${HASH}`, `/upscale/${'ac'.repeat(32)}`), [KEY])).toBe('invalid');
    const last = signed.at(-1) === 'A' ? 'B' : 'A';
    expect(verifyPath(signed.slice(0, -1) + last, [KEY])).toBe('invalid');
  });

  it('refuses a reordered query: the URL is signed as sent', () => {
    const sig = signed.split('sig=')[1];
    expect(verifyPath(`/upscale/${HASH}?format=webp&scale=2&sig=${sig}`, [KEY])).toBe('invalid');
  });

  it('says missing without a sig, and refuses two sigs or a malformed one', () => {
    expect(verifyPath(`/upscale/${HASH}?scale=2`, [KEY])).toBe('missing');
    const sig = signed.split('sig=')[1];
    expect(verifyPath(`${signed}&sig=${sig}`, [KEY])).toBe('invalid');
    expect(verifyPath(`/upscale/${HASH}?scale=2&sig=`, [KEY])).toBe('invalid');
    expect(verifyPath(`/upscale/${HASH}?scale=2&sig=${sig}=`, [KEY])).toBe('invalid');
    expect(verifyPath(`/upscale/${HASH}?scale=2&sig=%2B%2B`, [KEY])).toBe('invalid');
  });

  it('verifies with any key of a rotation, and only with those', () => {
    const byOld = signPath(`/upscale/${HASH}?scale=2`, OLD);
    expect(verifyPath(byOld, [KEY, OLD])).toBe('valid');
    expect(verifyPath(byOld, [KEY])).toBe('invalid');
  });
});
