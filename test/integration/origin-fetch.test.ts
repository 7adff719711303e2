/**
 * Origin fetches end to end over loopback: real `node:http` origins, real undici through the
 * guarded agent, the real source store on a temp dir, real sharp. The SSRF cases assert that the
 * refused address was never connected to (the server behind it counts zero requests); the limits
 * assert what the origin saw (its socket closed before it finished sending).
 */
import { createHash } from 'node:crypto';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { once } from 'node:events';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { CdnError } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { createGuardedAgent, type GuardedAgentOptions } from '../../src/security/ssrf.js';
import { createOriginFetcher, createOriginSources, type OriginFetcherOptions } from '../../src/sources/origin.js';
import { createSourceStore } from '../../src/sources/store.js';
import { makeImage } from '../helpers/images.js';

const MAX_BYTES = 64 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface Origin {
  host: string;
  port: number;
  /** `http://host:port` + path. */
  url(path?: string): string;
  /** Every request the origin received, in order. */
  seen: { path: string; headers: IncomingHttpHeaders }[];
  /** Resolves with the next request the origin receives. */
  nextRequest(): Promise<IncomingMessage>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startOrigin(handler: Handler, host = '127.0.0.1', port = 0): Promise<Origin> {
  const seen: Origin['seen'] = [];
  const server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    handler(req, res);
  });
  server.listen(port, host);
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const bound = (server.address() as AddressInfo).port;
  const authority = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port: bound,
    url: (path = '/') => `http://${authority}:${bound}${path}`,
    seen,
    nextRequest: async () => ((await once(server, 'request')) as [IncomingMessage])[0],
  };
}

/**
 * One origin on 127.0.0.2 and one on the same port of 127.0.0.1. The port the kernel picked for
 * 127.0.0.2 may be taken on 127.0.0.1 (a client socket of a parallel test): then another try.
 */
async function startOnSamePort(outside: Handler, inside: Handler): Promise<{ origin: Origin; internal: Origin }> {
  for (let attempt = 1; ; attempt++) {
    const origin = await startOrigin(outside, '127.0.0.2');
    try {
      return { origin, internal: await startOrigin(inside, '127.0.0.1', origin.port) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 5) throw error;
    }
  }
}

/** A port with nothing listening: listened on, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A `dns.lookup` stand-in with fixed answers per name, answering in the form Node asks for. */
function lookupFrom(answer: (hostname: string) => string | undefined) {
  const calls: string[] = [];
  const lookup = ((hostname: string, options: LookupOptions, callback: (...args: unknown[]) => void) => {
    calls.push(hostname);
    const address = answer(hostname);
    if (!address) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
    const family = address.includes(':') ? 6 : 4;
    if (options.all) callback(null, [{ address, family }] satisfies LookupAddress[]);
    else callback(null, address, family);
  }) as LookupFunction;
  return { lookup, calls };
}

function agent(options: GuardedAgentOptions): Agent {
  const dispatcher = createGuardedAgent(options);
  cleanups.push(() => dispatcher.close());
  return dispatcher;
}

function fetcher(guard: GuardedAgentOptions, options: Partial<OriginFetcherOptions> = {}) {
  return createOriginFetcher({ dispatcher: agent(guard), maxBytes: MAX_BYTES, timeoutMs: 30_000, ...options });
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clarity-origin-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function sources(guard: GuardedAgentOptions, options: { ttlSeconds?: number; now?: () => number } = {}) {
  const dir = await tempDir();
  const store = createSourceStore({ dir, maxBytes: MAX_BYTES, maxPixels: 1_000_000, logger: createLogger('silent') });
  const origins = createOriginSources({
    fetcher: fetcher(guard),
    store,
    ttlSeconds: options.ttlSeconds ?? 60,
    logger: createLogger('silent'),
    ...(options.now ? { now: options.now } : {}),
  });
  return { origins, store, dir };
}

/** The stored image files (not their meta files) under a store's directory. */
async function storedImages(dir: string): Promise<string[]> {
  const files = await readdir(join(dir, 'sources'), { recursive: true });
  return files.filter((f) => /[0-9a-f]{64}$/.test(f));
}

async function rejection(promise: Promise<unknown>): Promise<CdnError> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => {
      expect(error).toBeInstanceOf(CdnError);
      return error as CdnError;
    },
  );
}

const serveImage =
  (image: Buffer, headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(image.length), ...headers });
    res.end(image);
  };

const PRIVATE: GuardedAgentOptions = { allowPrivate: true };
const DEFAULT_POLICY: GuardedAgentOptions = { allowPrivate: false };

describe('the default policy refuses non-public addresses', () => {
  it.each([
    ['http://127.0.0.1:PORT/', 'is a loopback address'],
    ['http://[::1]:PORT/', 'is a loopback address'],
    ['http://0.0.0.0:PORT/', 'is an unspecified address'],
    ['http://[::ffff:127.0.0.1]:PORT/', 'is a loopback address'],
    ['http://10.0.0.1/', 'is a private address'],
    ['http://169.254.169.254/latest/meta-data', 'is a link-local address'],
    ['http://100.100.100.200/latest/meta-data', 'is a carrier-grade NAT address'],
    ['http://[fd00:ec2::254]/latest/meta-data', 'is a unique-local address'],
    ['http://[2002:7f00:1::]:PORT/', 'is an address in the 6to4 range'],
  ])(
    '%s → 403 before connecting',
    async (template, words) => {
      // Listening on loopback, so a connection that got through would be seen (and answered).
      const origin = await startOrigin(serveImage(await makeImage()));
      // Generous limits: a refusal must not come from a timeout (the test itself allows 5 s).
      const fetch = fetcher(DEFAULT_POLICY, { timeoutMs: 60_000 });
      const error = await rejection(fetch.fetch(template.replace('PORT', String(origin.port))));
      expect(error).toMatchObject({ status: 403, code: 'SOURCE_URL_FORBIDDEN', param: 'url' });
      expect(error.detail).toBe(
        `the host ${words}, which origin fetches may not reach (set SOURCE_ALLOW_PRIVATE=true for private origins)`,
      );
      expect(origin.seen).toHaveLength(0);
    },
    5_000,
  );

  it('refuses a host name that resolves to loopback', async () => {
    const origin = await startOrigin(serveImage(await makeImage()));
    const { lookup, calls } = lookupFrom((host) => (host === 'evil.test' ? '127.0.0.1' : undefined));
    const error = await rejection(fetcher({ allowPrivate: false, lookup }).fetch(`http://evil.test:${origin.port}/`));
    expect(error).toMatchObject({ status: 403, code: 'SOURCE_URL_FORBIDDEN' });
    expect(error.detail).toMatch(/^the host resolves to a loopback address/);
    expect(calls).toEqual(['evil.test']);
    expect(origin.seen).toHaveLength(0);
  });

  it('refuses a redirect from an allowed origin to loopback', async () => {
    const internal = await startOrigin(serveImage(await makeImage()));
    const origin = await startOrigin((_req, res) => {
      res.writeHead(302, { location: internal.url('/admin') }).end();
    }, '127.0.0.2');
    // 127.0.0.2 stands in for a public address; everything else keeps the default verdict.
    const fetch = fetcher({ allowPrivate: false, allowAddress: (a) => a === '127.0.0.2' });
    const error = await rejection(fetch.fetch(origin.url('/photo.png')));
    expect(error).toMatchObject({ status: 403, code: 'SOURCE_URL_FORBIDDEN' });
    expect(error.detail).toMatch(/^the origin redirected to a host that is a loopback address/);
    expect(origin.seen).toHaveLength(1);
    expect(internal.seen).toHaveLength(0);
  });

  it('checks every connection: a name that rebinds to loopback after a first check is refused', async () => {
    const image = await makeImage();
    // `connection: close`, so the second fetch needs a new connection (and a new lookup). The
    // same port on 127.0.0.1, where the rebinding points, must never see a request.
    const { origin, internal } = await startOnSamePort(
      serveImage(image, { connection: 'close' }),
      serveImage(image),
    );
    let lookups = 0;
    const { lookup, calls } = lookupFrom(() => (lookups++ === 0 ? '127.0.0.2' : '127.0.0.1'));
    const fetch = fetcher({ allowPrivate: false, allowAddress: (a) => a === '127.0.0.2', lookup });
    const url = `http://rebind.test:${origin.port}/photo.png`;

    expect(await fetch.fetch(url)).toMatchObject({ status: 'fetched', data: image });
    const error = await rejection(fetch.fetch(url));
    expect(error).toMatchObject({ status: 403, code: 'SOURCE_URL_FORBIDDEN' });
    expect(calls).toEqual(['rebind.test', 'rebind.test']);
    expect(origin.seen).toHaveLength(1);
    expect(internal.seen).toHaveLength(0);
  });
});

describe('origin fetches (private origins allowed)', () => {
  it('fetches an image, stores it under the sha256 of its bytes, and sends what an image client sends', async () => {
    const image = await makeImage(40, 30);
    const origin = await startOrigin(serveImage(image, { etag: '"v1"', 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT' }));
    const { origins, store } = await sources(PRIVATE);
    const resolved = await origins.resolve(origin.url('/a.png'));
    expect(resolved).toMatchObject({ created: true, cached: false });
    expect(resolved.info).toMatchObject({ hash: sha256(image), width: 40, height: 30, format: 'png', bytes: image.length });
    expect((await store.get(resolved.info.hash))?.data.equals(image)).toBe(true);
    expect(origin.seen[0]?.headers).toMatchObject({
      accept: 'image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8',
      'accept-encoding': 'identity',
      'user-agent': 'clarity-cdn',
    });
    expect(origin.seen[0]?.headers['if-none-match']).toBeUndefined();
  });

  it('stores the same bytes from two URLs once, under one hash', async () => {
    const image = await makeImage();
    const origin = await startOrigin(serveImage(image));
    const { origins, dir } = await sources(PRIVATE);
    const first = await origins.resolve(origin.url('/one.png'));
    const second = await origins.resolve(origin.url('/two.png?size=large'));
    expect(second.info.hash).toBe(first.info.hash);
    expect([first.created, second.created]).toEqual([true, false]);
    expect(await storedImages(dir)).toHaveLength(1);
    expect(origin.seen.map((r) => r.path)).toEqual(['/one.png', '/two.png?size=large']);
  });

  /** `/hops/N` redirects to `/hops/N-1` (relative Location, so resolution is exercised); `/hops/0` is the image. */
  const redirectChain =
    (image: Buffer): Handler =>
    (req, res) => {
      const n = Number(/^\/hops\/(\d+)$/.exec(req.url ?? '')?.[1]);
      if (n > 0) res.writeHead(n % 2 ? 301 : 307, { location: `${n - 1}` }).end('moved');
      else serveImage(image)(req, res);
    };

  it('follows a chain of 3 redirects (4 requests) to the image, each Location resolved against its URL', async () => {
    const image = await makeImage();
    const origin = await startOrigin(redirectChain(image));
    const result = await fetcher(PRIVATE).fetch(origin.url('/hops/3'));
    expect(result).toMatchObject({ status: 'fetched', data: image, finalUrl: origin.url('/hops/0') });
    expect(origin.seen.map((r) => r.path)).toEqual(['/hops/3', '/hops/2', '/hops/1', '/hops/0']);
  });

  it('gives up after 3 redirects with 502', async () => {
    const origin = await startOrigin(redirectChain(await makeImage()));
    const error = await rejection(fetcher(PRIVATE).fetch(origin.url('/hops/4')));
    expect(error).toMatchObject({ status: 502, code: 'ORIGIN_UNAVAILABLE', detail: 'the origin redirected more than 3 times' });
    expect(origin.seen).toHaveLength(4);
  });

  it('refuses a Content-Length over the limit with 413 without reading the body', async () => {
    let hungUp!: Promise<unknown>;
    const origin = await startOrigin((_req, res) => {
      hungUp = once(res, 'close');
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(MAX_BYTES * 100) });
      res.flushHeaders(); // and never a byte of body: reading it would hang until the 30 s timeout
    });
    const error = await rejection(fetcher(PRIVATE).fetch(origin.url()));
    expect(error).toMatchObject({ status: 413, code: 'SOURCE_TOO_LARGE', allowed: `at most ${MAX_BYTES} bytes` });
    expect(error.detail).toBe(`the origin's image is ${MAX_BYTES * 100} bytes; the limit is ${MAX_BYTES} bytes (SOURCE_MAX_BYTES)`);
    await hungUp;
  }, 5_000);

  it('stops a chunked body as soon as it passes the limit (413)', async () => {
    const CAP = 256 * MAX_BYTES;
    let written = 0;
    let hungUp!: Promise<unknown>;
    const origin = await startOrigin((_req, res) => {
      hungUp = once(res, 'close');
      res.writeHead(200, { 'content-type': 'image/png' }); // no Content-Length: chunked
      const chunk = Buffer.alloc(8192, 1);
      const pump = () => {
        while (!res.destroyed && written < CAP) {
          written += chunk.length;
          if (!res.write(chunk)) return; // resumes on 'drain'
        }
        if (!res.destroyed) res.end();
      };
      res.on('drain', pump);
      pump();
    });
    const error = await rejection(fetcher(PRIVATE).fetch(origin.url()));
    expect(error).toMatchObject({ status: 413, code: 'SOURCE_TOO_LARGE' });
    expect(error.detail).toBe(`the origin's image is larger than that; the limit is ${MAX_BYTES} bytes (SOURCE_MAX_BYTES)`);
    await hungUp;
    // The fetcher hung up long before the origin was done (socket buffers let some more through).
    expect(written).toBeLessThan(CAP);
  });

  it('refuses a body that is not an image with 415 (the store decides, as for uploads)', async () => {
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' }).end('<html>not an image</html>');
    });
    const { origins, dir } = await sources(PRIVATE);
    const error = await rejection(origins.resolve(origin.url()));
    expect(error).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    expect(error.detail).not.toContain('html');
    await expect(storedImages(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each([
    [404, 404, 'ORIGIN_NOT_FOUND'],
    [410, 404, 'ORIGIN_NOT_FOUND'],
    [500, 502, 'ORIGIN_UNAVAILABLE'],
    [503, 502, 'ORIGIN_UNAVAILABLE'],
    [403, 502, 'ORIGIN_UNAVAILABLE'],
    [304, 502, 'ORIGIN_UNAVAILABLE'], // to a request that was not conditional
  ])('maps origin HTTP %i to %i %s, never echoing the body', async (status, expected, code) => {
    const origin = await startOrigin((_req, res) => {
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 304 ? undefined : 'SECRET internal stack trace');
    });
    const error = await rejection(fetcher(PRIVATE).fetch(origin.url()));
    expect(error).toMatchObject({ status: expected, code, detail: `the origin answered HTTP ${status}` });
    expect(JSON.stringify(error)).not.toContain('SECRET');
  });

  it('maps a refused connection to 502 naming only the error code', async () => {
    const port = await closedPort();
    const error = await rejection(fetcher(PRIVATE).fetch(`http://127.0.0.1:${port}/`));
    expect(error).toMatchObject({ status: 502, code: 'ORIGIN_UNAVAILABLE', detail: 'could not connect to the origin: ECONNREFUSED' });
  });

  it('gives up on a hanging origin with 504 after timeoutMs', async () => {
    const origin = await startOrigin(() => undefined); // reads the request, never answers
    const started = Date.now();
    const error = await rejection(fetcher(PRIVATE, { timeoutMs: 300 }).fetch(origin.url()));
    expect(error).toMatchObject({ status: 504, code: 'ORIGIN_TIMEOUT', detail: 'the origin did not answer within 300 ms' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('counts the timeout across redirects and the body, not per hop', async () => {
    const origin = await startOrigin((req, res) => {
      if (req.url === '/start') res.writeHead(302, { location: '/slow' }).end();
      else res.writeHead(200, { 'content-type': 'image/png' }).write('partial'); // then nothing
    });
    const error = await rejection(fetcher(PRIVATE, { timeoutMs: 300 }).fetch(origin.url('/start')));
    expect(error).toMatchObject({ status: 504, code: 'ORIGIN_TIMEOUT' });
    expect(origin.seen.map((r) => r.path)).toEqual(['/start', '/slow']);
  });

  it.each([
    ['ftp://127.0.0.1/a.png', 'ftp: URLs cannot be fetched'],
    ['file:///etc/passwd', 'file: URLs cannot be fetched'],
    ['/relative/a.png', 'the source URL is not an absolute URL'],
    ['http://user:secret@127.0.0.1/a.png', 'the source URL may not carry credentials'],
    ['http://:secret@127.0.0.1/a.png', 'the source URL may not carry credentials'],
  ])('refuses %s with 400 param url', async (url, detail) => {
    const error = await rejection(fetcher(PRIVATE).fetch(url));
    expect(error).toMatchObject({
      status: 400,
      code: 'INVALID_PARAM',
      param: 'url',
      detail,
      allowed: 'an absolute http: or https: URL without credentials',
    });
  });

  it('refuses a redirect to another scheme with 403', async () => {
    const origin = await startOrigin((_req, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    const error = await rejection(fetcher(PRIVATE).fetch(origin.url()));
    expect(error).toMatchObject({
      status: 403,
      code: 'SOURCE_URL_FORBIDDEN',
      detail: 'the origin redirected to a file: URL; only http: and https: URLs are fetched',
    });
  });
});

describe('SOURCE_ALLOWED_HOSTS', () => {
  async function setup(handler: (image: Buffer) => Handler) {
    const image = await makeImage();
    const origin = await startOrigin(handler(image));
    const { lookup, calls } = lookupFrom((host) => (host.endsWith('.test') ? '127.0.0.1' : undefined));
    const fetch = fetcher({ allowPrivate: true, lookup }, { allowedHosts: ['*.allowed.test'] });
    return { image, origin, fetch, calls };
  }

  it('fetches from a host the globs allow', async () => {
    const { image, origin, fetch } = await setup(serveImage);
    expect(await fetch.fetch(`http://a.allowed.test:${origin.port}/x.png`)).toMatchObject({ status: 'fetched', data: image });
    expect(origin.seen[0]?.headers.host).toBe(`a.allowed.test:${origin.port}`);
  });

  it('refuses another host with 403 without resolving it', async () => {
    const { origin, fetch, calls } = await setup(serveImage);
    const error = await rejection(fetch.fetch(`http://other.test:${origin.port}/x.png`));
    expect(error).toMatchObject({
      status: 403,
      code: 'SOURCE_URL_FORBIDDEN',
      param: 'url',
      detail: 'the host other.test, which is not in SOURCE_ALLOWED_HOSTS',
    });
    expect(calls).toEqual([]);
    expect(origin.seen).toHaveLength(0);
  });

  it('refuses a redirect to a host off the list with 403', async () => {
    let port = 0;
    const { origin, fetch } = await setup((image) => (req, res) => {
      if (req.headers.host?.startsWith('a.allowed.test')) {
        res.writeHead(302, { location: `http://other.test:${port}/x.png` }).end();
      } else serveImage(image)(req, res);
    });
    port = origin.port;
    const error = await rejection(fetch.fetch(`http://a.allowed.test:${port}/x.png`));
    expect(error).toMatchObject({
      status: 403,
      code: 'SOURCE_URL_FORBIDDEN',
      detail: 'the origin redirected to other.test, which is not in SOURCE_ALLOWED_HOSTS',
    });
    expect(origin.seen).toHaveLength(1);
  });
});

describe('the URL → source mapping', () => {
  /** An origin whose image can change, honouring If-None-Match like a CDN would. */
  async function versionedOrigin() {
    const state = { image: await makeImage(32, 24, { seed: 1 }), etag: '"v1"', hold: undefined as Promise<void> | undefined };
    const origin = await startOrigin(async (req, res) => {
      await state.hold;
      if (req.headers['if-none-match'] === state.etag) return void res.writeHead(304, { etag: state.etag }).end();
      serveImage(state.image, { etag: state.etag })(req, res);
    });
    return { origin, state };
  }

  it('answers from the mapping within the TTL, without asking the origin', async () => {
    const { origin } = await versionedOrigin();
    const { origins } = await sources(PRIVATE, { ttlSeconds: 60 });
    const first = await origins.resolve(origin.url('/img.png'));
    const second = await origins.resolve(origin.url('/img.png'));
    expect(second).toEqual({ info: first.info, created: false, cached: true });
    expect(origin.seen).toHaveLength(1);
  });

  it('revalidates after the TTL with If-None-Match; a 304 keeps the hash', async () => {
    const { origin } = await versionedOrigin();
    let clock = 1_000_000;
    const { origins } = await sources(PRIVATE, { ttlSeconds: 60, now: () => clock });
    const first = await origins.resolve(origin.url('/img.png'));
    clock += 61_000;
    const second = await origins.resolve(origin.url('/img.png'));
    expect(second).toEqual({ info: first.info, created: false, cached: true });
    expect(origin.seen).toHaveLength(2);
    expect(origin.seen[1]?.headers['if-none-match']).toBe('"v1"');
    // The 304 refreshed the mapping: within the TTL again, no request.
    clock += 30_000;
    await origins.resolve(origin.url('/img.png'));
    expect(origin.seen).toHaveLength(2);
  });

  it('stores a changed image under its new hash after the TTL', async () => {
    const { origin, state } = await versionedOrigin();
    let clock = 1_000_000;
    const { origins } = await sources(PRIVATE, { ttlSeconds: 60, now: () => clock });
    const first = await origins.resolve(origin.url('/img.png'));
    state.image = await makeImage(32, 24, { seed: 2 });
    state.etag = '"v2"';
    clock += 61_000;
    const second = await origins.resolve(origin.url('/img.png'));
    expect(second).toMatchObject({ created: true, cached: false });
    expect(second.info.hash).toBe(sha256(state.image));
    expect(second.info.hash).not.toBe(first.info.hash);
    expect(origin.seen[1]?.headers['if-none-match']).toBe('"v1"');
  });

  it('revalidates every time with ttlSeconds 0', async () => {
    const { origin } = await versionedOrigin();
    const { origins } = await sources(PRIVATE, { ttlSeconds: 0 });
    await origins.resolve(origin.url('/img.png'));
    await origins.resolve(origin.url('/img.png'));
    expect(origin.seen.map((r) => r.headers['if-none-match'])).toEqual([undefined, '"v1"']);
  });

  it('shares one origin request among concurrent resolves of a URL', async () => {
    const { origin, state } = await versionedOrigin();
    let release!: () => void;
    state.hold = new Promise((resolve) => (release = resolve));
    const { origins } = await sources(PRIVATE);
    const arrived = origin.nextRequest();
    const all = Promise.all([1, 2, 3].map(() => origins.resolve(origin.url('/img.png'))));
    await arrived;
    release();
    const results = await all;
    expect(new Set(results.map((r) => r.info.hash)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(origin.seen).toHaveLength(1);
  });
});
