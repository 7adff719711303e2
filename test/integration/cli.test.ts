/**
 * `clarity-cdn` as a user runs it: a real child process per command, asserting exit codes and
 * what is printed; URLs it signs are checked against a real server; `serve` is stopped with real
 * signals against the fake upstream.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDiskJournal } from '../../src/engines/segmind/index.js';
import { createFakeSegmind, FAKE_SEGMIND_KEY, type FakeSegmind } from '../fakes/segmind.js';
import { startTestServer, stopTestServer, tempDir, type TestServer } from '../helpers/app.js';
import { runCli, startCli, type CliProcess, type CliResult } from '../helpers/cli.js';
import { makeImage } from '../helpers/images.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Any stack frame in the output: operators get one line, not a trace. */
const STACK_FRAME = /^\s+at /m;

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function scratch(): Promise<string> {
  const dir = await tempDir('clarity-cli-');
  dirs.push(dir);
  return dir;
}

describe('commands, help and usage errors', () => {
  it('--help lists every command and exits 0', async () => {
    const run = await runCli(['--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^Usage: clarity-cdn/);
    for (const command of ['serve', 'sign <path>', 'url [options] <hash> [params...]']) expect(run.stdout).toContain(command);
  });

  it('--version prints the package version and exits 0', async () => {
    expect(await runCli(['--version'])).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it('sign --help describes the argument and exits 0', async () => {
    const run = await runCli(['sign', '--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain('Usage: clarity-cdn sign [options] <path>');
    expect(run.stdout).toContain('SIGNING_KEY');
  });

  it.each([
    ['an unknown command', ['bogus'], "unknown command 'bogus'"],
    ['an unknown option', ['--bogus'], "unknown option '--bogus'"],
  ])('%s exits 2 with the reason on stderr and nothing on stdout', async (_name, args, reason) => {
    const run = await runCli(args);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(reason);
    expect(run.stderr).toContain('clarity-cdn --help');
  });
});

describe('a bad configuration stops serve with exit 2 and a message naming the variable', () => {
  it('no command is serve: PORT=abc and a short ADMIN_TOKEN are both named, the secret not shown', async () => {
    const secret = 'tok3n-XYZ-sec';
    const run = await runCli([], { PORT: 'abc', ADMIN_TOKEN: secret, CACHE_DIR: await scratch() });
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('PORT="abc": expected a whole number from 0 to 65535');
    expect(run.stderr).toContain('ADMIN_TOKEN=(value hidden): expected at least 16 characters');
    expect(run.stderr).not.toContain(secret);
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });

  it('ONLY_PRESETS=true without PRESETS_FILE', async () => {
    const run = await runCli(['serve'], { ONLY_PRESETS: 'true', CACHE_DIR: await scratch() });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('PRESETS_FILE: required when ONLY_PRESETS=true');
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });

  it('a preset with a field out of range names the preset and the field', async () => {
    const dir = await scratch();
    const file = join(dir, 'presets.json');
    await writeFile(file, JSON.stringify({ hero: { creativity: 7 } }));
    const run = await runCli(['serve'], { PRESETS_FILE: file, CACHE_DIR: join(dir, 'cache') });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/preset hero, field creativity: .*expected a number from 0 to 1/);
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });

  it('a presets file that is not JSON names the file', async () => {
    const dir = await scratch();
    const file = join(dir, 'presets.json');
    await writeFile(file, '{"hero": {"scale": 2},');
    const run = await runCli(['serve'], { PRESETS_FILE: file, CACHE_DIR: join(dir, 'cache') });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`PRESETS_FILE=${file}:`);
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });
});

describe('a port in use', () => {
  let occupier: Server;
  beforeAll(async () => {
    occupier = createServer();
    occupier.listen(0, '127.0.0.1');
    await once(occupier, 'listening');
  });
  afterAll(async () => {
    occupier.close();
    await once(occupier, 'close');
  });

  it('exits 1 with one line naming PORT, no stack trace', async () => {
    const { port } = occupier.address() as { port: number };
    const run = await runCli(['serve'], { PORT: String(port), HOST: '127.0.0.1', CACHE_DIR: await scratch() });
    expect(run.code).toBe(1);
    expect(run.stderr).not.toMatch(STACK_FRAME);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`PORT=${port}`);
    expect(lines[0]).toContain('already in use');
  });
});

describe('sign and url, checked by a real server', () => {
  const NEW_KEY = 'new-key-0123456789abcdef';
  const OLD_KEY = 'old-key-fedcba9876543210';
  /** Every CLI run with a key: the key must be in none of their outputs. */
  const runs: CliResult[] = [];
  const keyed = async (args: string[], signingKey: string, env: Record<string, string> = {}) => {
    const run = await runCli(args, { SIGNING_KEY: signingKey, ...env });
    runs.push(run);
    return run;
  };

  /** During a rotation: signs with NEW_KEY, still accepts OLD_KEY. */
  let rotating: TestServer;
  let newOnly: TestServer;
  let oldOnly: TestServer;
  let hash: string;

  beforeAll(async () => {
    [rotating, newOnly, oldOnly] = await Promise.all([
      startTestServer({ SIGNING_KEY: `${NEW_KEY},${OLD_KEY}` }),
      startTestServer({ SIGNING_KEY: NEW_KEY }),
      startTestServer({ SIGNING_KEY: OLD_KEY }),
    ]);
    const res = await request(rotating.app).post('/sources').set('Content-Type', 'image/png').send(await makeImage(16, 12));
    expect(res.status).toBeLessThan(300);
    hash = res.body.hash as string;
  });
  afterAll(async () => {
    for (const server of [rotating, newOnly, oldOnly]) {
      expect(server.logs()).not.toContain(NEW_KEY);
      expect(server.logs()).not.toContain(OLD_KEY);
      await stopTestServer(server);
    }
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) {
      expect(run.stdout + run.stderr).not.toContain(NEW_KEY);
      expect(run.stdout + run.stderr).not.toContain(OLD_KEY);
    }
  });

  it('sign prints the path with a sig (made with the first key) that the server accepts, and only as printed', async () => {
    const path = `/upscale/${hash}?scale=1&format=png`;
    const run = await keyed(['sign', path], `${NEW_KEY},${OLD_KEY}`);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const signed = run.stdout.trimEnd();
    expect(run.stdout).toBe(`${signed}\n`);
    expect(signed).toMatch(new RegExp(`^${path.replace(/[?]/g, '\\?')}&sig=[A-Za-z0-9_-]{43}$`));

    const ok = await request(rotating.app).get(signed).buffer(true);
    expect(ok.status).toBe(200);
    expect(await sharp(ok.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 16, height: 12 });

    const sig = signed.slice(signed.indexOf('&sig=') + 5);
    const otherSig = `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    const refused = [
      signed.replace('scale=1', 'scale=2'),
      signed.replace(`sig=${sig}`, `sig=${otherSig}`),
    ];
    for (const url of refused) {
      const res = await request(rotating.app).get(url);
      expect(res.status, url).toBe(403);
      expect(res.body.code, url).toBe('INVALID_SIGNATURE');
    }
    const unsigned = await request(rotating.app).get(path);
    expect(unsigned.status).toBe(403);
    expect(unsigned.body.code).toBe('SIGNATURE_REQUIRED');
    // The second key verifies but does not sign.
    expect((await request(oldOnly.app).get(signed)).body.code).toBe('INVALID_SIGNATURE');
  });

  it('sign of a whole URL keeps the origin and signs the path the same way', async () => {
    const path = `/upscale/${hash}?scale=1&format=png`;
    const [ofPath, ofUrl] = await Promise.all([
      keyed(['sign', path], NEW_KEY),
      keyed(['sign', `http://host:1${path}`], NEW_KEY),
    ]);
    expect(ofPath.code).toBe(0);
    expect(ofUrl).toMatchObject({ code: 0, stderr: '', stdout: `http://host:1${ofPath.stdout}` });
    expect(ofUrl.stdout).toMatch(/&sig=[A-Za-z0-9_-]{43}\n$/);
  });

  it('rotation: a path signed with the old key is accepted while the server also has it, refused once dropped', async () => {
    const run = await keyed(['sign', `/upscale/${hash}?scale=1&format=png`], OLD_KEY);
    expect(run.code).toBe(0);
    const signed = run.stdout.trimEnd();
    const accepted = await request(rotating.app).get(signed).buffer(true);
    expect(accepted.status).toBe(200);
    expect(await sharp(accepted.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 16, height: 12 });
    const dropped = await request(newOnly.app).get(signed);
    expect(dropped.status).toBe(403);
    expect(dropped.body.code).toBe('INVALID_SIGNATURE');
  });

  it('sign without SIGNING_KEY exits 2 and says so', async () => {
    const run = await runCli(['sign', `/upscale/${hash}?scale=2`]);
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('SIGNING_KEY is not set');
  });

  it('url with SIGNING_KEY prints a signed URL on --base and an <img> tag; the server accepts the URL', async () => {
    const run = await keyed(['url', hash, 'scale=2', 'format=webp', '--base', 'https://cdn.example.com/'], `${NEW_KEY},${OLD_KEY}`, {
      PUBLIC_BASE_URL: 'https://ignored.example.com',
    });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [url, img, ...rest] = run.stdout.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(url).toMatch(new RegExp(`^https://cdn\\.example\\.com/upscale/${hash}\\?scale_factor=2&format=webp&sig=[A-Za-z0-9_-]{43}$`));
    expect(img).toBe(`<img src="${url!.replace(/&/g, '&amp;')}" alt="" loading="lazy" decoding="async">`);

    const res = await request(rotating.app).get(url!.slice('https://cdn.example.com'.length)).buffer(true);
    expect(res.status).toBe(200);
    expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'webp', width: 32, height: 24 });
  });

  it('url without SIGNING_KEY prints an unsigned URL on PUBLIC_BASE_URL, with a note on stderr', async () => {
    const run = await runCli(['url', hash, 'scale=2', 'format=webp'], { PUBLIC_BASE_URL: 'https://cdn.example.com' });
    expect(run.code).toBe(0);
    const url = `https://cdn.example.com/upscale/${hash}?scale_factor=2&format=webp`;
    expect(run.stdout).toBe(`${url}\n<img src="${url.replace(/&/g, '&amp;')}" alt="" loading="lazy" decoding="async">\n`);
    expect(run.stderr).toContain('SIGNING_KEY is not set, so the URL is unsigned');
  });

  it.each([
    ['a value out of range', () => [hash, 'scale=9'], 'scale="9" is out of range; expected a number from 1 to 4'],
    ['not a source hash', () => ['notahash'], 'source hash: 64 lowercase hex characters'],
  ])('url with %s exits 2 with the parameter error', async (_name, args, message) => {
    const run = await runCli(['url', ...args()]);
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain(message);
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });
});

describe('serve: SIGTERM', () => {
  let fake: FakeSegmind;
  /** Servers started here; one a failed test left running is killed after it. */
  const started: CliProcess[] = [];
  beforeAll(async () => {
    fake = await createFakeSegmind();
  });
  afterEach(async () => {
    for (const cli of started.splice(0)) {
      if (cli.child.exitCode !== null || cli.child.signalCode !== null) continue;
      cli.child.kill('SIGKILL');
      await cli.exited;
    }
  });
  afterAll(async () => {
    await fake.close();
  });

  /** `serve` on a free port against the fake, with a held job in flight. */
  async function serveWithHeldJob() {
    fake.reset();
    const cacheDir = await scratch();
    const cli = startCli(['serve'], {
      PORT: '0',
      HOST: '127.0.0.1',
      CACHE_DIR: cacheDir,
      LOG_LEVEL: 'info',
      UPSCALE_ENGINE: 'segmind',
      SEGMIND_API_KEY: FAKE_SEGMIND_KEY,
      SEGMIND_BASE_URL: fake.url,
      SEGMIND_POLL_INTERVAL_MS: '10',
      SHUTDOWN_GRACE_MS: '10000',
    });
    started.push(cli);
    const [, port] = await cli.waitFor(/"port":(\d+).*"msg":"clarity-cdn listening"/);
    const base = `http://127.0.0.1:${port}`;
    const uploaded = await fetch(`${base}/sources`, { method: 'POST', body: await makeImage(16, 12), headers: { 'content-type': 'image/png' } });
    expect(uploaded.status).toBeLessThan(300);
    const { hash } = (await uploaded.json()) as { hash: string };
    fake.holdJobs();
    const path = `/upscale/${hash}?scale=1&format=png`;
    const inFlight = fetch(`${base}${path}`).then(async (res) => ({
      status: res.status,
      type: res.headers.get('content-type'),
      connection: res.headers.get('connection'),
      body: Buffer.from(await res.arrayBuffer()),
    }));
    // Polled once: the job is submitted and journaled (the journal is written before the first poll).
    await fake.waitForPolls(1);
    return { cli, port: Number(port), cacheDir, inFlight, path };
  }

  /** A fresh TCP connection: what did the server say? (nothing, when it no longer accepts) */
  async function probe(port: number): Promise<{ error?: string; answer: string }> {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('connect', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    const error = await new Promise<string | undefined>((resolve) => {
      socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
      socket.once('close', () => resolve(undefined));
    });
    socket.destroy();
    return { ...(error ? { error } : {}), answer };
  }

  it('stops accepting, finishes the request in flight, then exits 0; one submit', async () => {
    const { cli, port, cacheDir, inFlight } = await serveWithHeldJob();
    // While serving, the probe gets an answer: the probe can tell the difference.
    expect((await probe(port)).answer).toMatch(/^HTTP\/1\.1 200/);

    cli.child.kill('SIGTERM');
    await cli.waitFor(/"msg":"shutting down: finishing requests in flight"/);
    // The listener is closed in the same tick as that line; a connection that raced into the
    // backlog is reset. Either way, no answer.
    const late = await probe(port);
    expect(late.answer).toBe('');
    expect(['ECONNREFUSED', 'ECONNRESET']).toContain(late.error);
    expect(cli.child.exitCode).toBeNull();

    fake.releaseJobs();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.type).toBe('image/png');
    // In flight when shutdown began, its answer still closes the connection: an idle keep-alive
    // socket would hold server.close() until the client or the keep-alive timeout dropped it.
    expect(res.connection).toBe('close');
    expect(await sharp(res.body).metadata()).toMatchObject({ format: 'png', width: 16, height: 12 });
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    expect(cli.stdout()).toContain('"msg":"shut down"');
    expect(fake.submits).toHaveLength(1);
    // Nothing left to resume.
    expect(await createDiskJournal(join(cacheDir, 'journal')).list()).toEqual([]);
    expect(cli.stdout() + cli.stderr()).not.toContain(FAKE_SEGMIND_KEY);
  });

  it('a second signal exits at once with 1; the journaled job resumes after a restart without a new submit', async () => {
    const { cli, cacheDir, inFlight, path } = await serveWithHeldJob();
    const lost = inFlight.then(
      () => 'answered',
      () => 'connection lost',
    );
    cli.child.kill('SIGTERM');
    await cli.waitFor(/"msg":"shutting down: finishing requests in flight"/);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toEqual({ code: 1, signal: null });
    expect(cli.stdout()).toContain('"msg":"second signal: exiting now"');
    expect(cli.stdout()).not.toContain('"msg":"shut down"');
    expect(await lost).toBe('connection lost');
    expect(cli.stdout() + cli.stderr()).not.toContain(FAKE_SEGMIND_KEY);

    const journaled = await createDiskJournal(join(cacheDir, 'journal')).list();
    expect(journaled.map((e) => e.requestId)).toEqual([...fake.jobs.keys()]);
    expect(fake.submits).toHaveLength(1);

    const restarted = await startTestServer(
      { UPSCALE_ENGINE: 'segmind', SEGMIND_API_KEY: FAKE_SEGMIND_KEY, SEGMIND_BASE_URL: fake.url, SEGMIND_POLL_INTERVAL_MS: '10' },
      cacheDir,
    );
    try {
      fake.releaseJobs();
      const res = await request(restarted.app).get(path).buffer(true);
      expect(res.status).toBe(200);
      expect(await sharp(res.body as Buffer).metadata()).toMatchObject({ format: 'png', width: 16, height: 12 });
      expect(fake.submits).toHaveLength(1);
      expect(fake.calls.billed).toBe(1);
    } finally {
      await stopTestServer(restarted, { keepDir: true });
    }
  });
});
