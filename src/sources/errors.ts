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
