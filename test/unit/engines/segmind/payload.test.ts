import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildPayload } from '../../../../src/engines/segmind/payload.js';
import type { SourceImage } from '../../../../src/engines/types.js';
import type { ClarityParams } from '../../../../src/params/types.js';
import { DOCUMENTED_DEFAULTS } from '../../../helpers/upstream-defaults.js';

function image(bytes: string): SourceImage {
  const data = Buffer.from(bytes);
  return { hash: createHash('sha256').update(data).digest('hex'), data, width: 2, height: 2, format: 'png', hasAlpha: false };
}

const source = image('source-bytes');
const mask = image('mask-bytes');

/** Every field away from its default, so a field dropped or renamed cannot pass unnoticed. */
const EVERY_FIELD: ClarityParams = {
  scale_factor: 2.5,
  creativity: 0.4,
  resemblance: 1.25,
  dynamic: 12,
  sharpen: 3.5,
  handfix: 'image_and_hands',
  seed: 4242,
  num_inference_steps: 30,
  scheduler: 'DPM++ 2M SDE Heun Karras',
  sd_model: 'flat2DAnimerge_v45Sharp.safetensors',
  custom_sd_model: 'https://models.example.com/custom.safetensors',
  prompt: 'crisp details, <lora:more_details:0.5>',
  negative_prompt: 'blurry, "low" quality',
  lora_links: 'https://models.example.com/a.safetensors,https://models.example.com/b.safetensors',
  mask: mask.hash,
  tiling_width: 128,
  tiling_height: 160,
  downscaling: true,
  downscaling_resolution: 1024,
};

describe('buildPayload', () => {
  it('sends the documented defaults as the upstream must receive them', () => {
    const body = JSON.stringify(buildPayload({ source, params: DOCUMENTED_DEFAULTS }, 'base64'));
    // Written out by hand from UPSTREAM.md (scale_factor 2 is ours), field by field, in order.
    expect(body).toBe(
      '{"image":"c291cmNlLWJ5dGVz",' +
        '"scale_factor":2,"creativity":0.35,"resemblance":0.6,"dynamic":6,"sharpen":0,' +
        '"handfix":"disabled","seed":1337,"num_inference_steps":18,' +
        '"scheduler":"DPM++ 3M SDE Karras","sd_model":"juggernaut_reborn.safetensors [338b85bc4f]",' +
        '"custom_sd_model":"",' +
        '"prompt":"masterpiece, best quality, highres, <lora:more_details:0.5> <lora:SDXLrender_v2.0:1>",' +
        '"negative_prompt":"(worst quality, low quality, normal quality:2) JuggernautNegative-neg",' +
        '"lora_links":"","tiling_width":112,"tiling_height":144,' +
        '"downscaling":false,"downscaling_resolution":768,"output_format":"png"}',
    );
  });

  it('sends every clarity field under its upstream name and JSON type, image and mask as base64', () => {
    const body = JSON.stringify(buildPayload({ source, mask, params: EVERY_FIELD }, 'base64'));
    // The exact bytes the upstream receives: field names, JSON types, order.
    expect(body).toBe(
      '{"image":"c291cmNlLWJ5dGVz",' +
        '"scale_factor":2.5,"creativity":0.4,"resemblance":1.25,"dynamic":12,"sharpen":3.5,' +
        '"handfix":"image_and_hands","seed":4242,"num_inference_steps":30,' +
        '"scheduler":"DPM++ 2M SDE Heun Karras","sd_model":"flat2DAnimerge_v45Sharp.safetensors",' +
        '"custom_sd_model":"https://models.example.com/custom.safetensors",' +
        '"prompt":"crisp details, <lora:more_details:0.5>","negative_prompt":"blurry, \\"low\\" quality",' +
        '"lora_links":"https://models.example.com/a.safetensors,https://models.example.com/b.safetensors",' +
        '"mask":"bWFzay1ieXRlcw==","tiling_width":128,"tiling_height":160,' +
        '"downscaling":true,"downscaling_resolution":1024,"output_format":"png"}',
    );
    const parsed = JSON.parse(body) as Record<string, unknown>;
    expect(Buffer.from(parsed.image as string, 'base64')).toEqual(source.data);
    expect(Buffer.from(parsed.mask as string, 'base64')).toEqual(mask.data);
  });

  // The JSON type of each field on its own, so that a failure names the field (the exact bytes are above).
  it.each([
    ['scale_factor', 'number'],
    ['creativity', 'number'],
    ['resemblance', 'number'],
    ['dynamic', 'number'],
    ['sharpen', 'number'],
    ['seed', 'number'],
    ['num_inference_steps', 'number'],
    ['tiling_width', 'number'],
    ['tiling_height', 'number'],
    ['downscaling_resolution', 'number'],
    ['downscaling', 'boolean'],
    ['handfix', 'string'],
    ['scheduler', 'string'],
    ['sd_model', 'string'],
    ['custom_sd_model', 'string'],
    ['prompt', 'string'],
    ['negative_prompt', 'string'],
    ['lora_links', 'string'],
    ['mask', 'string'],
    ['image', 'string'],
    ['output_format', 'string'],
  ])('%s is a JSON %s', (field, type) => {
    const parsed = JSON.parse(JSON.stringify(buildPayload({ source, mask, params: EVERY_FIELD }, 'base64'))) as Record<string, unknown>;
    expect(typeof parsed[field]).toBe(type);
  });

  it('asks the upstream for png whatever the client wants (sharp makes the format)', () => {
    expect(buildPayload({ source, params: { ...EVERY_FIELD, mask: undefined } }, 'base64').output_format).toBe('png');
  });

  it('omits mask when there is none', () => {
    const payload = buildPayload({ source, params: { ...EVERY_FIELD, mask: undefined } }, 'base64');
    expect('mask' in payload).toBe(false);
    expect(JSON.stringify(payload)).not.toContain('"mask"');
  });

  it('delivers image and mask as source URLs, without a doubled slash', () => {
    const payload = buildPayload({ source, mask, params: EVERY_FIELD }, 'url', 'https://img.example.com/');
    expect(payload.image).toBe(`https://img.example.com/sources/${source.hash}`);
    expect(payload.mask).toBe(`https://img.example.com/sources/${mask.hash}`);
  });

  it('refuses url delivery without a public base URL', () => {
    expect(() => buildPayload({ source, params: { ...EVERY_FIELD, mask: undefined } }, 'url')).toThrow(/publicBaseUrl/);
  });

  it('refuses a mask hash without the matching mask image', () => {
    expect(() => buildPayload({ source, params: EVERY_FIELD }, 'base64')).toThrow(/mask/);
    expect(() => buildPayload({ source, mask: source, params: EVERY_FIELD }, 'base64')).toThrow(/mask/);
  });

  it.each([
    ['scale_factor', '2'],
    ['seed', 1.5],
    ['downscaling', 'true'],
    ['prompt', 3],
    ['creativity', Number.NaN],
  ])('refuses %s = %j: a wrong type reaches the model as an invalid value', (field, value) => {
    const params = { ...EVERY_FIELD, mask: undefined, [field]: value } as unknown as ClarityParams;
    expect(() => buildPayload({ source, params }, 'base64')).toThrow(field);
  });
});
