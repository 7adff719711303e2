/**
 * The base of every error the product answers with. Each stage declares its own subclasses in its
 * `errors.ts`; `http/errors.ts` turns any `CdnError` into an RFC 9457 problem+json response.
 *
 * `detail` is public: it is sent to the client, so it never holds a secret or an upstream body
 * verbatim. `cause` is for the log only.
 */
export interface CdnErrorOptions {
  /** Public, human-readable explanation of this occurrence. */
  detail: string;
  /** The query parameter (or header, or variable) at fault, when there is one. */
  param?: string;
  /** What would have been accepted, e.g. `0 to 1` or `webp, avif, jpeg, png`. */
  allowed?: string;
  /** Seconds after which a retry may succeed; sent as `Retry-After`. */
  retryAfterSeconds?: number;
  /** The underlying error; logged, never sent. */
  cause?: unknown;
}

/** Where problem `type` URIs point: the README section named after the error code. */
export const PROBLEM_TYPE_BASE = 'https://github.com/clarity-cdn/clarity-cdn#';

export abstract class CdnError extends Error {
  abstract readonly status: number;
  /** Stable, SCREAMING_SNAKE; clients match on it. */
  abstract readonly code: string;
  /** Short, constant summary of the problem type (the problem's `title`). */
  abstract readonly title: string;
  readonly detail: string;
  readonly param?: string;
  readonly allowed?: string;
  readonly retryAfterSeconds?: number;

  constructor(options: CdnErrorOptions) {
    super(options.detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.detail = options.detail;
    if (options.param !== undefined) this.param = options.param;
    if (options.allowed !== undefined) this.allowed = options.allowed;
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** Problem `type`: the README section (lower-cased code) that explains this error. */
  get type(): string {
    return PROBLEM_TYPE_BASE + this.code.toLowerCase();
  }
}
