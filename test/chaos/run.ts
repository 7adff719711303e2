/**
 * `npm run chaos`: every scenario at a larger scale, one after the other, then a table of figures.
 *
 *   npm run chaos                          # all five at scale 4
 *   npm run chaos -- --scale 1             # the CI size (what test/integration/chaos.test.ts runs)
 *   npm run chaos -- --only storm,disk-unwritable
 *
 * Exits 1 when any scenario broke a promise; every scenario runs anyway, so one report shows all.
 */
import { parseArgs } from 'node:util';
import { closePools, formatFigures, runScenario, type ScenarioOutcome } from './harness.js';
import { SCENARIOS } from './scenarios.js';

const { values } = parseArgs({
  options: { scale: { type: 'string', default: '4' }, only: { type: 'string' } },
});
const scale = Number(values.scale);
if (!Number.isInteger(scale) || scale < 1) {
  console.error(`--scale: expected a positive integer, got ${values.scale}`);
  process.exit(2);
}
const only = values.only?.split(',').map((s) => s.trim());
const unknown = only?.filter((name) => !SCENARIOS.some((s) => s.name === name)) ?? [];
if (unknown.length > 0) {
  console.error(`--only: no scenario ${unknown.join(', ')}; there are ${SCENARIOS.map((s) => s.name).join(', ')}`);
  process.exit(2);
}

const outcomes: ScenarioOutcome[] = [];
const started = performance.now();
for (const scenario of SCENARIOS.filter((s) => !only || only.includes(s.name))) {
  console.log(`\n▶ ${scenario.name}: ${scenario.title} (scale ${scale})`);
  const outcome = await runScenario(scenario, scale);
  outcomes.push(outcome);
  console.log(formatFigures(outcome));
  if (outcome.error !== undefined) console.log(`  ERROR: ${outcome.error instanceof Error ? (outcome.error.stack ?? outcome.error.message) : String(outcome.error)}`);
  for (const failure of outcome.failures) console.log(`  FAIL: ${failure}`);
}
await closePools();

console.log(`\n| scenario | result | time | figures |\n|---|---|---|---|`);
for (const o of outcomes) {
  const verdict = o.error !== undefined ? 'ERROR' : o.failures.length > 0 ? `FAIL (${o.failures.length})` : 'ok';
  const figures = o.figures.map(([label, value]) => `${label}: ${value}`).join('; ');
  console.log(`| ${o.name} | ${verdict} | ${(o.ms / 1000).toFixed(1)} s | ${figures.replaceAll('|', '\\|')} |`);
}
console.log(`\n${outcomes.length} scenario(s) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
const failed = outcomes.filter((o) => o.error !== undefined || o.failures.length > 0);
process.exit(failed.length > 0 ? 1 : 0);
