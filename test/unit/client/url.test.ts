/**
 * `buildUpscaleUrl`: expected URLs are written out by hand (base64url and one signature computed
 * outside Node, with `base64` and `openssl dgst -hmac`), then the same URLs go through the real app.
 */
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUpscaleUrl, InvalidParamError, type BuildUpscaleUrlOptions, type UpscaleFields } from '../../../src/index.js';
import { verifyPath } from '../../../src/security/signature.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../../helpers/app.js';
import { makeImage } from '../../helpers/images.js';

/** sha256 of the empty string. */
const HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const BASE = 'https://img.example.com';
const KEY = 'test-key-0123456789abcdef';
/** The documented recipe: base64url(HMAC-SHA256(key, path + "?" + query)), the path being `/upscale/…`. */
const hmac = (key: string, text: string) => createHmac('sha256', key).update(text).digest('base64url');

describe('buildUpscaleUrl', () => {
  it('writes fields by upstream name, in the table order, canonically', () => {
    const url = buildUpscaleUrl({
      baseUrl: BASE,
      hash: HASH,
      params: { format: 'webp', w: 800, downscaling: true, sharpen: -0, creativity: 0.4, scale_factor: 2 },
    });
    expect(url).toBe(`https://img.example.com/upscale/${HASH}?scale_factor=2&creativity=0.4&sharpen=0&downscaling=true&format=webp&w=800`);
  });

  it('gives the same URL whatever the order of the params object', () => {
    const a: UpscaleFields = { scale_factor: 2, format: 'avif', quality: 50, prompt: 'a fox', seed: 7 };
    const b: UpscaleFields = { seed: 7, prompt: 'a fox', quality: 50, format: 'avif', scale_factor: 2 };
    const expected = `https://img.example.com/upscale/${HASH}?scale_factor=2&seed=7&prompt=a%20fox&format=avif&quality=50`;
    expect(buildUpscaleUrl({ baseUrl: BASE, hash: HASH, params: a })).toBe(expected);
    expect(buildUpscaleUrl({ baseUrl: BASE, hash: HASH, params: b })).toBe(expected);
    expect(buildUpscaleUrl({ baseUrl: BASE, hash: HASH, params: a, signingKey: KEY })).toBe(
      buildUpscaleUrl({ baseUrl: BASE, hash: HASH, params: b, signingKey: KEY }),
    );
  });

  it("encodes spaces as %20 (never +), and also ' ( ) ! * which browsers or proxies may rewrite", () => {
    const url = buildUpscaleUrl({
      baseUrl: BASE,
      hash: HASH,
      params: { prompt: "a red car, it's (sharp)! *", scheduler: 'DPM++ 2M Karras' },
    });
    expect(url).toBe(
      `https://img.example.com/upscale/${HASH}?scheduler=DPM%2B%2B%202M%20Karras&prompt=a%20red%20car%2C%20it%27s%20%28sharp%29%21%20%2A`,
    );
  });

  it('writes no query without fields, puts preset first, keeps a path prefix and drops trailing slashes', () => {
    expect(buildUpscaleUrl({ baseUrl: `${BASE}/`, hash: HASH })).toBe(`https://img.example.com/upscale/${HASH}`);
    expect(buildUpscaleUrl({ baseUrl: BASE, hash: HASH, preset: 'hero', params: { w: 800, scale_factor: 3 } })).toBe(
      `https://img.example.com/upscale/${HASH}?preset=hero&scale_factor=3&w=800`,
    );
    expect(buildUpscaleUrl({ baseUrl: 'http://localhost:3000/cdn/img//', hash: HASH, params: { fit: 'cover' } })).toBe(
      `http://localhost:3000/cdn/img/upscale/${HASH}?fit=cover`,
    );
  });

  it.each([
    ['https://example.com/a.jpg', 'aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw'],
    // `_` and `-` where base64 has `/` and `+`, and no `=` padding.
    ['https://example.com/?q=~~~>', 'aHR0cHM6Ly9leGFtcGxlLmNvbS8_cT1-fn4-'],
  ])('serves an origin URL through /upscale/url/<base64url>: %s', (origin, encoded) => {
    expect(buildUpscaleUrl({ baseUrl: BASE, url: origin, params: { scale_factor: 2 } })).toBe(
      `https://img.example.com/upscale/url/${encoded}?scale_factor=2`,
    );
  });

  it('signs /upscale/…?query with HMAC-SHA256 under the key; verifyPath accepts it', () => {
    const url = buildUpscaleUrl({ baseUrl: BASE, hash: HASH, params: { format: 'webp', scale_factor: 2 }, signingKey: KEY });
    const signed = `/upscale/${HASH}?scale_factor=2&format=webp`;
    // Computed with `openssl dgst -sha256 -hmac <KEY> -binary | base64 | tr '+/' '-_' | tr -d =`.
    const sig = 'ouamrdv6lUl1HEUHxrypS4Gq1yaFN6m_4XMRU6ln4ik';
    expect(hmac(KEY, signed)).toBe(sig);
    expect(url).toBe(`https://img.example.com${signed}&sig=${sig}`);
    expect(verifyPath(url.slice(BASE.length), [KEY])).toBe('valid');
    expect(verifyPath(url.slice(BASE.length), ['another-key'])).toBe('invalid');
  });

  it('signs the path alone when there is no query', () => {
    const url = buildUpscaleUrl({ baseUrl: BASE, hash: HASH, signingKey: KEY });
    expect(url).toBe(`https://img.example.com/upscale/${HASH}?sig=${hmac(KEY, `/upscale/${HASH}`)}`);
  });

  it('does not sign a baseUrl path prefix: the server sees only /upscale/…', () => {
    const url = buildUpscaleUrl({ baseUrl: 'https://example.com/img/', hash: HASH, params: { w: 10 }, signingKey: KEY });
    const path = `/upscale/${HASH}?w=10`;
    expect(url).toBe(`https://example.com/img${path}&sig=${hmac(KEY, path)}`);
    expect(verifyPath(url.slice('https://example.com/img'.length), [KEY])).toBe('valid');
  });

  it.each<[string, Partial<BuildUpscaleUrlOptions>, string, string, string]>([
    ['a value out of range', { params: { scale_factor: 9 } }, 'scale_factor', 'a number from 1 to 4', 'scale_factor="9" is out of range; expected a number from 1 to 4'],
    ['not a multiple of the step', { params: { tiling_width: 100 } }, 'tiling_width', 'an integer from 16 to 256 in steps of 16', 'tiling_width="100" is not a multiple of 16'],
    ['a fraction for an integer', { params: { seed: 1.5 } }, 'seed', 'an integer from 0 to 4294967295', 'seed="1.5" is not an integer'],
    ['NaN', { params: { creativity: Number.NaN } }, 'creativity', 'a number from 0 to 1', 'creativity="NaN" is not a number'],
    ['an enum value not in the list', { params: { format: 'gif' as never } }, 'format', 'one of: auto, webp, avif, jpeg, png', 'format="gif" is not allowed'],
    ['a string for a number', { params: { scale_factor: '2' as never } }, 'scale_factor', 'a number from 1 to 4', 'scale_factor must be a number, got string'],
    ['a string for a boolean', { params: { downscaling: 'true' as never } }, 'downscaling', 'true, false, 1 or 0', 'downscaling must be a boolean, got string'],
    ['an alias instead of the field name', { params: { scale: 2 } as never }, 'scale', 'scale_factor, creativity', 'unknown field "scale"'],
    ['a URL field that is not a URL', { params: { custom_sd_model: 'model.safetensors' } }, 'custom_sd_model', 'an http(s) URL', 'is not an http(s) URL'],
    ['a mask that is not a hash', { params: { mask: 'abc' } }, 'mask', 'a source hash', 'mask="abc" is not a source hash'],
    ['a hash that is not 64 hex', { hash: 'abc' }, 'hash', 'a source hash', '64 lowercase hex characters'],
    ['an upper-case hash', { hash: HASH.toUpperCase() }, 'hash', 'a source hash', '64 lowercase hex characters'],
    ['an origin URL that is not http(s)', { hash: undefined, url: 'ftp://example.com/a.jpg' }, 'url', 'an absolute http(s) URL', 'is not an absolute http(s) URL'],
    ['a relative origin URL', { hash: undefined, url: '/a.jpg' }, 'url', 'an absolute http(s) URL', 'is not an absolute http(s) URL'],
    ['a preset name with a space', { preset: 'my hero' }, 'preset', 'a preset name', 'is not a preset name'],
  ])('refuses %s with the InvalidParamError the server answers', (_name, options, param, allowed, detail) => {
    const build = () => buildUpscaleUrl({ baseUrl: BASE, hash: HASH, ...options });
    expect(build).toThrow(InvalidParamError);
    try {
      build();
    } catch (error) {
      expect(error).toMatchObject({ status: 400, code: 'INVALID_PARAM', param });
      expect((error as InvalidParamError).allowed).toContain(allowed);
      expect((error as InvalidParamError).detail).toContain(detail);
    }
  });

  it.each<[string, BuildUpscaleUrlOptions, RegExp]>([
    ['neither hash nor url', { baseUrl: BASE }, /exactly one of hash .* and url .*, not neither/],
    ['both hash and url', { baseUrl: BASE, hash: HASH, url: 'https://example.com/a.jpg' }, /exactly one of hash .* and url .*, not both/],
    ['a baseUrl without a scheme', { baseUrl: 'img.example.com', hash: HASH }, /baseUrl must be an absolute http\(s\) URL/],
    ['a baseUrl that is not http(s)', { baseUrl: 'ftp://img.example.com', hash: HASH }, /baseUrl must be an absolute http\(s\) URL/],
    ['a baseUrl with a query', { baseUrl: `${BASE}/?v=1`, hash: HASH }, /without query, fragment or credentials/],
    ['a baseUrl with credentials', { baseUrl: 'https://user:pw@img.example.com', hash: HASH }, /without query, fragment or credentials/],
    ['an empty signing key', { baseUrl: BASE, hash: HASH, signingKey: '' }, /signingKey must be a non-empty string/],
  ])('throws a TypeError for %s', (_name, options, message) => {
    expect(() => buildUpscaleUrl(options)).toThrow(TypeError);
    expect(() => buildUpscaleUrl(options)).toThrow(message);
  });

  it('types each field as the table checks it', () => {
    const fields: UpscaleFields = { scale_factor: 2, handfix: 'hands_only', downscaling: false, format: 'png', fit: 'cover' };
    // @ts-expect-error a number field takes a number
    fields.scale_factor = '2';
    // @ts-expect-error an enum field takes one of its values
    fields.format = 'gif';
    // @ts-expect-error a boolean field takes a boolean
    fields.downscaling = 'true';
    // @ts-expect-error aliases are not fields
    fields.scale = 2;
    expect(fields).toBeDefined();
  });
});

describe('buildUpscaleUrl against the real app', () => {
  let server: TestServer;
  let origin: Server;
  let originUrl: string;
  let hash: string;
  let presetsDir: string;

  beforeAll(async () => {
    const png = await makeImage(16, 12);
    origin = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'image/png' }).end(png));
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/photos/small.png`;
    presetsDir = await tempDir('clarity-presets-');
    const presetsFile = join(presetsDir, 'presets.json');
    await writeFile(presetsFile, JSON.stringify({ thumb: { scale: 2, format: 'png', w: 20 } }));
    server = await startTestServer({ SIGNING_KEY: KEY, PRESETS_FILE: presetsFile, SOURCE_ALLOW_PRIVATE: 'true' });
    const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(png);
    expect(res.status).toBeLessThan(300);
    hash = res.body.hash as string;
  });
  afterAll(async () => {
    await stopTestServer(server);
    origin.closeAllConnections();
    await new Promise((resolve) => origin.close(resolve));
    await rm(presetsDir, { recursive: true, force: true });
  });

  /** The URL's path and query, as the server sees them behind a proxy that strips `prefix`. */
  const pathOf = (url: string, prefix: string) => {
    expect(url.startsWith(prefix)).toBe(true);
    return url.slice(prefix.length);
  };

  it('a signed URL with fields is served at the size and format asked', async () => {
    const url = buildUpscaleUrl({
      baseUrl: 'https://img.example.com/cdn/',
      hash,
      params: { format: 'webp', scale_factor: 2, prompt: "it's a (test)" },
      signingKey: KEY,
    });
    const res = await request(server.app).get(pathOf(url, 'https://img.example.com/cdn')).buffer(true);
    expect(res.status).toBe(200);
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 32, height: 24 });
  });

  it('a signed preset URL takes the preset from PRESETS_FILE', async () => {
    const url = buildUpscaleUrl({ baseUrl: BASE, hash, preset: 'thumb', signingKey: KEY });
    expect(url).toContain('?preset=thumb&sig=');
    const res = await request(server.app).get(pathOf(url, BASE)).buffer(true);
    expect(res.status).toBe(200);
    // 16x12 upscaled 2x is 32x24; the preset's w=20 fits it inside 20x15.
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 20, height: 15 });
  });

  it('a signed origin URL is fetched and served', async () => {
    const url = buildUpscaleUrl({ baseUrl: BASE, url: originUrl, params: { format: 'jpeg', scale_factor: 1 }, signingKey: KEY });
    const res = await request(server.app).get(pathOf(url, BASE)).buffer(true);
    expect(res.status).toBe(200);
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'jpeg', width: 16, height: 12 });
  });

  it('a URL changed after building is refused', async () => {
    const url = buildUpscaleUrl({ baseUrl: BASE, hash, params: { scale_factor: 2 }, signingKey: KEY });
    const res = await request(server.app).get(pathOf(url, BASE).replace('scale_factor=2', 'scale_factor=3'));
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('INVALID_SIGNATURE');
  });
});
