/**
 * URL signatures: `sig` = base64url(HMAC-SHA256(key, path + `?` + the query without `sig`)), over
 * the URL exactly as sent (no decoding, no reordering), as imgproxy and thumbor do: whoever holds
 * the key decides which paid payloads exist, and a one-character change is a different URL.
 *
 * Several keys verify (rotation: add the new key first, re-sign, drop the old one); the first
 * signs. Comparison is constant-time over fixed-length digests, so timing reveals nothing of how
 * much of a signature matched. The signature is never part of a cache key (the parser skips it).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_PARAM = 'sig';

/** The signed text: the path and the query as sent, with every `sig=` pair removed. */
export function signingInput(pathAndQuery: string): { input: string; signatures: string[] } {
  const at = pathAndQuery.indexOf('?');
  const path = at === -1 ? pathAndQuery : pathAndQuery.slice(0, at);
  const kept: string[] = [];
  const signatures: string[] = [];
  if (at !== -1) {
    for (const pair of pathAndQuery.slice(at + 1).split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      if (name === SIGNATURE_PARAM) signatures.push(eq === -1 ? '' : pair.slice(eq + 1));
      else kept.push(pair);
    }
  }
  return { input: kept.length > 0 ? `${path}?${kept.join('&')}` : path, signatures };
}

function digest(key: string, input: string): Buffer {
  return createHmac('sha256', key).update(input).digest();
}

/** `/upscale/<hash>?scale=2` → `/upscale/<hash>?scale=2&sig=…`, signed with `key`. */
export function signPath(pathAndQuery: string, key: string): string {
  const { input } = signingInput(pathAndQuery);
  const sig = digest(key, input).toString('base64url');
  return `${input}${input.includes('?') ? '&' : '?'}${SIGNATURE_PARAM}=${sig}`;
}

export type SignatureCheck = 'valid' | 'missing' | 'invalid';

/** Checks the `sig` of a path-and-query against every key; exactly one `sig` must be present. */
export function verifyPath(pathAndQuery: string, keys: readonly string[]): SignatureCheck {
  const { input, signatures } = signingInput(pathAndQuery);
  if (signatures.length === 0) return 'missing';
  if (signatures.length > 1) return 'invalid';
  const given = Buffer.from(signatures[0] as string, 'base64url');
  // base64url decoding is lenient; a re-encoding that differs means the text was not canonical.
  if (given.length !== 32 || given.toString('base64url') !== signatures[0]) return 'invalid';
  let valid = false;
  // Every key is tried, whatever matched: the time taken does not tell which key is current.
  for (const key of keys) valid = timingSafeEqual(digest(key, input), given) || valid;
  return valid ? 'valid' : 'invalid';
}
