import { CdnError, type CdnErrorOptions } from '../errors.js';

/** A source over `SOURCE_MAX_BYTES` or `SOURCE_MAX_PIXELS`. */
export class SourceTooLargeError extends CdnError {
  readonly status = 413;
  readonly code = 'SOURCE_TOO_LARGE';
  readonly title = 'Source image too large';
}

/** Bytes that are not an image in one of the accepted formats. */
export class UnsupportedMediaTypeError extends CdnError {
  readonly status = 415;
  readonly code = 'UNSUPPORTED_MEDIA_TYPE';
  readonly title = 'Unsupported media type';
}

/** No source with that hash was registered (here, or in the shared tier). */
export class SourceNotFoundError extends CdnError {
  readonly status = 404;
  readonly code = 'SOURCE_NOT_FOUND';
  readonly title = 'Source not found';

  /** `param` defaults to `hash`; a missing mask says `mask`. */
  constructor(options: CdnErrorOptions) {
    super({ param: 'hash', ...options });
  }
}

/** The origin answered 404 or 410 for a source URL. */
export class OriginNotFoundError extends CdnError {
  readonly status = 404;
  readonly code = 'ORIGIN_NOT_FOUND';
  readonly title = 'Origin image not found';
}

/**
 * The origin could not be reached or did not answer with an image: a connection or TLS failure,
 * an HTTP status other than 2xx/304/404/410, too many redirects. The detail names the status or
 * error code only, never the origin's body.
 */
export class OriginUnavailableError extends CdnError {
  readonly status = 502;
  readonly code = 'ORIGIN_UNAVAILABLE';
  readonly title = 'Origin unavailable';
}

/** The origin fetch (every redirect and the whole body) took longer than its time limit. */
export class OriginTimeoutError extends CdnError {
  readonly status = 504;
  readonly code = 'ORIGIN_TIMEOUT';
  readonly title = 'Origin timeout';
}
