export { negotiateFormat } from './accept.js';
export { planOutput, variantSpec, DEFAULT_QUALITY, CONTENT_TYPES, ENCODER_VERSION, type OutputPlan, type EncoderSettings } from './plan.js';
export { renderVariant, decodes, type RenderOptions, type RenderedVariant } from './render.js';
export { TransformError } from './errors.js';
