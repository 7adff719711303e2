/**
 * The SSRF guard: an undici dispatcher that refuses to open a connection to any address that is
 * not on the public internet (loopback, RFC 1918, link-local cloud metadata, CGNAT, unique-local…).
 *
 * The check sits in the connector, at the moment a socket is opened, on the address the socket
 * will actually use, and not on the URL beforehand. A URL check followed by a separate connection
 * leaves a gap: the name can resolve differently the second time (DNS rebinding, the gap ipx
 * documents), and every redirect hop is a new URL. Here each new connection of every hop looks
 * the name up once and connects only to the addresses it checked.
 *
 * Two paths into Node's net/tls need the check:
 * - host names: `net.connect` resolves them through the `lookup` option, so the guard wraps the
 *   lookup and hands back only addresses it allowed;
 * - IP literals: `net.connect` skips `lookup` for them, so the guard checks them itself before
 *   calling undici's connector.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent, buildConnector } from 'undici';

/**
 * Stable code of `AddressRefusedError`, in the style of Node's and undici's error codes. A const,
 * not a CdnError code: this error never reaches a client as is (the origin fetcher maps it to
 * `SOURCE_URL_FORBIDDEN`).
 */
export const ADDRESS_REFUSED = 'ERR_SSRF_ADDRESS_REFUSED';

/**
 * The connector refused to connect to `address` (of `host`). Thrown inside undici's connector, it
 * comes out of `undici.request` as the same object (undici hands connect errors to the request
 * unwrapped); `findAddressRefusal` also looks through `cause` chains in case a layer wraps it.
 */
export class AddressRefusedError extends Error {
  override readonly name = 'AddressRefusedError';
  readonly code = ADDRESS_REFUSED;
  constructor(
    /** The host name or IP literal of the URL. */
    readonly host: string,
    /** The address that was refused (the literal itself, or one the name resolved to). */
    readonly address: string,
    /** The ipaddr.js range name: `loopback`, `private`, `linkLocal`… (`unicast` when only `allowAddress` refused it). */
    readonly range: string,
    /** True when the URL named the address itself; false when a host name resolved to it. */
    readonly literal: boolean,
  ) {
    super(`refused to connect to ${host} (${address}): ${range} address`);
  }
}

/** The refusal in `error` or its `cause` chain (or an AggregateError's members), if any. */
export function findAddressRefusal(error: unknown): AddressRefusedError | undefined {
  const seen = new Set<unknown>();
  const visit = (e: unknown): AddressRefusedError | undefined => {
    if (!e || typeof e !== 'object' || seen.has(e)) return undefined;
    seen.add(e);
    if (e instanceof AddressRefusedError) return e;
    const members = e instanceof AggregateError ? (e.errors as unknown[]) : [];
    for (const member of [(e as { cause?: unknown }).cause, ...members]) {
      const found = visit(member);
      if (found) return found;
    }
    return undefined;
  };
  return visit(error);
}

/**
 * IPv4-compatible IPv6 (`::a.b.c.d`, deprecated by RFC 4291) is `unicast` to ipaddr.js, yet it
 * embeds a v4 address the way the refused NAT64/6to4 ranges do. Nothing public lives there.
 */
const IPV4_COMPATIBLE = ipaddr.IPv6.parseCIDR('::/96');

/**
 * Whether an origin fetch may connect to `address`: only ipaddr.js's `unicast` range (what is left
 * once every special-purpose range is taken out) is public. IPv4-mapped IPv6 is judged as the v4
 * address it carries. Anything Node would not take for an IP address is refused: this is a
 * judgement on what a socket will connect to, so it must read the address the way `net` does
 * (ipaddr.js alone would also parse `010.0.0.1` and `127.1`, forms `net.connect` does not).
 */
export function isPublicAddress(address: string): { ok: true } | { ok: false; range: string } {
  if (isIP(address) === 0 || !ipaddr.isValid(address)) return { ok: false, range: 'invalid' };
  // `process` unmaps ::ffff:a.b.c.d to a.b.c.d, so a mapped loopback is judged as loopback.
  const parsed = ipaddr.process(address);
  const range = parsed.range();
  if (range !== 'unicast') return { ok: false, range };
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).match(IPV4_COMPATIBLE)) {
    return { ok: false, range: 'ipv4Compatible' };
  }
  return { ok: true };
}

/** The range to report for an address `allowAddress` refused. */
function rangeOf(address: string): string {
  const verdict = isPublicAddress(address);
  return verdict.ok ? 'unicast' : verdict.range;
}

export interface GuardedAgentOptions {
  /**
   * Lift the check entirely (`SOURCE_ALLOW_PRIVATE=true`): for origins on a private network, and
   * for tests against loopback servers. The `lookup` below is still used.
   */
  allowPrivate: boolean;
  /** Which addresses may be connected to. Default: `isPublicAddress(address).ok`. Tests widen it. */
  allowAddress?: (address: string) => boolean;
  /**
   * Name resolution, with the signature of `dns.lookup` (default `dns.lookup`). The guard calls it
   * with `all: true` and accepts either answer form.
   */
  lookup?: LookupFunction;
  /** Longest wait for a connection (lookup included), ms. Default 10000 (undici's). */
  connectTimeoutMs?: number;
}

type LookupCallback = Parameters<LookupFunction>[2];

/** `address` without the brackets of a URL's IPv6 host (undici strips them already; this is belt and braces). */
const unbracket = (host: string) => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);

/**
 * A lookup that resolves every address of the name and refuses the connection when any one of
 * them is not allowed: a name that answers both a public and a private address must not let Node
 * (or happy-eyeballs, which tries them in turn) pick the private one.
 */
function guardLookup(resolve: LookupFunction, allow: (address: string) => boolean): LookupFunction {
  return (hostname: string, options: LookupOptions, callback: LookupCallback) => {
    // Node asks for `all: true` when it will race address families (autoSelectFamily, on by
    // default since Node 20) and for a single address otherwise; the check always needs all.
    resolve(hostname, { ...options, all: true }, (error, result, family) => {
      if (error) return callback(error, '', undefined);
      const addresses: LookupAddress[] =
        typeof result === 'string' ? [{ address: result, family: family ?? isIP(result) }] : result;
      if (addresses.length === 0) {
        // Node's multi-address path reads addresses[0] unguarded: never hand it an empty list.
        const notFound = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
        return callback(notFound, '', undefined);
      }
      const refused = addresses.find(({ address }) => !allow(address));
      if (refused) {
        return callback(new AddressRefusedError(hostname, refused.address, rangeOf(refused.address), false), '', undefined);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0] as LookupAddress;
      return callback(null, first.address, first.family);
    });
  };
}

/**
 * An undici Agent for origin fetches. Each new connection, on every hop, is checked against the
 * address it actually connects to; a refusal fails the request with `AddressRefusedError`
 * before any socket is opened.
 */
export function createGuardedAgent(options: GuardedAgentOptions): Agent {
  const resolve = options.lookup ?? (dnsLookup as LookupFunction);
  const timeout = options.connectTimeoutMs; // undefined: undici's default (10 s)
  if (options.allowPrivate) {
    return new Agent({ connect: { timeout, lookup: resolve } });
  }
  const allow = options.allowAddress ?? ((address: string) => isPublicAddress(address).ok);
  const connector = buildConnector({ timeout, lookup: guardLookup(resolve, allow) });
  return new Agent({
    connect(connectOptions, callback) {
      const host = unbracket(connectOptions.hostname);
      if (isIP(host) !== 0 && !allow(host)) {
        const refusal = new AddressRefusedError(host, host, rangeOf(host), true);
        // Asynchronously, as Node reports its own connect errors: undici expects the callback later.
        process.nextTick(callback, refusal, null);
        return;
      }
      connector(connectOptions, callback);
    },
  });
}
