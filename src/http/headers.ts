/** Header helpers shared by the route families. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';

export const IMMUTABLE = 'public, max-age=31536000, immutable';

/** For answers that are not images: they may load, run and frame nothing. */
export const LOCKED_DOWN_CSP = "default-src 'none'; frame-ancestors 'none'";

/**
 * For every answer: no MIME sniffing; and for anything that is not an image (JSON, problem+json,
 * HTML) a CSP that lets it run nothing and be framed by no one. Images drop the CSP (`asImage`):
 * it has no use on them, and some browsers apply it to an image opened on its own.
 */
export function setSecurityHeaders(res: Response): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', LOCKED_DOWN_CSP);
  res.setHeader('Referrer-Policy', 'no-referrer');
}

/** Marks a response as image bytes: embeddable from any origin, no document CSP. */
export function asImage(res: Response): void {
  res.removeHeader('Content-Security-Policy');
  res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
}

/** Constant-time comparison, so response timing does not reveal how much of a token matched. */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The query exactly as sent (a framework's parsed object hides repeated keys). */
export function rawQuery(req: Request): URLSearchParams {
  const at = req.originalUrl.indexOf('?');
  return new URLSearchParams(at === -1 ? '' : req.originalUrl.slice(at + 1));
}

/** `If-None-Match` matches a strong ETag (weak comparison is fine for GET, RFC 9110 13.1.2). */
export function matchesEtag(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}
