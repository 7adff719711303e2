/**
 * `npm run bench`: every benchmark, one after the other, each in its own process so neither
 * measures the other's leftovers (threads, heap, sockets):
 *
 *   1. bench/serve.ts         serving: cache tiers, 304, variant misses vs bare node:http (~2½ min);
 *                             rewrites the "## Serving" section of bench/RESULTS.md
 *   2. bench/local-engine.ts  the local engine, model by model (~2 min); markdown on stdout
 *
 * Arguments after `--` go to every script (e.g. `npm run bench -- --no-write`); a script that fails
 * stops the run with its exit code.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPTS = ['serve.ts', 'local-engine.ts'];

for (const script of SCRIPTS) {
  const path = fileURLToPath(new URL(script, import.meta.url));
  process.stderr.write(`\n== bench/${script}\n`);
  const started = performance.now();
  // Same node flags as this process (tsx's loader among them), so the child runs TypeScript too.
  const child = spawnSync(process.execPath, [...process.execArgv, path, ...process.argv.slice(2)], { stdio: 'inherit' });
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  if (child.error) throw child.error;
  if (child.status !== 0) {
    process.stderr.write(`bench/${script} failed (${child.signal ?? `exit ${child.status}`}) after ${seconds} s\n`);
    process.exit(child.status ?? 1);
  }
  process.stderr.write(`== bench/${script}: ${seconds} s\n`);
}
