/**
 * The security stage: URL signatures, the SSRF-guarded dispatcher for origin fetches, and the
 * per-client miss limit.
 */
export { signPath, signingInput, verifyPath, SIGNATURE_PARAM, type SignatureCheck } from './signature.js';
export { createGuardedAgent, isPublicAddress, findAddressRefusal, AddressRefusedError, type GuardedAgentOptions } from './ssrf.js';
export { createMissLimiter, type MissLimiter } from './client-limit.js';
export { SourceUrlForbiddenError, ClientMissLimitError } from './errors.js';
