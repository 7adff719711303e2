export { createLocalEngine, type LocalEngineOptions } from './engine.js';
export { LocalEngineError } from './errors.js';
export { MODEL_NAMES, type ModelName } from './protocol.js';
