import { CdnError } from '../../errors.js';

/**
 * The local engine could not produce the image: inference failed, a worker crashed, the model
 * could not be loaded. A fault of this server, not of the request; the underlying error is the
 * `cause` (logged), never part of `detail` (sent).
 */
export class LocalEngineError extends CdnError {
  readonly status = 500;
  readonly code = 'LOCAL_ENGINE_FAILED';
  readonly title = 'Local upscaling failed';
}
