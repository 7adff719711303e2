/**
 * The client stage: what a CMS or a site build needs to make `<img src>` URLs without running the
 * server. It has no `errors.ts`: a bad field is the params stage's `InvalidParamError`, the very
 * error the server answers 400 with, so callers match on one class and one `code`.
 */
export { buildUpscaleUrl, type BuildUpscaleUrlOptions, type UpscaleFields } from './url.js';
export { InvalidParamError } from '../params/errors.js';
export { signPath, verifyPath } from '../security/signature.js';
export type { ClarityParams, OutputParams, OutputFormat } from '../params/types.js';
