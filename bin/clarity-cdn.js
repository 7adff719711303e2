#!/usr/bin/env node
// The `clarity-cdn` command. In a checkout with its dev dependencies (a fresh clone after
// `npm ci`, before any build) it runs the TypeScript sources through tsx, so the command is never
// a stale or missing build; an install without them (the Docker image) runs the compiled dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let tsx;
try {
  tsx = existsSync(source) ? await import('tsx/esm/api') : undefined;
} catch {
  tsx = undefined;
}
if (tsx) {
  tsx.register();
  await import(source.href);
} else {
  await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
