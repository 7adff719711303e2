/**
 * Cache identities. Keys hash a JSON array of sorted `[name, value]` pairs: JSON keeps types and
 * cannot collide the way delimiter-joined strings do (undici's dedupe key learned this), and
 * numbers are already normalized by the parser (`0.40` → 0.4), so equal payloads give equal keys
 * whatever their spelling or order in the URL.
 */
import { createHash } from 'node:crypto';
import type { ClarityParams, OutputFormat } from './types.js';

function sha256(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

function sortedPairs(record: object): [string, unknown][] {
  return Object.entries(record)
    .map(([k, v]): [string, unknown] => [k, v === undefined ? null : v])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Identity of what an engine produces: the source, the engine (with its model) and the clarity
 * fields that engine acts on, defaults filled. Fields it ignores stay out, so `seed=42` on the
 * local engine is not a second model run of identical bytes (nor a free way to bust the cache);
 * output fields stay out too: every variant of a master shares it.
 */
export function masterKey(source: string, engineId: string, clarity: ClarityParams, honors: ReadonlySet<string>): string {
  const acted = Object.entries(clarity).filter(([name]) => honors.has(name));
  return sha256(['master', ['engine', engineId], ['source', source], ...sortedPairs(Object.fromEntries(acted))]);
}

/** What a variant is made of once the output stage has resolved defaults and negotiation. */
export interface VariantSpec {
  format: OutputFormat;
  quality: number;
  width?: number;
  height?: number;
  fit: string;
  /** The output stage's own settings that change bytes (`ENCODER_VERSION`, AVIF effort). */
  encoder?: string;
}

/** Identity of one encoded output of a master. Also its strong ETag. */
export function variantKey(master: string, spec: VariantSpec): string {
  return sha256(['variant', ['master', master], ...sortedPairs(spec)]);
}
