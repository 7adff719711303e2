export { PARAMS, SCHEDULERS, SD_MODELS, OUTPUT_FORMATS, FITS, PLACEHOLDERS, MAX_EDGE } from './table.js';
export type { ParamName, ParamSpec, EngineName } from './table.js';
export { PRESET_KEY, RESERVED_KEYS } from './table.js';
export type { ClarityParams, OutputParams, OutputFormat, UpscaleRequest } from './types.js';
export { parseUpscaleRequest, parseValue, parseSourceHash, describeAllowed, resolveKey, type ParseOptions } from './parse.js';
export { parsePresets, loadPresetsFile, PresetFileError, PRESET_NAME, type Presets, type PresetValues } from './presets.js';
export { masterKey, variantKey, type VariantSpec } from './canonical-key.js';
export { InvalidParamError } from './errors.js';
