import { describe, expect, it } from 'vitest';
import { jobBody, parseWarmLine, type WarmItem } from '../../../src/cli/warm-input.js';

const H = 'a'.repeat(64);
const ORIGIN = 'https://images.example.com/a.jpg';
const B64 = Buffer.from(ORIGIN).toString('base64url');

function item(text: string): WarmItem {
  const parsed = parseWarmLine(text, 7);
  if (parsed?.kind !== 'item') throw new Error(`not an item: ${JSON.stringify(parsed)}`);
  return parsed.item;
}
const keyOf = (text: string) => item(text).key;

describe('parseWarmLine', () => {
  it.each(['', '   ', '# a comment', '   # indented comment'])('skips %j', (text) => {
    expect(parseWarmLine(text, 1)).toBeUndefined();
  });

  it.each([
    ['a hash with params and variants', `{"hash":"${H}","params":{"scale":2},"variants":[{"format":"webp","w":800}]}`, { source: { hash: H }, params: { scale: 2 }, variants: [{ format: 'webp', w: 800 }] }],
    ['a file with a preset', '{"file":"img/a.png","preset":"hero"}', { source: { file: 'img/a.png' }, preset: 'hero' }],
    ['an origin url', `{"url":"${ORIGIN}"}`, { source: { url: ORIGIN } }],
    ['an /upscale path', `/upscale/${H}?scale=2&creativity=0.4&format=webp&w=800&sig=abc`, { source: { hash: H }, params: { scale: '2', creativity: '0.4' }, variants: [{ format: 'webp', w: '800' }] }],
    ['an absolute /upscale URL with a path prefix and a preset', `https://cdn.example.com/img/upscale/${H}?preset=hero&q=70`, { source: { hash: H }, preset: 'hero', variants: [{ q: '70' }] }],
    ['an /upscale/url path', `/upscale/url/${B64}?scale=3`, { source: { url: ORIGIN }, params: { scale: '3' } }],
    ['HTML-escaped ampersands', `/upscale/${H}?scale=2&amp;format=avif`, { source: { hash: H }, params: { scale: '2' }, variants: [{ format: 'avif' }] }],
    ['an unknown key (left for the server to name)', `/upscale/${H}?bogus=1`, { source: { hash: H }, params: { bogus: '1' } }],
    ['a malformed hash (left for the server to name)', '/upscale/nothex?scale=2', { source: { hash: 'nothex' }, params: { scale: '2' } }],
    ['an origin image URL', ORIGIN, { source: { url: ORIGIN } }],
    ['an origin image under a folder named upscale', 'https://images.example.com/upscale/a.jpg', { source: { url: 'https://images.example.com/upscale/a.jpg' } }],
  ])('reads %s', (_name, text, expected) => {
    const parsed = item(text);
    expect(parsed).toEqual({ line: 7, key: expect.stringMatching(/^[0-9a-f]{64}$/), ...expected });
  });

  it.each([
    ['malformed JSON', `{"hash":"${H}"`, /^not valid JSON/],
    ['a JSON array', '[1]', /expected a JSON object/],
    ['an unknown field', `{"hash":"${H}","webhook":"https://x"}`, /unknown field "webhook"/],
    ['two sources', `{"hash":"${H}","url":"${ORIGIN}"}`, /exactly one of "hash", "file" and "url", not hash and url/],
    ['no source', '{"params":{"scale":2}}', /exactly one of/],
    ['params that are not scalars', `{"hash":"${H}","params":{"scale":[2]}}`, /"params" must be an object/],
    ['variants that are not an array', `{"hash":"${H}","variants":{"w":1}}`, /"variants" must be an array/],
    ['plain text', 'hello.jpg', /expected a JSON object, an \/upscale URL or an http\(s\) image URL/],
    ['a path that is not /upscale', '/images/a.jpg', /must be an \/upscale path/],
    ['a bad /upscale/url encoding', '/upscale/url/%%%', /base64url encoding of an http\(s\) URL/],
    ['a repeated parameter', `/upscale/${H}?w=1&w=2`, /repeated parameter "w"/],
  ])('refuses %s, naming the line', (_name, text, message) => {
    const parsed = parseWarmLine(text, 12);
    expect(parsed?.kind).toBe('invalid');
    if (parsed?.kind !== 'invalid') return;
    expect(parsed.problem).toMatchObject({ line: 12, code: 'INVALID_LINE' });
    expect(parsed.problem.error).toMatch(message);
  });

  it('gives one key to one item however it is spelled, and different keys to different items', () => {
    expect(keyOf(`{"hash":"${H}","params":{"scale":2,"seed":1}}`)).toBe(keyOf(`  { "params": {"seed": 1, "scale": 2}, "hash": "${H}" }  `));
    expect(keyOf(`/upscale/${H}?scale=2&format=webp`)).toBe(keyOf(`https://cdn.example.com/upscale/${H}?format=webp&scale=2&sig=xyz`));
    expect(keyOf(`/upscale/${H}?scale=2`)).not.toBe(keyOf(`/upscale/${H}?scale=3`));
    expect(keyOf(`{"hash":"${H}"}`)).not.toBe(keyOf(`/upscale/${H}`));
  });
});

describe('jobBody', () => {
  it('is a warm-lane job with only the fields given', () => {
    expect(jobBody(item(`/upscale/${H}?scale=2&format=webp`), H)).toEqual({ source: H, params: { scale: '2' }, variants: [{ format: 'webp' }], lane: 'warm' });
    expect(jobBody(item(ORIGIN), { url: ORIGIN })).toEqual({ source: { url: ORIGIN }, lane: 'warm' });
  });
});
