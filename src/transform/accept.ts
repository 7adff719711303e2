/**
 * `Accept` negotiation for `format=auto`. Pure: a header value in, a format out.
 *
 * The server's order (avif > webp > png/jpeg) decides, not the client's q-values: browsers list
 * image types without meaningful weights, and the smaller encoding is what the client wants.
 * Only an explicit `image/avif` / `image/webp` counts: `*\/*` and `image/*` are sent by clients
 * that may not decode either (old Safari, curl, many crawlers), as CDNs treat them too.
 */
import type { OutputFormat } from '../params/types.js';

/** q-value of each explicitly listed media type (lower-cased); 0 when refused or malformed. */
function explicitWeights(accept: string): Map<string, number> {
  const weights = new Map<string, number>();
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((part) => part.trim());
    if (!type.includes('/')) continue;
    let q = 1;
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const raw = param.slice(eq + 1).trim();
      // RFC 9110 qvalue: 0 to 1, at most three decimals. A malformed weight makes the range void,
      // so it cannot be read as support.
      q = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(raw) ? Number(raw) : 0;
    }
    const key = type.toLowerCase();
    // A type listed twice: a refusal (q=0) anywhere wins, because serving a format the client
    // said it cannot take breaks the image, while falling back only costs bytes.
    const previous = weights.get(key);
    weights.set(key, previous === undefined ? q : previous === 0 || q === 0 ? 0 : Math.max(previous, q));
  }
  return weights;
}

/**
 * The format `format=auto` resolves to: `avif` when the client explicitly accepts `image/avif`
 * (q > 0), else `webp` likewise, else `png` for an image with alpha (jpeg would drop it), else `jpeg`.
 */
export function negotiateFormat(accept: string | undefined, hasAlpha: boolean): OutputFormat {
  const weights = accept ? explicitWeights(accept) : new Map<string, number>();
  if ((weights.get('image/avif') ?? 0) > 0) return 'avif';
  if ((weights.get('image/webp') ?? 0) > 0) return 'webp';
  return hasAlpha ? 'png' : 'jpeg';
}
