import { CdnError, type CdnErrorOptions } from '../errors.js';

/**
 * An origin URL the proxy will not fetch: its host is not in `SOURCE_ALLOWED_HOSTS`, it points or
 * resolves to a non-public address (without `SOURCE_ALLOW_PRIVATE=true`), or the origin redirected
 * to such a place. The detail says which rule, never anything fetched.
 */
export class SourceUrlForbiddenError extends CdnError {
  readonly status = 403;
  readonly code = 'SOURCE_URL_FORBIDDEN';
  readonly title = 'Source URL forbidden';

  /** `param` defaults to `url`: the URL (or where it led) is what is refused. */
  constructor(options: CdnErrorOptions) {
    super({ param: 'url', ...options });
  }
}

/** A client made `CLIENT_MISS_RPM` cold misses this minute. */
export class ClientMissLimitError extends CdnError {
  readonly status = 429;
  readonly code = 'TOO_MANY_MISSES';
  readonly title = 'Too many uncached requests';
}
