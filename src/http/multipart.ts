/**
 * `multipart/form-data` uploads (`curl -F file=@photo.jpg`, an HTML form): the first file field is
 * the image; other fields are ignored; a second file is a 400 (which one was meant?). busboy
 * streams the parts and stops counting at the byte limit, so an oversize upload is refused
 * without being buffered whole.
 */
import busboy from 'busboy';
import type { Request } from 'express';
import { InvalidParamError } from '../params/index.js';
import { SourceTooLargeError } from '../sources/index.js';

export async function readMultipartFile(req: Request, maxBytes: number): Promise<Buffer> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { files: 1, fileSize: maxBytes, fields: 20, parts: 40 } });
  } catch (error) {
    throw new InvalidParamError({
      param: 'Content-Type',
      allowed: 'multipart/form-data; boundary=…',
      detail: 'the multipart body has no boundary in its Content-Type',
      cause: error,
    });
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let files = 0;
    let failed: Error | undefined;
    const fail = (error: Error) => {
      failed ??= error;
      req.unpipe(parser);
      req.resume();
      reject(failed);
    };
    parser.on('file', (_field, stream) => {
      files += 1;
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () =>
        fail(
          new SourceTooLargeError({
            detail: `the uploaded file is larger than ${maxBytes} bytes (SOURCE_MAX_BYTES)`,
            allowed: `at most ${maxBytes} bytes`,
          }),
        ),
      );
    });
    parser.on('filesLimit', () =>
      fail(new InvalidParamError({ param: 'file', allowed: 'exactly one file field', detail: 'the form holds more than one file; send one image' })),
    );
    parser.on('error', (error: Error) =>
      fail(new InvalidParamError({ param: 'body', allowed: 'a multipart/form-data body', detail: 'the multipart body could not be read', cause: error })),
    );
    parser.on('close', () => {
      if (failed) return;
      if (files === 0) {
        reject(new InvalidParamError({ param: 'file', allowed: 'one file field', detail: 'the form holds no file: send the image as a file field (curl -F file=@photo.jpg)' }));
        return;
      }
      resolve(Buffer.concat(chunks));
    });
    req.pipe(parser);
  });
}
