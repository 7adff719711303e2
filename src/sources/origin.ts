/**
 * Images on an origin (`POST /sources {"url"}`, `/upscale/url/:b64url`): fetched through the
 * SSRF-guarded dispatcher of `security/ssrf.ts`, admitted by the source store like an upload, and
 * remembered per URL so a page full of `<img>` tags does not fetch the same image again.
 *
 * Two parts: `createOriginFetcher` is one fetch (URL rules, redirects followed hop by hop, limits,
 * origin outcome → error), `createOriginSources` maps URLs to content-addressed sources with
 * revalidation.
 */
import { LRUCache } from 'lru-cache';
import picomatch from 'picomatch';
import { request, type Dispatcher } from 'undici';
import type { Logger } from '../logger.js';
import { CONNECT_FAILURE_CODES, errorCodeOf } from '../net-errors.js';
import { InvalidParamError } from '../params/errors.js';
import { SourceUrlForbiddenError } from '../security/errors.js';
import { findAddressRefusal, type AddressRefusedError } from '../security/ssrf.js';
import { SingleFlight } from '../single-flight.js';
import { OriginNotFoundError, OriginTimeoutError, OriginUnavailableError, SourceTooLargeError } from './errors.js';
import type { SourceInfo, SourceStore } from './store.js';

export interface OriginFetcherOptions {
  /** Every connection goes through it: in production `createGuardedAgent`, which refuses private addresses. */
  dispatcher: Dispatcher;
  /**
   * Host globs (picomatch) matched against the URL's lower-cased hostname: `images.example.com`,
   * `*.example.org` (any depth of subdomain, not `example.org` itself). Every redirect hop is
   * checked too. Undefined or empty: any host (`SOURCE_ALLOWED_HOSTS`).
   */
  allowedHosts?: readonly string[];
  /** Largest image accepted, bytes; the body is cut off as soon as it passes this. */
  maxBytes: number;
  /** Time for the whole fetch, ms: every redirect hop, the headers and the full body. */
  timeoutMs: number;
  /** Redirects followed before giving up with 502. Default 3. */
  maxRedirects?: number;
  /** Sent as `User-Agent`. Default `clarity-cdn`. */
  userAgent?: string;
}

/** Validators from an earlier fetch of the same URL, for a conditional GET. */
export interface OriginValidators {
  etag?: string;
  lastModified?: string;
}

export type OriginFetch =
  | { status: 'fetched'; data: Buffer; etag?: string; lastModified?: string; finalUrl: string }
  | { status: 'not-modified' };

export interface OriginFetcher {
  /**
   * One GET of `url`, redirects followed. Throws `InvalidParamError` (400, param `url`) for a URL
   * that is not absolute http(s) without credentials, `SourceUrlForbiddenError` (403) for a host off
   * the allow-list or a non-public address, `SourceTooLargeError` (413), `OriginNotFoundError` (404),
   * `OriginUnavailableError` (502), `OriginTimeoutError` (504).
   */
  fetch(url: string, validators?: OriginValidators): Promise<OriginFetch>;
}

/** The statuses whose `Location` is followed; every one becomes a GET (we only ever GET). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** What the fetched bytes may be. The store decides what it accepts; this only steers content negotiation. */
const ACCEPT = 'image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8';

const SCHEMES = new Set(['http:', 'https:']);


/** Range names of `isPublicAddress`, as a sentence reads them; the rarer ones are named as they are. */
const RANGE_PHRASES: Record<string, string> = {
  loopback: 'a loopback address',
  private: 'a private address',
  linkLocal: 'a link-local address',
  carrierGradeNat: 'a carrier-grade NAT address',
  uniqueLocal: 'a unique-local address',
  unspecified: 'an unspecified address',
  broadcast: 'a broadcast address',
  multicast: 'a multicast address',
  reserved: 'a reserved address',
  invalid: 'an unparsable address',
};

const one = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/**
 * The error code only: a message can hold an internal host name or address (when private
 * origins are allowed), and a detail is public. Anything that is not a plain code is `ERROR`.
 */
function codeOf(error: unknown): string {
  const code = errorCodeOf(error);
  return code !== undefined && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'ERROR';
}

/** Stops reading a body we do not use; undici reports that as an error event, expected here. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

function refusalDetail(refusal: AddressRefusedError, redirected: boolean): string {
  const phrase = RANGE_PHRASES[refusal.range] ?? `an address in the ${refusal.range} range`;
  const subject = redirected ? 'the origin redirected to a host that' : 'the host';
  const verb = refusal.literal ? 'is' : 'resolves to';
  return (
    `${subject} ${verb} ${phrase}, which origin fetches may not reach ` +
    '(set SOURCE_ALLOW_PRIVATE=true for private origins)'
  );
}

/** Compiles the allow-list once; `undefined` when every host is allowed. */
function hostMatcher(globs: readonly string[] | undefined): ((host: string) => boolean) | undefined {
  if (!globs || globs.length === 0) return undefined;
  return picomatch(globs.map((glob) => glob.toLowerCase()));
}

export function createOriginFetcher(options: OriginFetcherOptions): OriginFetcher {
  const { dispatcher, maxBytes, timeoutMs } = options;
  const maxRedirects = options.maxRedirects ?? 3;
  const userAgent = options.userAgent ?? 'clarity-cdn';
  const isAllowedHost = hostMatcher(options.allowedHosts);

  /** The first URL: a caller's mistake is a 400 naming `url`. */
  function checkRequestUrl(raw: string): URL {
    const allowed = 'an absolute http: or https: URL without credentials';
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new InvalidParamError({ detail: 'the source URL is not an absolute URL', param: 'url', allowed });
    }
    if (!SCHEMES.has(url.protocol)) {
      throw new InvalidParamError({ detail: `${url.protocol} URLs cannot be fetched`, param: 'url', allowed });
    }
    if (url.username || url.password) {
      throw new InvalidParamError({ detail: 'the source URL may not carry credentials', param: 'url', allowed });
    }
    checkHost(url, false);
    return url;
  }

  /** A `Location`: the origin's choice, so a refusal is a 403 (or a 502 for one that is not a URL). */
  function checkRedirect(location: string | undefined, from: URL, status: number): URL {
    let url: URL;
    try {
      if (!location) throw new Error('no Location');
      url = new URL(location, from);
    } catch {
      throw new OriginUnavailableError({ detail: `the origin answered HTTP ${status} without a valid Location` });
    }
    if (!SCHEMES.has(url.protocol)) {
      throw new SourceUrlForbiddenError({
        detail: `the origin redirected to a ${url.protocol} URL; only http: and https: URLs are fetched`,
      });
    }
    if (url.username || url.password) {
      throw new SourceUrlForbiddenError({ detail: 'the origin redirected to a URL with credentials' });
    }
    checkHost(url, true);
    return url;
  }

  function checkHost(url: URL, redirected: boolean): void {
    if (!isAllowedHost) return;
    // WHATWG URL has lower-cased it already; a trailing dot names the same host in DNS.
    const host = url.hostname.toLowerCase().replace(/\.$/, '');
    if (isAllowedHost(host)) return;
    throw new SourceUrlForbiddenError({
      detail: `${redirected ? 'the origin redirected to' : 'the host'} ${host}, which is not in SOURCE_ALLOWED_HOSTS`,
    });
  }

  /** Maps a failure of the exchange; the timeout wins, whatever undici made of the abort. */
  function transportError(error: unknown, signal: AbortSignal, redirected: boolean, phase: 'connect' | 'body'): Error {
    if (signal.aborted) {
      return new OriginTimeoutError({ detail: `the origin did not answer within ${timeoutMs} ms`, cause: error });
    }
    const refusal = findAddressRefusal(error);
    if (refusal) return new SourceUrlForbiddenError({ detail: refusalDetail(refusal, redirected), cause: error });
    const code = codeOf(error);
    const detail =
      phase === 'body'
        ? `the connection to the origin failed while reading the image: ${code}`
        : CONNECT_FAILURE_CODES.has(code) || code === 'ECONNRESET'
          ? `could not connect to the origin: ${code}`
          : `the request to the origin failed: ${code}`;
    return new OriginUnavailableError({ detail, cause: error });
  }

  function tooLarge(detail: string): SourceTooLargeError {
    return new SourceTooLargeError({
      detail: `${detail}; the limit is ${maxBytes} bytes (SOURCE_MAX_BYTES)`,
      allowed: `at most ${maxBytes} bytes`,
    });
  }

  async function readBody(res: Dispatcher.ResponseData, signal: AbortSignal, redirected: boolean): Promise<Buffer> {
    const declared = Number(one(res.headers['content-length']));
    if (Number.isFinite(declared) && declared > maxBytes) {
      discard(res.body);
      throw tooLarge(`the origin's image is ${declared} bytes`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        total += buf.length;
        // Checked before keeping the chunk: at most maxBytes are ever held.
        if (total > maxBytes) throw tooLarge(`the origin's image is larger than that`);
        chunks.push(buf);
      }
    } catch (error) {
      discard(res.body);
      if (error instanceof SourceTooLargeError) throw error;
      throw transportError(error, signal, redirected, 'body');
    }
    return Buffer.concat(chunks, total);
  }

  return {
    async fetch(raw, validators) {
      let url = checkRequestUrl(raw);
      // One clock for everything: a slow redirect chain cannot buy each hop a fresh timeout.
      const signal = AbortSignal.timeout(timeoutMs);
      const headers: Record<string, string> = {
        accept: ACCEPT,
        // A compressed body would be counted compressed and stored compressed; images barely compress anyway.
        'accept-encoding': 'identity',
        'user-agent': userAgent,
      };
      if (validators?.etag) headers['if-none-match'] = validators.etag;
      if (validators?.lastModified) headers['if-modified-since'] = validators.lastModified;

      for (let hop = 0; ; hop++) {
        const redirected = hop > 0;
        let res: Dispatcher.ResponseData;
        try {
          // No redirect interceptor on the dispatcher: undici answers a 3xx as it is, and each hop
          // comes back here to be checked before it is followed.
          res = await request(url, { method: 'GET', headers, dispatcher, signal });
        } catch (error) {
          throw transportError(error, signal, redirected, 'connect');
        }
        const status = res.statusCode;

        if (REDIRECTS.has(status)) {
          discard(res.body);
          if (hop >= maxRedirects) {
            throw new OriginUnavailableError({ detail: `the origin redirected more than ${maxRedirects} times` });
          }
          url = checkRedirect(one(res.headers.location), url, status);
          continue;
        }
        if (status === 200 || status === 203) {
          const data = await readBody(res, signal, redirected);
          const etag = one(res.headers.etag);
          const lastModified = one(res.headers['last-modified']);
          return {
            status: 'fetched',
            data,
            ...(etag ? { etag } : {}),
            ...(lastModified ? { lastModified } : {}),
            finalUrl: url.href,
          };
        }
        discard(res.body);
        if (status === 304 && validators && (validators.etag || validators.lastModified)) {
          return { status: 'not-modified' };
        }
        if (status === 404 || status === 410) {
          throw new OriginNotFoundError({ detail: `the origin answered HTTP ${status}` });
        }
        // 5xx, 4xx, a 304 nobody asked for, a 206 for a range nobody asked for: not an image we can use.
        throw new OriginUnavailableError({ detail: `the origin answered HTTP ${status}` });
      }
    },
  };
}

export interface OriginSourcesOptions {
  fetcher: OriginFetcher;
  store: Pick<SourceStore, 'put' | 'head'>;
  /**
   * How long a URL's mapping to its source is trusted without asking the origin, seconds. After
   * it, a conditional GET revalidates. 0: revalidate on every resolve.
   */
  ttlSeconds: number;
  /** URLs remembered (least recently used go first). Default 10000; an entry is ~200 bytes plus the URL. */
  maxEntries?: number;
  /** Clock, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  logger: Logger;
}

export interface ResolvedOrigin {
  info: SourceInfo;
  /** True when these bytes became a new source in the store. */
  created: boolean;
  /** True when no bytes were downloaded: answered from the mapping, within its TTL or confirmed by a 304. */
  cached: boolean;
}

export interface OriginSources {
  /** The source for the image at `url`: fetched, stored and remembered, or known already. Errors as `OriginFetcher.fetch` and `SourceStore.put`. */
  resolve(url: string): Promise<ResolvedOrigin>;
}

interface OriginEntry {
  hash: string;
  etag?: string;
  lastModified?: string;
  /** When the origin last confirmed these bytes, ms since the epoch. */
  fetchedAt: number;
}

/** The key a URL is remembered under: the WHATWG serialization, so `HTTP://A.com` and `http://a.com/` are one. */
function urlKey(url: string): string {
  try {
    return new URL(url).href;
  } catch {
    return url; // the fetcher refuses it with the proper 400
  }
}

/** Only the origin of a URL goes into logs: query strings carry signatures and tokens (presigned S3 URLs). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'invalid';
  }
}

export function createOriginSources(options: OriginSourcesOptions): OriginSources {
  const { fetcher, store, logger } = options;
  const ttlMs = options.ttlSeconds * 1000;
  const now = options.now ?? Date.now;
  // Not lru-cache's own ttl: a stale entry is still wanted, for its validators.
  const entries = new LRUCache<string, OriginEntry>({ max: options.maxEntries ?? 10_000 });
  const flights = new SingleFlight<ResolvedOrigin>();

  async function download(key: string, known?: { entry: OriginEntry; info: SourceInfo }): Promise<ResolvedOrigin> {
    const validators = known ? { etag: known.entry.etag, lastModified: known.entry.lastModified } : undefined;
    const result = await fetcher.fetch(key, validators);
    if (result.status === 'not-modified') {
      if (!known) throw new OriginUnavailableError({ detail: 'the origin answered HTTP 304 to an unconditional request' });
      entries.set(key, { ...known.entry, fetchedAt: now() });
      logger.debug({ origin: originOf(key), hash: known.info.hash }, 'origin source revalidated');
      return { info: known.info, created: false, cached: true };
    }
    const { info, created } = await store.put(result.data);
    entries.set(key, {
      hash: info.hash,
      ...(result.etag ? { etag: result.etag } : {}),
      ...(result.lastModified ? { lastModified: result.lastModified } : {}),
      fetchedAt: now(),
    });
    logger.info(
      { origin: originOf(key), hash: info.hash, bytes: info.bytes, created, changed: known ? known.info.hash !== info.hash : undefined },
      'origin source fetched',
    );
    return { info, created, cached: false };
  }

  async function resolveOnce(key: string): Promise<ResolvedOrigin> {
    const entry = entries.get(key);
    if (!entry) return download(key);
    const info = await store.head(entry.hash);
    if (!info) {
      // The mapping outlived the bytes (another store, a wiped disk): fetch afresh, unconditionally.
      entries.delete(key);
      return download(key);
    }
    if (now() - entry.fetchedAt < ttlMs) return { info, created: false, cached: true };
    return download(key, { entry, info });
  }

  return {
    async resolve(url) {
      const key = urlKey(url);
      const { promise, joined } = flights.run(key, () => resolveOnce(key));
      const resolved = await promise;
      // Like `SourceStore.put`: one caller created the source, not every one that joined it.
      return joined && resolved.created ? { ...resolved, created: false } : resolved;
    },
  };
}
