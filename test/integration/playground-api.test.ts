/**
 * The playground's server side: the page under its CSP, hashed immutable assets, controls
 * described from the parameter table, and the recent-sources list.
 */
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { makeImage } from '../helpers/images.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await stopTestServer(s);
});
async function server(env: Record<string, string> = {}) {
  const s = await startTestServer(env);
  servers.push(s);
  return s;
}

describe('playground', () => {
  it('serves the page with its CSP and its assets under hashed, immutable names', async () => {
    const s = await server();
    const page = await request(s.app).get('/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    );
    const assets = [...page.text.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1] as string);
    expect(assets).toHaveLength(2);
    for (const path of assets) {
      expect(path).toMatch(/^\/assets\/(app|style)\.[0-9a-f]{12}\.(js|css)$/);
      const asset = await request(s.app).get(path);
      expect(asset.status).toBe(200);
      expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    }
    expect((await request(s.app).get('/assets/app.000000000000.js')).status).toBe(404);
  });

  it('describes every control from the table, what this engine ignores, and what jobs refuse', async () => {
    const s = await server({ SIGNING_KEY: 'playground-signing-key-0' });
    const config = (await request(s.app).get('/playground/config.json')).body;
    expect(config).toMatchObject({ engine: 'local:esrgan-slim', paid: false, adminTokenRequired: false, signing: true, jobsAvailable: false });
    const field = (name: string) => config.fields.find((f: { name: string }) => f.name === name);
    expect(field('scale_factor')).toMatchObject({ kind: 'float', min: 1, max: 4, default: 2, aliases: ['scale'], ignored: false, jobs: true });
    expect(field('creativity')).toMatchObject({ min: 0, max: 1, default: 0.35, ignored: true });
    expect(field('tiling_width')).toMatchObject({ step: 16 });
    expect(field('scheduler').values).toHaveLength(30);
    expect(field('placeholder')).toMatchObject({ group: 'output', jobs: false });
  });

  it('lists recent sources with what is known of them; off with PLAYGROUND=false', async () => {
    const s = await server();
    const png = await makeImage(12, 9, { seed: 4 });
    const { hash } = (await request(s.app).post('/sources').set('Content-Type', 'image/png').send(png)).body;
    const list = (await request(s.app).get('/playground/sources')).body.sources;
    expect(list).toEqual([{ hash, width: 12, height: 9, format: 'png', bytes: png.length }]);

    const off = await server({ PLAYGROUND: 'false' });
    expect((await request(off.app).get('/')).status).toBe(404);
    expect((await request(off.app).get('/playground/config.json')).status).toBe(404);
  });
});
