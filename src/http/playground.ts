/**
 * The playground at `GET /` (off with `PLAYGROUND=false`): a page that uploads, tunes, generates
 * through the jobs API and compares. Its controls come from `GET /playground/config.json`, built
 * from the parameter table itself, so they cannot drift from validation. Assets are plain files
 * from `playground/` (no build step, nothing from the internet), served under content-hashed names
 * with immutable caching; the page has a CSP that allows only this origin.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Router } from 'express';
import { describeAllowed, PARAMS, type ParamName, type ParamSpec } from '../params/index.js';
import { RequestError } from './errors.js';
import { IMMUTABLE } from './headers.js';
import { requireAdmin } from './sources.js';

export interface PlaygroundOptions {
  /** The engine in use: which fields it acts on (the others are shown as ignored). */
  engine: { id: string; honors: ReadonlySet<string>; paid: boolean };
  presets: readonly string[];
  onlyPresets: boolean;
  /** Writes need `Authorization: Bearer <ADMIN_TOKEN>`: the page asks for the token. */
  adminToken?: string;
  /** URLs are signed (by the server, for a session with the token: the page never holds a key). */
  signing: boolean;
  /** `POST /sources {"url"}` works (it always does); `GET /upscale/url/…` is on. */
  urlRoute: boolean;
  /** Recently used sources, newest first. */
  recentSources: (limit: number) => string[];
  /** What is known of a source (the picker shows it without fetching the image). */
  sourceInfo: (hash: string) => Promise<{ width: number; height: number; format: string; bytes: number } | undefined>;
}

/** Where the page's files live: `playground/` at the package root (beside `src/` and `dist/`). */
const ASSET_DIR = new URL('../../playground/', import.meta.url);
const TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' };

/** The page may load and call only its own origin; images also from blob: (local previews). */
export const PLAYGROUND_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

interface Asset {
  name: string;
  body: Buffer;
  type: string;
}

/** Every control the page can show, from the table: kind, range, step, default, options, meaning. */
function fieldsOf(options: PlaygroundOptions) {
  return (Object.entries(PARAMS) as [ParamName, ParamSpec][]).map(([name, spec]) => ({
    name,
    aliases: spec.aliases ?? [],
    group: spec.group,
    kind: spec.kind,
    ...('min' in spec ? { min: spec.min, max: spec.max } : {}),
    ...('step' in spec && spec.step ? { step: spec.step } : {}),
    ...(spec.default !== undefined ? { default: spec.default } : {}),
    ...('values' in spec ? { values: spec.values } : {}),
    ...('maxLength' in spec ? { maxLength: spec.maxLength } : {}),
    allowed: describeAllowed(spec),
    description: spec.description,
    // Output fields cost nothing and apply to every engine; clarity fields only where honored.
    ignored: spec.group === 'clarity' && !options.engine.honors.has(name),
    // A job waits for the real image: a placeholder is for <img> requests only.
    jobs: name !== 'placeholder',
  }));
}

export function mountPlayground(router: Router, options: PlaygroundOptions): void {
  // Read once at start: their hashes name them, so a new deploy gets new URLs.
  const assets = new Map<string, Asset>();
  for (const file of ['app.js', 'style.css']) {
    const body = readFileSync(new URL(file, ASSET_DIR));
    const [stem, ext] = file.split('.') as [string, string];
    const name = `${stem}.${createHash('sha256').update(body).digest('hex').slice(0, 12)}.${ext}`;
    assets.set(name, { name, body, type: TYPES[ext] ?? 'application/octet-stream' });
  }
  const byStem = (stem: string) => [...assets.values()].find((a) => a.name.startsWith(`${stem}.`))?.name ?? '';
  const html = readFileSync(new URL('index.html', ASSET_DIR), 'utf8')
    .replace('{{app.js}}', `/assets/${byStem('app')}`)
    .replace('{{style.css}}', `/assets/${byStem('style')}`);

  router.get('/', (_req, res) => {
    res.setHeader('Content-Security-Policy', PLAYGROUND_CSP);
    // The page names hashed assets: it may change with every deploy, they never do.
    res.setHeader('Cache-Control', 'no-cache');
    res.type('html').send(html);
  });

  router.get('/assets/:name', (req, res) => {
    const asset = assets.get(String(req.params.name));
    if (!asset) throw new RequestError(404, 'NOT_FOUND', 'Not found', { detail: `no asset ${String(req.params.name).slice(0, 80)}` });
    res.setHeader('Content-Type', asset.type);
    res.setHeader('Cache-Control', IMMUTABLE);
    res.end(asset.body);
  });

  router.get('/playground/config.json', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      engine: options.engine.id,
      paid: options.engine.paid,
      fields: fieldsOf(options),
      presets: options.presets,
      onlyPresets: options.onlyPresets,
      adminTokenRequired: Boolean(options.adminToken),
      // POST /jobs refuses a signing server without a token (JOBS_NEED_ADMIN_TOKEN).
      jobsAvailable: !(options.signing && !options.adminToken),
      signing: options.signing,
      urlSources: true,
      urlRoute: options.urlRoute,
    });
  });

  // The recent-sources picker: a list of hashes is a list of what can be upscaled, so it takes
  // the admin token when one is set.
  router.get('/playground/sources', requireAdmin(options.adminToken, 'the recent sources list'), async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    const known = await Promise.all(
      options.recentSources(24).map(async (hash) => {
        const info = await options.sourceInfo(hash);
        return info ? { hash, width: info.width, height: info.height, format: info.format, bytes: info.bytes } : undefined;
      }),
    );
    res.json({ sources: known.filter((s) => s !== undefined) });
  });
}
