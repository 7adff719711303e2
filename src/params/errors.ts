import { CdnError } from '../errors.js';

/** A query parameter that is unknown, repeated, malformed or out of range. */
export class InvalidParamError extends CdnError {
  readonly status = 400;
  readonly code = 'INVALID_PARAM';
  readonly title = 'Invalid parameter';
}
