/**
 * `multipart/form-data` uploads (`curl -F file=@photo.jpg`, an HTML form): the first file field is
 * the image; other fields are ignored; a second file is a 400 (which one was meant?). busboy
 * streams the parts and stops counting at the byte limit, so an oversize upload is refused
 * without being buffered whole. Every way a form can end badly (cut mid-file, too many parts, a
 * client that goes away) settles the promise and lets go of what was buffered.
 */
import busboy from 'busboy';
import type { Request } from 'express';
import { InvalidParamError } from '../params/index.js';
import { SourceTooLargeError } from '../sources/index.js';

/** Fields and parts a form may hold besides its file; past them the form is refused, not truncated. */
const MAX_FIELDS = 20;
const MAX_PARTS = 40;

export async function readMultipartFile(req: Request, maxBytes: number): Promise<Buffer> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { files: 1, fileSize: maxBytes, fields: MAX_FIELDS, parts: MAX_PARTS } });
  } catch (error) {
    throw new InvalidParamError({
      param: 'Content-Type',
      allowed: 'multipart/form-data; boundary=…',
      detail: 'the multipart body has no boundary in its Content-Type',
      cause: error,
    });
  }
  const unreadable = (detail: string, cause?: unknown) =>
    new InvalidParamError({ param: 'body', allowed: 'a complete multipart/form-data body with one file', detail, ...(cause ? { cause } : {}) });

  return new Promise<Buffer>((resolve, reject) => {
    let chunks: Buffer[] = [];
    let files = 0;
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      chunks = [];
      req.unpipe(parser);
      // Drain what the client still sends, so the answer can be written; the socket stays usable.
      req.resume();
      reject(error);
    };
    parser.on('file', (_field, stream) => {
      files += 1;
      stream.on('data', (chunk: Buffer) => {
        if (!settled) chunks.push(chunk);
      });
      // A form cut inside its file part destroys this stream with an error: unheard, it would be
      // an uncaught exception that ends the process.
      stream.on('error', (error: Error) => fail(unreadable('the multipart body ended inside its file: the upload was cut off', error)));
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
    const tooManyParts = () => fail(unreadable(`the form holds more than ${MAX_FIELDS} fields or ${MAX_PARTS} parts; send one file`));
    parser.on('fieldsLimit', tooManyParts);
    parser.on('partsLimit', tooManyParts);
    parser.on('error', (error: Error) => fail(unreadable('the multipart body could not be read', error)));
    parser.on('close', () => {
      if (settled) return;
      if (files === 0) {
        fail(new InvalidParamError({ param: 'file', allowed: 'one file field', detail: 'the form holds no file: send the image as a file field (curl -F file=@photo.jpg)' }));
        return;
      }
      settled = true;
      resolve(Buffer.concat(chunks));
    });
    // A client that goes away mid-upload: nobody will read the answer, but the buffers must go.
    req.on('close', () => {
      if (!req.complete) fail(unreadable('the client closed the connection before the form ended'));
    });
    req.pipe(parser);
  });
}
