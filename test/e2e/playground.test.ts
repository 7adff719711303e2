/**
 * The playground in a real browser: Debian's Chromium, headless, against the real app (local
 * engine, real sharp) on a real port. A user uploads the photo, changes two fields, generates,
 * compares and copies; the copied URL must serve the very image the page showed. A bad value must
 * come back in the API's words next to its control. The page may log no error and fail no request
 * on the way (a CSP violation is a console error). No sleeps: Playwright's waits on what the user
 * would see.
 *
 * `UPDATE_SCREENSHOT=1` writes the finished comparison to docs/playground.png (committed, shown in
 * the README); otherwise the screenshot is taken into a temp dir (removed after), so a plain run
 * still proves it can be made and changes no file.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';
import { astronautJpeg } from '../helpers/images.js';

/** Never a downloaded browser: the system's (CI installs Debian's `chromium`). */
const CHROMIUM = '/usr/bin/chromium';
/** The local model on two shared cores: a 128² image takes a few seconds, a cold one more. */
const RESULT_TIMEOUT_MS = 45_000;
const SCREENSHOT = new URL('../../docs/playground.png', import.meta.url);

let server: TestServer;
let browser: Browser;
let page: Page;
let base: string;
let dir: string;
let photo: string;
/** What the page did wrong: console errors, uncaught exceptions, failed and refused requests. */
const problems: string[] = [];

/** What the page showed in its result panel. */
const shown = (id: string) => page.locator(`#${id}`).innerText();

beforeAll(async () => {
  dir = await tempDir('clarity-e2e-');
  photo = join(dir, 'astronaut-128.jpg');
  // 128² keeps the model fast; still the real photo, so the comparison means something.
  await writeFile(photo, await sharp(astronautJpeg()).resize(128, 128).jpeg({ quality: 90 }).toBuffer());
  server = await startTestServer({ HOST: '127.0.0.1' });
  const { port } = await server.listen(0);
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (r) => problems.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`response: ${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
});

afterAll(async () => {
  await browser?.close();
  if (server) await stopTestServer(server);
  if (dir) await rm(dir, { recursive: true, force: true });
});

// One page through both tests, in order: the second starts where the first left off (a result shown).
describe('playground', () => {
  it('uploads, generates with two changed fields, compares, and copies a URL that serves what it showed', async () => {
    await page.goto(`${base}/`);
    await page.locator('body.ready').waitFor();
    // Controls come from the table: the ignored diffusion fields are marked, and folded away.
    expect(await page.locator('#f-scale_factor').getAttribute('max')).toBe('4');
    expect(await page.locator('.field:has(#f-creativity) .ignored-tag').textContent()).toBe('ignored by local:esrgan-slim');

    const uploaded = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/sources');
    await page.setInputFiles('#file', photo);
    expect((await uploaded).headers()['content-type']).toBe('image/jpeg');
    await page.locator('#current', { hasText: '128 × 128 · jpeg' }).waitFor();
    await page.locator('#recent button[aria-pressed="true"]').waitFor();

    // scale_factor by keyboard, as a user without a mouse would: 2 → 1.5 in steps of 0.05.
    await page.locator('#f-scale_factor').focus();
    for (let i = 0; i < 10; i++) await page.keyboard.press('ArrowLeft');
    expect(await page.locator('#f-scale_factor-num').inputValue()).toBe('1.5');
    await page.selectOption('#f-format', 'avif');

    // Only what was changed is sent; the server fills in every default.
    const submitted = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/jobs');
    await page.getByRole('button', { name: 'Generate' }).click();
    const job = (await submitted).postDataJSON() as { source: string; params: unknown; variants: unknown };
    expect(job.params).toEqual({ scale_factor: 1.5 });
    expect(job.variants).toEqual([{ format: 'avif' }]);

    await page.locator('#share').waitFor({ timeout: RESULT_TIMEOUT_MS });
    await page.waitForFunction("document.querySelector('#after').complete && document.querySelector('#after').naturalWidth > 0");
    const natural = await page.locator('#after').evaluate((img) => {
      const { naturalWidth, naturalHeight } = img as unknown as { naturalWidth: number; naturalHeight: number };
      return [naturalWidth, naturalHeight];
    });
    expect(natural).toEqual([192, 192]);
    expect(await shown('r-size')).toBe('192 × 192');
    expect(await shown('r-format')).toBe('image/avif');
    expect(await shown('r-engine')).toBe('local:esrgan-slim');
    expect(await shown('status')).toMatch(/^Done in [\d.]+ s\.$/);

    // The comparison: the slider clips the result; zoom shows actual pixels, then fits again.
    await page.locator('#split').fill('30');
    expect(await page.locator('#after').evaluate((img) => (img as unknown as { style: { clipPath: string } }).style.clipPath)).toBe('inset(0px 0px 0px 30%)');
    await page.getByRole('button', { name: 'Zoom to 100%' }).click();
    expect(await page.locator('#after').evaluate((img) => (img as unknown as { clientWidth: number }).clientWidth)).toBe(192);
    await page.getByRole('button', { name: 'Fit to width' }).click();
    expect(await page.locator('#after').evaluate((img) => (img as unknown as { clientWidth: number }).clientWidth)).toBeGreaterThan(192);
    await page.locator('#split').fill('50');

    await page.getByRole('button', { name: 'Copy URL' }).click();
    await page.locator('#copied', { hasText: 'Copied the URL.' }).waitFor();
    const copied = (await page.evaluate('navigator.clipboard.readText()')) as string;
    expect(copied).toBe(await page.locator('#out-url').inputValue());
    const url = new URL(copied);
    expect(url.origin).toBe(base);
    expect(url.searchParams.get('scale_factor')).toBe('1.5');

    await page.getByRole('button', { name: 'Copy <img> tag' }).click();
    await page.locator('#copied', { hasText: 'Copied the <img> tag.' }).waitFor();
    const tag = (await page.evaluate('navigator.clipboard.readText()')) as string;
    expect(tag).toBe(`<img src="${copied.replaceAll('&', '&amp;')}" width="192" height="192" alt="" loading="lazy" decoding="async">`);

    // The copied URL, fetched outside the browser, is the image the page showed.
    const res = await request(server.app).get(url.pathname + url.search).buffer(true);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('image/avif');
    expect(res.headers['etag']).toBe(await shown('r-etag'));
    expect(res.body.length).toBe(Number(await page.locator('#r-bytes').getAttribute('data-bytes')));
    const meta = await sharp(res.body as Buffer).metadata();
    expect([meta.width, meta.height]).toEqual([192, 192]);

    // The whole page in one viewport, so the sticky Generate bar sits where it belongs.
    await page.mouse.move(0, 0);
    await page.evaluate('document.activeElement.blur()');
    await page.setViewportSize({ width: 1280, height: (await page.evaluate('document.documentElement.scrollHeight')) as number });
    const shot = await page.screenshot();
    await page.setViewportSize({ width: 1280, height: 900 });
    const small = await sharp(shot).png({ palette: true, quality: 90, effort: 8 }).toBuffer();
    if (process.env.UPDATE_SCREENSHOT === '1') {
      await mkdir(new URL('.', SCREENSHOT), { recursive: true });
      await writeFile(SCREENSHOT, small);
    } else {
      await writeFile(join(dir, 'playground.png'), small);
    }

    expect(problems).toEqual([]);
  });

  it("shows a refused value's problem detail next to the control it names", async () => {
    // Chromium logs every 4xx fetch as a console error: those two are expected, nothing else.
    const refused = (m: string) => m === 'response: 400 POST /jobs' || (m.startsWith('console: Failed to load resource: the server responded with a status of 400') && m.endsWith(`${base}/jobs)`));

    // An output field: variants[0].w
    await page.locator('#f-w').fill('0');
    await page.getByRole('button', { name: 'Generate' }).click();
    const wError = page.locator('.field:has(#f-w) .error');
    await wError.waitFor();
    expect(await wError.innerText()).toBe('variants[0].w: w="0" is out of range; expected an integer from 1 to 16383');
    expect(await page.locator('#f-w').getAttribute('aria-invalid')).toBe('true');
    expect(await shown('status')).toBe('Not submitted.');
    // A refused job leaves the last result in place.
    expect(await page.locator('#after').isVisible()).toBe(true);

    // An upscale field the local engine ignores (still checked): params.custom_sd_model
    await page.locator('#f-w').fill('');
    await page.locator('summary', { hasText: 'ignored by local:esrgan-slim' }).click();
    await page.locator('#f-custom_sd_model').fill('not a url');
    await page.getByRole('button', { name: 'Generate' }).click();
    const modelError = page.locator('.field:has(#f-custom_sd_model) .error');
    await modelError.waitFor();
    expect(await modelError.innerText()).toContain('custom_sd_model="not a url" is not an http(s) URL');
    expect(await wError.isVisible()).toBe(false);
    expect(await page.locator('#banner').isVisible()).toBe(false);

    expect(problems.filter((m) => !refused(m))).toEqual([]);
    expect(problems.filter((m) => m === 'response: 400 POST /jobs')).toHaveLength(2);
  });
});
