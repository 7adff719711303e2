import { CdnError } from '../errors.js';

/**
 * sharp could not decode the master or encode the variant. The pipeline treats the master as a
 * miss (drops it and makes it again); the client sees a generic 500 problem.
 */
export class TransformError extends CdnError {
  readonly status = 500;
  readonly code = 'TRANSFORM_FAILED';
  readonly title = 'Image transform failed';
}
