/**
 * The exact JSON the upstream receives. Pure. Every clarity field goes under its upstream name and
 * JSON type (numbers as numbers, booleans as booleans), in the order of the parameter table, so the
 * same validated params always make byte-identical bodies.
 */
import { PARAMS, type ParamName } from '../../params/table.js';
import type { ClarityParams } from '../../params/types.js';
import type { EngineInput, SourceImage } from '../types.js';

export type ImageDelivery = 'base64' | 'url';

/** The request body of `POST /v1|v2/clarity-upscaler`. */
export type SegmindPayload = { image: string } & Omit<ClarityParams, 'mask'> & {
    mask?: string;
    /** Always `png`: lossless, and the sharp output stage makes whatever format the client wants. */
    output_format: 'png';
  };

/** Clarity fields in table order (mask included); `image` and `output_format` are not table entries. */
const CLARITY_FIELDS = (Object.keys(PARAMS) as ParamName[]).filter(
  (name): name is keyof ClarityParams & ParamName => PARAMS[name].group === 'clarity',
);

function imageRef(image: SourceImage, delivery: ImageDelivery, publicBaseUrl: string | undefined): string {
  if (delivery === 'base64') return image.data.toString('base64');
  if (!publicBaseUrl) throw new TypeError('buildPayload: imageDelivery "url" needs publicBaseUrl (PUBLIC_BASE_URL)');
  // Sources are content-addressed: the hash names exactly these bytes.
  return `${publicBaseUrl.replace(/\/+$/, '')}/sources/${image.hash}`;
}

/** `image` as raw base64 of the source bytes (the upstream infers base64 vs URL) or as our source URL. */
export function buildPayload(
  input: Pick<EngineInput, 'source' | 'mask' | 'params'>,
  delivery: ImageDelivery,
  publicBaseUrl?: string,
): SegmindPayload {
  const { params } = input;
  const body: Record<string, unknown> = { image: imageRef(input.source, delivery, publicBaseUrl) };
  for (const name of CLARITY_FIELDS) {
    if (name === 'mask') {
      if (params.mask === undefined) continue;
      if (!input.mask || input.mask.hash !== params.mask) {
        throw new TypeError(`buildPayload: params.mask is ${params.mask} but the mask image given is ${input.mask?.hash ?? 'none'}`);
      }
      body.mask = imageRef(input.mask, delivery, publicBaseUrl);
      continue;
    }
    const spec = PARAMS[name];
    const value: unknown = params[name];
    // The parser already typed these; this guards a caller that built params by hand, because a
    // "2" where 2 belongs reaches the model as an invalid value: an upstream 500, maybe billed.
    const ok =
      spec.kind === 'int'
        ? Number.isInteger(value)
        : spec.kind === 'float'
          ? typeof value === 'number' && Number.isFinite(value)
          : spec.kind === 'bool'
            ? typeof value === 'boolean'
            : typeof value === 'string';
    if (!ok) throw new TypeError(`buildPayload: ${name} must be a ${spec.kind}, got ${JSON.stringify(value)}`);
    body[name] = value;
  }
  body.output_format = 'png';
  return body as SegmindPayload;
}
