/**
 * Presets: named parameter sets an operator defines in a JSON file (`PRESETS_FILE`), used as
 * `?preset=hero`. Validated by the same table as the query, once, at start: a bad file stops the
 * process with a message naming the preset and the field. With `ONLY_PRESETS=true` clarity fields
 * come from presets only, which bounds the number of distinct paid payloads; output fields stay
 * free (they cost no upstream call).
 *
 * A preset holds values, not identity: `preset=hero&creativity=0.35` and the preset's own values
 * resolve to the same fields, so they give the same master key.
 */
import { readFile } from 'node:fs/promises';
import { InvalidParamError } from './errors.js';
import { parseValue, resolveKey } from './parse.js';
import { PARAMS, type ParamName } from './table.js';

export type PresetValues = Readonly<Partial<Record<ParamName, number | string | boolean>>>;
export type Presets = ReadonlyMap<string, PresetValues>;

export const PRESET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** A presets file that cannot be used; the message names the preset and the field. */
export class PresetFileError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid presets:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PresetFileError';
  }
}

/**
 * Parses the presets file's JSON: `{"hero": {"scale": 2, "creativity": 0.5}, …}`. Field names
 * and aliases as in the query; values as JSON numbers, booleans or strings. Reports every problem
 * at once.
 */
export function parsePresets(json: unknown): Presets {
  const problems: string[] = [];
  const presets = new Map<string, PresetValues>();
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new PresetFileError(['expected a JSON object of preset name → {field: value}']);
  }
  for (const [name, fields] of Object.entries(json)) {
    if (!PRESET_NAME.test(name)) {
      problems.push(`preset ${JSON.stringify(name)}: a name is 1-64 letters, digits, _ or -, starting with a letter or digit`);
      continue;
    }
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) {
      problems.push(`preset ${name}: expected an object of field → value`);
      continue;
    }
    const values: Partial<Record<ParamName, number | string | boolean>> = {};
    for (const [key, raw] of Object.entries(fields as Record<string, unknown>)) {
      const field = resolveKey(key);
      if (!field) {
        problems.push(`preset ${name}, field ${key}: unknown field; known: ${Object.keys(PARAMS).join(', ')}`);
        continue;
      }
      if (values[field] !== undefined) {
        problems.push(`preset ${name}, field ${key}: ${field} is given twice`);
        continue;
      }
      if (!['number', 'string', 'boolean'].includes(typeof raw)) {
        problems.push(`preset ${name}, field ${key}: expected a number, string or boolean`);
        continue;
      }
      try {
        values[field] = parseValue(key, PARAMS[field], String(raw));
      } catch (error) {
        const why = error instanceof InvalidParamError ? error.detail : String(error);
        problems.push(`preset ${name}, field ${key}: ${why}`);
      }
    }
    presets.set(name, Object.freeze(values));
  }
  if (problems.length > 0) throw new PresetFileError(problems);
  return presets;
}

/** Reads and checks `PRESETS_FILE`; any problem (unreadable, not JSON, a bad preset) is a `PresetFileError`. */
export async function loadPresetsFile(path: string): Promise<Presets> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new PresetFileError([`PRESETS_FILE=${path}: ${(error as Error).message}`]);
  }
  return parsePresets(json);
}
