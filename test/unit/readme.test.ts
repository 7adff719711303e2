import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXAMPLE_ENV, exampleEnv, readReadme, renderReadme } from '../../scripts/readme-tables.js';

const SRC = new URL('../../src/', import.meta.url).pathname;

/** Every `code` an error class declares (`readonly code = 'X'`) or a route passes (`'X', 'Title'`). */
function errorCodes(): string[] {
  const codes = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (path.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        for (const m of text.matchAll(/readonly code = '([A-Z_]+)'/g)) codes.add(m[1] as string);
        for (const m of text.matchAll(/new RequestError\([^,]+,\s*'([A-Z_]+)'/g)) codes.add(m[1] as string);
      }
    }
  };
  walk(SRC);
  return [...codes].sort();
}

describe('README', () => {
  const readme = readReadme();

  it('has current parameter and configuration tables (run `npm run docs` to refresh)', () => {
    expect(renderReadme(readme)).toBe(readme);
  });

  it('config/example.env lists every variable at its default', () => {
    expect(readFileSync(EXAMPLE_ENV, 'utf8')).toBe(exampleEnv());
  });

  it('opens with the two commands', () => {
    const firstScreen = readme.split('\n').slice(0, 40).join('\n');
    expect(firstScreen).toContain('npm install && npm start');
    expect(firstScreen).toContain('npm test');
  });

  it('explains every error code under a heading its problem `type` links to', () => {
    const codes = errorCodes();
    expect(codes.length).toBeGreaterThan(10);
    const missing = codes.filter((code) => !readme.includes(`#### \`${code}\``));
    expect(missing).toEqual([]);
  });
});
