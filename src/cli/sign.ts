/**
 * `clarity-cdn sign <path?query | URL>`: prints the path (or URL) with its `sig`, made with the
 * first key of `SIGNING_KEY`. The key comes from the environment, never from the command line
 * (where it would land in shell history and `ps`).
 */
import { loadConfig } from '../config.js';
import { signPath } from '../security/index.js';
import { UsageError } from './usage.js';

/** `https://host/p?q` → [`https://host`, `/p?q`]; a bare path → [``, path]. */
export function splitOrigin(target: string): [string, string] {
  const match = /^(https?:\/\/[^/?#]+)(.*)$/i.exec(target);
  if (!match) return ['', target];
  const rest = match[2] as string;
  return [match[1] as string, rest.startsWith('/') ? rest : `/${rest}`];
}

export function signTarget(target: string, keys: readonly string[] | undefined): string {
  if (!keys || keys.length === 0) throw new UsageError('SIGNING_KEY is not set: nothing to sign with');
  const [origin, path] = splitOrigin(target);
  if (!path.startsWith('/')) throw new UsageError(`expected a path starting with / or an http(s) URL, got ${JSON.stringify(target)}`);
  return origin + signPath(path, keys[0] as string);
}

export function sign(target: string): void {
  const config = loadConfig(process.env);
  process.stdout.write(`${signTarget(target, config.SIGNING_KEY)}\n`);
}
