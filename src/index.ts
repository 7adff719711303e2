/**
 * What other Node code may import from clarity-cdn: the URL builder and URL signing (to make
 * `<img src>` URLs in a site's own build or CMS), and the server itself (to embed it).
 */
export { buildUpscaleUrl, type BuildUpscaleUrlOptions, type UpscaleFields } from './client/index.js';
export { InvalidParamError, type ClarityParams, type OutputParams, type OutputFormat } from './params/index.js';
export { signPath, verifyPath, signingInput, type SignatureCheck } from './security/index.js';
export { loadConfig, ConfigError, type Config } from './config.js';
export { buildServer, type BuiltServer, type BuildOptions } from './server.js';
// For a webhook receiver: checks x-clarity-signature.
export { verifyWebhook, signWebhook, WEBHOOK_SIGNATURE_HEADER } from './jobs/webhook.js';
