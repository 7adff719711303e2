/**
 * Hostile input through the real app (real config, sharp, disk, the local engine behind it):
 * random and malformed URLs, headers, methods and upload bodies never make a 5xx, a stack trace,
 * an HTML error page or an engine run, and every refusal is a problem+json a client can act on.
 * Then the upload abuses one by one: decompression bombs (pixels and Content-Encoding), truncated
 * images, empty bodies, unsupported encodings, multipart forms, JSON.
 *
 * How the properties never reach the engine: an engine runs only for a GET of `/upscale/<hash>`
 * whose hash is a registered source and whose query parses. The only registered source during the
 * properties is `known`; every GET whose path names it (in any spelling the router could decode
 * to it) starts its query with `zz-poison=1`, a key the parameter table does not know, so the
 * parser refuses the query before the pipeline. HEADs may carry valid queries: a HEAD never
 * starts engine work. Random hashes are not registered (404 after parsing). Origin URLs are
 * limited to `hostile.invalid` (RFC 6761: never resolves), which no generated input names, so
 * `POST /sources {"url"}` and `/upscale/url/…` are refused before any connection.
 * `server.engineCalls()` is asserted 0 after every run, so a counterexample shrinks to its cause.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { brotliCompressSync, crc32, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import sharp from 'sharp';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PARAMS, RESERVED_KEYS, type ParamSpec } from '../../src/params/table.js';
import { startTestServer, stopTestServer, type TestServer } from '../helpers/app.js';
import { makeImage } from '../helpers/images.js';

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'OPTIONS';

interface Sent {
  method: Method;
  /** Path and query, as handed to supertest (it percent-encodes what HTTP cannot carry raw). */
  url: string;
  headers: Record<string, string>;
  body?: Buffer;
}

interface Answer {
  status: number;
  headers: Record<string, string | undefined>;
  /** The body's bytes exactly as received. */
  body: Buffer;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Collects the body's bytes whatever the content type, so every answer is checked as sent. */
function rawBody(res: IncomingMessage, done: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
  res.on('error', (error) => done(error, Buffer.concat(chunks)));
}

async function send(server: TestServer, sent: Sent): Promise<Answer> {
  const agent = request(server.app);
  let req =
    sent.method === 'GET' ? agent.get(sent.url)
    : sent.method === 'HEAD' ? agent.head(sent.url)
    : sent.method === 'POST' ? agent.post(sent.url)
    : sent.method === 'PUT' ? agent.put(sent.url)
    : sent.method === 'DELETE' ? agent.delete(sent.url)
    : sent.method === 'PATCH' ? agent.patch(sent.url)
    : agent.options(sent.url);
  for (const [name, value] of Object.entries(sent.headers)) req = req.set(name, value);
  // superagent's types describe the browser's string parser; in Node a parser gets the response stream.
  req = req.redirects(0).buffer(true).parse(rawBody as never);
  // Bytes as given: without this superagent would JSON- or form-encode a Buffer by Content-Type.
  if (sent.body !== undefined) req = req.serialize((body: unknown) => body as string).send(sent.body as never);
  const res = await req;
  // A HEAD answer is never parsed: nothing came after its head.
  const body = Buffer.isBuffer(res.body) ? res.body : Buffer.alloc(0);
  return { status: res.status, headers: res.headers as Record<string, string | undefined>, body };
}

// ---------------------------------------------------------------------------------------------
// What every answer must look like.

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** A stack frame, raw or JSON-escaped: `\n    at fn (/work/src/x.ts:12:3)`. */
const STACK_FRAME = /(?:^|\n|\\n)\s*at [^\n]*\.(?:ts|js|mjs|cjs):\d+/;
const ERROR_PREFIX = /^\s*(?:[A-Z]\w*)?Error:/;

const PARAM_KEYS = (Object.entries(PARAMS) as [string, ParamSpec][]).flatMap(([name, spec]) => [name, ...(spec.aliases ?? [])]);
/** What a 400's `param` may name besides the query's own keys: path parts, body parts, limits. */
const NAMED_PARAMS = new Set<string>([
  ...PARAM_KEYS,
  ...RESERVED_KEYS,
  'hash',
  'url',
  'body',
  'file',
  'Content-Type',
  'Content-Encoding',
  'MAX_URL_LENGTH',
  'MAX_QUERY_LENGTH',
  'MAX_HEADER_BYTES',
  'SOURCE_MAX_BYTES',
  'SOURCE_MAX_PIXELS',
  'OUTPUT_MAX_PIXELS',
]);

/** The URL as the server receives it (supertest parses it with WHATWG URL first). */
const onWire = (url: string) => new URL(`http://127.0.0.1${url}`);

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function checkAnswer(server: TestServer, sent: Sent, answer: Answer): void {
  const { status, headers, body } = answer;
  const context = `${sent.method} ${sent.url.slice(0, 300)} → ${status} ${body.toString('utf8').slice(0, 300)}`;
  expect(status, context).toBeGreaterThanOrEqual(200);
  expect(status, context).toBeLessThan(500);
  expect(headers['x-content-type-options'], context).toBe('nosniff');
  // The one HTML answer is the playground page, with its own locked-down CSP; nothing else is HTML.
  if (/html/i.test(String(headers['content-type'] ?? ''))) {
    expect(status, context).toBe(200);
    expect(onWire(sent.url).pathname, context).toMatch(/^\/+$/);
    expect(headers['content-security-policy'], context).toMatch(/default-src 'none'; script-src 'self'/);
  }

  // The request id: a sane one is echoed (as Node hands it over, without surrounding blanks),
  // anything else is replaced by a generated uuid.
  const sentId = sent.headers['X-Request-Id']?.replace(/^[ \t]+|[ \t]+$/g, '');
  const echoedId = headers['x-request-id'];
  if (sentId !== undefined && SAFE_REQUEST_ID.test(sentId)) expect(echoedId, context).toBe(sentId);
  else expect(echoedId, context).toMatch(UUID);

  if (sent.method === 'HEAD') expect(body.length, context).toBe(0);
  const isImage = /^image\//.test(headers['content-type'] ?? '');
  if (!isImage) {
    const text = body.toString('utf8');
    expect(text, context).not.toMatch(STACK_FRAME);
    expect(text, context).not.toMatch(ERROR_PREFIX);
  }

  if (status >= 400) {
    expect(headers['content-type'], context).toMatch(/^application\/problem\+json/);
    if (status === 405) expect(headers['allow'], context).toMatch(/^(GET, HEAD|POST)$/);
    if (sent.method !== 'HEAD') {
      const problem = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      expect(problem.status, context).toBe(status);
      expect(problem.code, context).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(typeof problem.detail, context).toBe('string');
      expect(problem.detail, context).not.toBe('');
      expect(problem.detail, context).not.toMatch(ERROR_PREFIX);
      expect(problem.request_id, context).toBe(echoedId);
      expect(problem).not.toHaveProperty('stack');
      if (status === 400) {
        // The query's keys, read as the server reads them (the text after the first `?`; a second
        // leading `?` is then dropped by URLSearchParams) and as WHATWG URL does.
        const search = onWire(sent.url).search;
        const queryKeys = [...new URLSearchParams(search.slice(1)).keys(), ...new URLSearchParams(search).keys()];
        expect(typeof problem.param, context).toBe('string');
        expect(NAMED_PARAMS.has(problem.param as string) || queryKeys.includes(problem.param as string), context).toBe(true);
      }
      if (status === 414) expect(['MAX_URL_LENGTH', 'MAX_QUERY_LENGTH'], context).toContain(problem.param);
    }
  }
  if (status === 200 || status === 201) {
    if (sent.method === 'POST' && onWire(sent.url).pathname === '/sources') {
      const stored = JSON.parse(body.toString('utf8')) as { hash: string };
      expect(stored.hash, context).toMatch(/^[0-9a-f]{64}$/);
      expect(headers['location'], context).toBe(`/sources/${stored.hash}`);
    }
  }
  expect(server.engineCalls(), context).toBe(0);
}

// ---------------------------------------------------------------------------------------------
// Generators.

const HEX = fc.constantFrom(...'0123456789abcdef');
const hex64 = fc.string({ unit: HEX, minLength: 64, maxLength: 64 });

/** Raw URL text, inserted as is: percent-encoding junk, number spellings, separators, unicode. */
const JUNK = [
  '', '%', '%%', '%zz', '%0', '%00', '%2', '%u0041', '%C0%AF', '%E0%A4%A', '%FF%FE', '%F0%9F%92%A5', '%2F', '%26', '%3D',
  '%23', '%3F', '%2e%2e', '+', ' ', '..', '../', '\\', '/', '?', ';', ',', '&', '=', '==', '"', "'", '<script>', '[]', '{}',
  '[0]', '__proto__', 'constructor', 'toString', 'NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '1e1', '1E2', '0x10',
  '0b1', '0o7', '-0', '+0', '00', '0.', '.5', '5.', '1_000', '١', '９', '1,5', '99999999999999999999999999', '4294967296',
  '-1', '9007199254740993', 'true', 'null', 'undefined', 'auto', 'webp', 'AVIF', '💥', '\u0000', '\u202e', 'ﬀ',
];
const JUNK_KEYS = [
  ...JUNK, 'SCALE', 'Scale', 'scale ', ' scale', 'scale[]', 'scale[0]', 'scale.x', 'w%00', '%73cale', 'sc%61le', 'zz',
  'format[]', 'sig[]', 'preset%00',
];

const numberText = fc.oneof(
  fc.double().map((n) => String(n)),
  fc.double().map((n) => n.toExponential()),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map((n) => String(n)),
  fc.integer().map((n) => String(n)),
);

const junkValue = fc.oneof(
  { weight: 9, arbitrary: fc.constantFrom(...JUNK) },
  { weight: 6, arbitrary: numberText },
  { weight: 6, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 40 }) },
  // Past MAX_QUERY_LENGTH (6144) and MAX_URL_LENGTH (8192): 414s.
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(2100), '9'.repeat(7000), 'a'.repeat(9000)) },
);

/** A value the table accepts for `spec`, encoded for the query: gets the parser past the value. */
function validValue(spec: ParamSpec): fc.Arbitrary<string> {
  switch (spec.kind) {
    case 'int': {
      const step = spec.step ?? 1;
      const max = Math.min(spec.max, 0x7fffffff);
      return fc.integer({ min: Math.ceil(spec.min / step), max: Math.floor(max / step) }).map((n) => String(n * step));
    }
    case 'float':
      return fc.double({ min: spec.min, max: spec.max, noNaN: true }).map((n) => String(n));
    case 'enum':
      return fc.constantFrom(...spec.values).map((v) => encodeURIComponent(v));
    case 'bool':
      return fc.constantFrom('true', 'false', '1', '0');
    case 'text':
      return spec.format
        ? fc.constantFrom('', 'https://example.com/a.safetensors', 'http://x', 'javascript:alert(1)', 'file:///etc/passwd').map(encodeURIComponent)
        : fc.string({ unit: 'grapheme', maxLength: 30 }).map(encodeURIComponent);
    case 'hash':
      return hex64;
  }
}

const knownKey = fc.constantFrom(...PARAM_KEYS, ...RESERVED_KEYS);
const keyArb = fc.oneof(
  { weight: 4, arbitrary: knownKey },
  { weight: 2, arbitrary: fc.constantFrom(...JUNK_KEYS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
);
const SPEC_OF = new Map<string, ParamSpec>(
  (Object.entries(PARAMS) as [string, ParamSpec][]).flatMap(([name, spec]) => [name, ...(spec.aliases ?? [])].map((k) => [k, spec] as const)),
);
const pairArb = fc.oneof(
  {
    weight: 8,
    arbitrary: keyArb.chain((key) => {
      const spec = SPEC_OF.get(key);
      const value = spec ? fc.oneof(validValue(spec), junkValue) : junkValue;
      return value.map((v) => `${key}=${v}`);
    }),
  },
  { weight: 1, arbitrary: keyArb },
  { weight: 1, arbitrary: fc.constantFrom('=', '==', '&', '', '=&=', '%26=%3D', '?', ';', '=1', '==1') },
);
/** Known keys with accepted values only: gets past the parser (to a 404, a 304 or a HEAD's 200). */
const validQueryArb = fc
  .uniqueArray(knownKey.filter((k) => SPEC_OF.has(k)), { maxLength: 4, selector: (k) => SPEC_OF.get(k) })
  .chain((keys) => fc.tuple(...keys.map((k) => validValue(SPEC_OF.get(k) as ParamSpec).map((v) => `${k}=${v}`))))
  .map((pairs) => pairs.join('&'));
const queryArb = fc.oneof(
  { weight: 3, arbitrary: fc
    .tuple(fc.array(pairArb, { maxLength: 8 }), fc.boolean(), fc.constantFrom('&', '&', '&', ';', '&&'))
    .map(([pairs, repeatFirst, separator]) => (repeatFirst && pairs.length > 0 ? [...pairs, pairs[0]] : pairs).join(separator)) },
  { weight: 2, arbitrary: validQueryArb },
);

const segmentArb = fc.oneof(
  hex64,
  hex64.map((h) => h.toUpperCase()),
  hex64.map((h) => h.slice(0, 63)),
  hex64.map((h) => `${h}0`),
  fc.constantFrom(...JUNK.filter((s) => s !== '')),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.webSegment(),
);

interface Target {
  path: string;
  /** The path names the registered source: a GET must not parse (see the file comment). */
  known: boolean;
}

function knownPaths(known: string): string[] {
  const first = `%${known.charCodeAt(0).toString(16)}`;
  return [
    `/upscale/${known}`,
    `/upscale/${known}/`,
    `/UPSCALE/${known}`,
    `/Upscale/${known}`,
    `/upscale/${known.toUpperCase()}`,
    `/upscale/${first}${known.slice(1)}`,
    `/upscale/${known}%2F`,
    `/upscale/${known}%00`,
    `/upscale/${known}/extra`,
    `/upscale//${known}`,
    `/sources/${known}`,
  ];
}

function targetArb(known: string): fc.Arbitrary<Target> {
  const unknown = (path: fc.Arbitrary<string>) => path.map((p) => ({ path: p, known: false }));
  return fc
    .oneof(
      { weight: 4, arbitrary: unknown(segmentArb.map((s) => `/upscale/${s}`)) },
      { weight: 4, arbitrary: fc.constantFrom(...knownPaths(known)).map((p) => ({ path: p, known: true })) },
      { weight: 2, arbitrary: unknown(segmentArb.map((s) => `/sources/${s}`)) },
      { weight: 1, arbitrary: unknown(segmentArb.map((s) => `/upscale/url/${s}`)) },
      {
        weight: 1,
        arbitrary: unknown(fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/upscale/url/${Buffer.from(s).toString('base64url')}`)),
      },
      {
        weight: 2,
        arbitrary: unknown(
          fc.constantFrom(
            '/', '//', '/../', '/./', '/sources', '/sources/', '/upscale', '/upscale/', '/upscale/url', '/upscale/url/',
            '/healthz', '/readyz', '/metrics', '/upscale/..%2F..%2Fetc%2Fpasswd', '/upscale/%2e%2e%2f', '/sources/..%5C..%5C',
            '//upscale//', '/%2e%2e/%2e%2e/', '/upscale/../sources', '/upscale/url/aHR0cDovL2xvY2FsaG9zdC8',
            '/upscale/url/aHR0cDovLzEyNy4wLjAuMS8', '/upscale/url/ZmlsZTovLy9ldGMvcGFzc3dk', '/%', '/%zz', '/%00',
          ),
        ),
      },
      { weight: 1, arbitrary: unknown(fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`))) },
    )
    .map((t) => {
      // `#` would end the URL before the query (and its poison): send it encoded.
      const path = t.path.replaceAll('#', '%23');
      // Safety net: any spelling that decodes to the registered hash counts as known.
      const decoded = safeDecode(onWire(path).pathname).toLowerCase();
      return { path, known: t.known || decoded.includes(known) };
    });
}

/** Header values Node's client will send: tab, printable ASCII and Latin-1. */
const headerText = fc.string({
  unit: fc
    .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(9))
    .map((c) => String.fromCharCode(c)),
  maxLength: 40,
});
const acceptArb = fc.option(
  fc.oneof(
    fc.constantFrom(
      'image/avif', 'image/webp', 'image/avif;q=0', 'image/webp;q=1.0001', 'image/*', '*/*', 'text/html', ',,,', ';q=',
      'image/avif;q=NaN', 'IMAGE/AVIF;Q=1', 'image/webp;q=0, image/webp', 'image/avif;q=-1',
    ),
    headerText,
  ),
  { nil: undefined },
);
const ifNoneMatchArb = fc.option(
  fc.oneof(
    fc.constant('*'),
    hex64.map((h) => `"${h}"`),
    hex64.map((h) => `W/"${h}"`),
    fc.constantFrom('""', 'W/', ',', '"', '*, "x"', ' * '),
    headerText,
  ),
  { nil: undefined },
);
const requestIdArb = fc.option(
  fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9._:@/+=-]{1,128}$/),
    fc.constantFrom('abc-123', 'a b', 'x'.repeat(129), 'y'.repeat(128), '<script>', 'id\u00e9', ' padded ', '\t', ''),
    headerText,
  ),
  { nil: undefined },
);
const methodArb = fc.constantFrom<Method>('GET', 'GET', 'GET', 'HEAD', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS');

function headersOf(values: { accept?: string; ifNoneMatch?: string; requestId?: string }): Record<string, string> {
  const headers: Record<string, string> = {};
  if (values.accept !== undefined) headers['Accept'] = values.accept;
  if (values.ifNoneMatch !== undefined) headers['If-None-Match'] = values.ifNoneMatch;
  if (values.requestId !== undefined) headers['X-Request-Id'] = values.requestId;
  return headers;
}

function urlRequestArb(known: string): fc.Arbitrary<Sent> {
  return fc
    .record({
      method: methodArb,
      target: targetArb(known),
      query: fc.option(queryArb, { nil: undefined }),
      accept: acceptArb,
      ifNoneMatch: ifNoneMatchArb,
      requestId: requestIdArb,
    })
    .map(({ method, target, query, ...values }) => {
      const poisoned = method === 'GET' && target.known;
      const parts = [...(poisoned ? ['zz-poison=1'] : []), ...(query !== undefined ? [query.replaceAll('#', '%23')] : [])];
      const url = parts.length > 0 || query !== undefined ? `${target.path}?${parts.join('&')}` : target.path;
      // supertest's own server keeps Node's 16 KiB head limit (the real one is tested in
      // http-edge.test.ts): past MAX_URL_LENGTH (8192), short of that.
      return { method, url: url.slice(0, 12_000), headers: headersOf(values) };
    });
}

/** A well-formed multipart body (closing boundary included) of fields and files. */
function multipart(boundary: string, parts: { name: string; filename?: string; data: Buffer }[]): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename !== undefined ? `; filename="${part.filename}"` : ''}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n\r\n`), part.data, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/json; charset=utf-16',
  'application/json; charset=bogus', 'APPLICATION/JSON', 'multipart/form-data', 'multipart/form-data; boundary=',
  'multipart/form-data; boundary=XyZ', 'image/png', 'image/jpeg', 'image/svg+xml', 'text/plain', 'application/octet-stream',
  'application/x-www-form-urlencoded', '*/*', ';', 'image/',
];
const ENCODINGS = ['identity', 'gzip', 'deflate', 'br', 'zstd', 'compress', 'x-gzip', 'gzip, gzip', 'GZIP'];
/** JSON `url` values: never http(s) to `hostile.invalid`, the one allowed (and unresolvable) host. */
const URL_VALUES = [
  'http://127.0.0.1/', 'http://[::1]/', 'http://localhost/a.png', 'http://169.254.169.254/latest/meta-data/',
  'file:///etc/passwd', 'gopher://x/', 'javascript:alert(1)', 'data:image/png;base64,iVBORw0KGgo=', 'http://user:pass@example.com/',
  'https://example.com/a.png', 'http://', 'https://%zz/', '//example.com/a.png', '/etc/passwd', '', ' ', 'http://0x7f000001/',
];

function uploadArb(images: { png: Buffer; jpeg: Buffer }): fc.Arbitrary<Sent> {
  const bytes = fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b));
  const image = fc
    .tuple(fc.constantFrom(images.png, images.jpeg), fc.nat(), fc.option(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { nil: undefined }))
    .map(([data, cut, flip]) => {
      const out = Buffer.from(data.subarray(0, 1 + (cut % data.length)));
      if (flip) out[flip[0] % out.length] = flip[1];
      return out;
    });
  const json = fc.oneof(
    fc.json().map((s) => Buffer.from(s)),
    fc.record({ url: fc.oneof(fc.constantFrom(...URL_VALUES), fc.jsonValue()) }, { requiredKeys: [] }).map((o) => Buffer.from(JSON.stringify(o))),
    fc.json().map((s) => Buffer.from(s.slice(0, Math.max(0, s.length - 1)))),
  );
  const form = fc
    .array(
      fc.record({
        name: fc.constantFrom('file', 'image', 'a', '', 'file[]'),
        filename: fc.option(fc.constantFrom('a.png', '', '../../etc/passwd', 'x"y'), { nil: undefined }),
        data: fc.oneof(bytes, image, fc.constant(images.png)),
      }),
      { maxLength: 3 },
    )
    .map((parts) => multipart('XyZ', parts));
  const encode = (encoding: string | undefined, body: Buffer) =>
    encoding === 'gzip' ? gzipSync(body) : encoding === 'deflate' ? deflateSync(body) : encoding === 'br' ? brotliCompressSync(body) : body;
  return fc
    .oneof(
      // Anything goes: random content type, encoding and bytes.
      fc.record({
        contentType: fc.option(fc.oneof(fc.constantFrom(...CONTENT_TYPES), headerText), { nil: undefined }),
        contentEncoding: fc.option(fc.constantFrom(...ENCODINGS), { nil: undefined }),
        body: fc.oneof(bytes, json, image),
      }),
      fc.record({ contentType: fc.constantFrom('application/json', 'application/json; charset=utf-8'), body: json }),
      fc.record({ contentType: fc.constant('multipart/form-data; boundary=XyZ'), body: form }),
      fc.record({ contentType: fc.option(fc.constantFrom('image/png', 'image/jpeg', 'application/octet-stream'), { nil: undefined }), body: image }),
      // Really compressed bodies, as the encoding says.
      fc
        .record({ contentEncoding: fc.constantFrom('gzip', 'deflate', 'br'), contentType: fc.constantFrom('image/png', 'application/json'), body: fc.oneof(image, json) })
        .map((r) => ({ ...r, body: encode(r.contentEncoding, r.body) })),
    )
    .chain((shape) =>
      fc.record({ requestId: requestIdArb }).map(({ requestId }) => {
        const headers = headersOf({ requestId });
        if (shape.contentType !== undefined) headers['Content-Type'] = shape.contentType;
        if ('contentEncoding' in shape && shape.contentEncoding !== undefined) headers['Content-Encoding'] = shape.contentEncoding;
        return { method: 'POST' as const, url: '/sources', headers, body: shape.body };
      }),
    );
}

// ---------------------------------------------------------------------------------------------

describe('random and malformed requests', () => {
  let server: TestServer;
  let known: string;
  let images: { png: Buffer; jpeg: Buffer };

  beforeAll(async () => {
    server = await startTestServer({ SOURCE_ALLOWED_HOSTS: 'hostile.invalid', SOURCE_MAX_BYTES: '64KiB' });
    images = { png: await makeImage(8, 8), jpeg: await makeImage(8, 8, { format: 'jpeg' }) };
    const res = await request(server.app).post('/sources').set('Content-Type', 'image/png').send(images.png);
    expect(res.status).toBe(201);
    known = res.body.hash as string;
  });
  afterAll(() => stopTestServer(server));
  afterEach(() => {
    expect(server.engineCalls()).toBe(0);
  });

  it('URLs, queries, methods and headers: never a 5xx, a stack trace or an engine run; refusals are problem+json', async () => {
    await fc.assert(
      fc.asyncProperty(urlRequestArb(known), async (sent) => {
        checkAnswer(server, sent, await send(server, sent));
      }),
      { numRuns: 2000 },
    );
  });

  it('POST /sources bodies: random bytes, JSON, forms, cut and compressed images', async () => {
    await fc.assert(
      fc.asyncProperty(uploadArb(images), async (sent) => {
        checkAnswer(server, sent, await send(server, sent));
      }),
      { numRuns: 600 },
    );
  });

  it('the checks themselves see what they look for: a valid HEAD is a 200 image answer, junk is a 400 naming its key', async () => {
    // Guards the properties against passing vacuously (every request a 404, say).
    const head = await send(server, { method: 'HEAD', url: `/upscale/${known}?format=webp`, headers: { 'X-Request-Id': 'abc-123' } });
    checkAnswer(server, { method: 'HEAD', url: `/upscale/${known}?format=webp`, headers: { 'X-Request-Id': 'abc-123' } }, head);
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toBe('image/webp');
    expect(head.headers['x-cache']).toBe('MISS');

    const sent: Sent = { method: 'GET', url: `/upscale/${known}?zz-poison=1&scale=1e400`, headers: {} };
    const junk = await send(server, sent);
    checkAnswer(server, sent, junk);
    expect(junk.status).toBe(400);
    expect(JSON.parse(junk.body.toString('utf8'))).toMatchObject({ code: 'INVALID_PARAM', param: 'zz-poison' });
  });

  it.each([
    ['/upscale/%zz', 'hash'],
    ['/upscale/%E0%A4%A', 'hash'],
    ['/sources/%', 'hash'],
    ['/upscale/url/%', 'url'],
  ])('%s (not valid percent-encoding) is a 400 naming %s', async (path, param) => {
    const res = await send(server, { method: 'GET', url: path, headers: {} });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({ status: 400, param });
  });

  it.each(['gzip', 'deflate', 'br'])(
    'a body that does not decode as Content-Encoding: %s is a 400 naming it',
    async (encoding) => {
      const res = await send(server, {
        method: 'POST',
        url: '/sources',
        headers: { 'Content-Type': 'image/png', 'Content-Encoding': encoding },
        body: images.png,
      });
      expect(res.status).toBe(400);
      const problem = JSON.parse(res.body.toString('utf8')) as { param?: string };
      expect(['body', 'Content-Encoding']).toContain(problem.param);
    },
  );
});

// ---------------------------------------------------------------------------------------------

/**
 * A PNG that declares `width`×`height` 1-bit grey pixels, every row present and zero: a few tens
 * of KB that inflate to width×height pixels. Made by hand, since sharp takes seconds to encode one.
 */
function pngBomb(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(4 + typed.length + 4); // length, type + data, crc
    out.writeUInt32BE(data.length, 0);
    typed.copy(out, 4);
    out.writeUInt32BE(crc32(typed) >>> 0, 4 + typed.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 1; // bit depth
  header[9] = 0; // greyscale
  const rows = Buffer.alloc((1 + Math.ceil(width / 8)) * height); // filter byte 0 + zero pixels per row
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const SOURCE_MAX_BYTES = 64 * 1024;

describe('upload abuse', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ SOURCE_MAX_BYTES: '64KiB' });
  });
  afterAll(() => stopTestServer(server));
  afterEach(() => {
    expect(server.engineCalls()).toBe(0);
  });

  const post = () => request(server.app).post('/sources');
  async function expectNotStored(hash: string) {
    const res = await request(server.app).get(`/sources/${hash}`);
    expect(res.status).toBe(404);
    expect(res.body.code).toBe('SOURCE_NOT_FOUND');
  }
  function expectProblem(res: request.Response, status: number, code: string) {
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status, code });
    expect(res.body.detail).toEqual(expect.any(String));
  }

  it('a decompression bomb (a 48 KB PNG declaring 20000×20000) is a 413 before it is decoded, and is not stored', { timeout: 5_000 }, async () => {
    const bomb = pngBomb(20_000, 20_000);
    expect(bomb.length).toBeLessThan(SOURCE_MAX_BYTES);
    const meta = await sharp(bomb, { limitInputPixels: false }).metadata();
    expect([meta.width, meta.height]).toEqual([20_000, 20_000]);

    const res = await post().set('Content-Type', 'image/png').send(bomb);
    expectProblem(res, 413, 'SOURCE_TOO_LARGE');
    expect(res.body.detail).toContain('SOURCE_MAX_PIXELS');
    await expectNotStored(sha256(bomb));
  });

  it('a gzip body past SOURCE_MAX_BYTES once inflated is a 413; a gzip PNG within it is stored under the inflated bytes', async () => {
    const inflated = Buffer.alloc(4 * 1024 * 1024, 7);
    const bomb = gzipSync(inflated);
    expect(bomb.length).toBeLessThan(SOURCE_MAX_BYTES);
    const res = await post().set('Content-Type', 'image/png').set('Content-Encoding', 'gzip').send(bomb);
    expectProblem(res, 413, 'SOURCE_TOO_LARGE');
    await expectNotStored(sha256(inflated));

    // The control: the encoding itself is accepted, so the 413 above is the limit's.
    const png = await makeImage(12, 10);
    const ok = await post().set('Content-Type', 'image/png').set('Content-Encoding', 'gzip').send(gzipSync(png));
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ hash: sha256(png), width: 12, height: 10, bytes: png.length });
  });

  it.each(['png', 'jpeg'] as const)('the first half of a real %s is a 415 and is not stored', async (format) => {
    const image = await makeImage(64, 48, { format });
    const half = image.subarray(0, Math.floor(image.length / 2));
    const res = await post().set('Content-Type', `image/${format}`).send(half);
    expectProblem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectNotStored(sha256(half));
    // The whole image is accepted: the refusal is the cut's.
    expect((await post().set('Content-Type', `image/${format}`).send(image)).status).toBe(201);
  });

  it('a zero-byte body is a 415 EMPTY_BODY', async () => {
    expectProblem(await post().set('Content-Type', 'image/png').send(Buffer.alloc(0)), 415, 'EMPTY_BODY');
    expectProblem(await post(), 415, 'EMPTY_BODY');
  });

  it.each(['zstd', 'compress'])('Content-Encoding: %s is a 415 UNSUPPORTED_ENCODING naming the header', async (encoding) => {
    const res = await post().set('Content-Type', 'image/png').set('Content-Encoding', encoding).send(await makeImage(8, 8));
    expectProblem(res, 415, 'UNSUPPORTED_ENCODING');
    expect(res.body.param).toBe('Content-Encoding');
  });

  it('a multipart upload is stored under the sha256 of the file', async () => {
    const png = await makeImage(9, 7, { seed: 3 });
    const res = await post().field('title', 'ignored').attach('file', png, 'a.png');
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ hash: sha256(png), width: 9, height: 7, format: 'png', bytes: png.length });
    const got = await request(server.app).get(`/sources/${sha256(png)}`).buffer(true);
    expect(got.status).toBe(200);
    expect(Buffer.compare(got.body as Buffer, png)).toBe(0);
  });

  it('multipart with two files, or with none, is a 400 naming file', async () => {
    const png = await makeImage(8, 8);
    const two = await post().attach('file', png, 'a.png').attach('other', png, 'b.png');
    expectProblem(two, 400, 'INVALID_PARAM');
    expect(two.body.param).toBe('file');
    const none = await post().field('file', 'not a file');
    expectProblem(none, 400, 'INVALID_PARAM');
    expect(none.body.param).toBe('file');
  });

  it('a multipart file over SOURCE_MAX_BYTES is a 413 and is not stored', async () => {
    const big = Buffer.alloc(SOURCE_MAX_BYTES + 1, 9);
    const res = await post().attach('file', big, 'big.png');
    expectProblem(res, 413, 'SOURCE_TOO_LARGE');
    await expectNotStored(sha256(big));
  });

  it('JSON {} is a 400 naming url; malformed JSON a 400 naming body', async () => {
    const empty = await post().set('Content-Type', 'application/json').send('{}');
    expectProblem(empty, 400, 'INVALID_PARAM');
    expect(empty.body.param).toBe('url');
    const malformed = await post().set('Content-Type', 'application/json').send('{"url":');
    expectProblem(malformed, 400, 'INVALID_PARAM');
    expect(malformed.body.param).toBe('body');
  });

  it('a JSON body over the 16 KiB JSON limit is a 413 that names that limit', async () => {
    const body = JSON.stringify({ url: `https://example.com/${'a'.repeat(20_000)}` });
    expect(body.length).toBeLessThan(SOURCE_MAX_BYTES);
    const res = await post().set('Content-Type', 'application/json').send(body);
    expect(res.status).toBe(413);
    expect(res.body.detail).not.toContain('SOURCE_MAX_BYTES');
    expect(`${res.body.detail} ${res.body.allowed ?? ''}`).toMatch(/16 ?KiB|16 ?kB|16384/i);
  });

  it('a multipart form cut inside its file part is a 400 and the process survives', async () => {
    const uncaught: Error[] = [];
    const onUncaught = (error: Error) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const png = await makeImage(8, 8);
      const cut = Buffer.concat([
        Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'),
        png.subarray(0, 40),
      ]);
      const res = await post().set('Content-Type', 'multipart/form-data; boundary=XyZ').serialize((b: unknown) => b as string).send(cut);
      expectProblem(res, 400, 'INVALID_PARAM');
      expect(res.body.param).toBe('body');
      // One more round trip: an error emitted after the answer has surfaced by now.
      expect((await request(server.app).get('/healthz')).status).toBe(200);
      expect(uncaught.map((e) => e.message)).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});
