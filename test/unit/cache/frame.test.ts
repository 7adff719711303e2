import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, PREFIX_BYTES } from '../../../src/cache/frame.js';
import type { CacheEntry } from '../../../src/cache/types.js';

const entry: CacheEntry = {
  data: Buffer.from([0, 1, 2, 0xff, 0xfe, 0xc3, 0x28]),
  meta: { kind: 'master', contentType: 'image/png', paid: true, attrs: { engine: 'segmind' } },
};

describe('frame', () => {
  it('round-trips data and meta, with and without a checksum', () => {
    for (const checksum of [true, false]) {
      const decoded = decodeFrame(encodeFrame(entry, { checksum }), { requireChecksum: checksum });
      expect(decoded).toEqual({ entry });
    }
  });

  it('costs the data plus a small header, not base64', () => {
    const data = Buffer.alloc(100_000, 7);
    const frame = encodeFrame({ data, meta: entry.meta }, { checksum: true });
    expect(frame.length - data.length).toBeLessThan(200);
  });

  const good = encodeFrame(entry, { checksum: true });
  const flip = (at: number) => {
    const copy = Buffer.from(good);
    copy[at] = (copy[at] ?? 0) ^ 0xff;
    return copy;
  };
  it.each([
    ['empty', Buffer.alloc(0), 'shorter than the frame prefix'],
    ['bad magic', flip(0), 'bad magic'],
    ['unknown version', flip(4), 'unknown frame version'],
    ['huge header length', flip(5), 'implausible header length'],
    ['truncated in the header', good.subarray(0, PREFIX_BYTES + 5), 'truncated inside the header'],
    ['garbled header', flip(PREFIX_BYTES + 1), 'header is not JSON'],
    ['truncated data', good.subarray(0, good.length - 1), 'data bytes, header says'],
    ['one flipped data byte', flip(good.length - 1), 'checksum mismatch'],
    ['trailing bytes', Buffer.concat([good, Buffer.from([1])]), 'data bytes, header says'],
  ])('refuses %s', (_name, frame, reason) => {
    const decoded = decodeFrame(frame, { requireChecksum: true });
    expect('error' in decoded && decoded.error).toContain(reason);
  });

  it('refuses a frame without checksum where one is required', () => {
    const decoded = decodeFrame(encodeFrame(entry, { checksum: false }), { requireChecksum: true });
    expect(decoded).toEqual({ error: 'no checksum' });
  });

  it('refuses a header of the wrong shape', () => {
    const bad = encodeFrame({ data: entry.data, meta: { ...entry.meta, kind: 'nope' as never } }, { checksum: true });
    expect(decodeFrame(bad, { requireChecksum: true })).toEqual({ error: 'header has the wrong shape' });
  });
});
