/**
 * The byte format shared by the disk and Redis tiers: one buffer holding the meta and the raw data,
 * so an image costs its own size plus a small header (no base64, no JSON around the bytes).
 *
 * ```
 * offset 0  "CCDN"            magic: a file or value that is not ours is refused, never parsed
 *        4  u8 version        bumped when the layout changes; an unknown version is a miss
 *        5  u32 BE n          length of the JSON header
 *        9  n bytes JSON      { meta: EntryMeta, length: data bytes, sha256?: hex of data }
 *      9+n  data
 * ```
 *
 * `length` catches truncation cheaply; `sha256` (written by the disk tier, where bytes sit for
 * months and a torn sector must not become a served image) catches any other corruption. Redis
 * values carry `length` only: hashing 8 MiB on every read would cost more than the read.
 */
import { createHash } from 'node:crypto';
import { ENTRY_KINDS, type CacheEntry, type EntryMeta } from './types.js';

const MAGIC = Buffer.from('CCDN', 'latin1');
const VERSION = 1;
/** magic + version + header length. */
export const PREFIX_BYTES = 9;
/** A header past this is garbage: real ones are a few hundred bytes. */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface FrameHeader {
  meta: EntryMeta;
  length: number;
  sha256?: string;
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The prefix and JSON header for `entry`; the frame is this followed by `entry.data`. */
export function encodeHeader(entry: CacheEntry, options: { checksum: boolean }): Buffer {
  const header: FrameHeader = { meta: entry.meta, length: entry.data.length };
  if (options.checksum) header.sha256 = sha256Hex(entry.data);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(PREFIX_BYTES);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt8(VERSION, 4);
  prefix.writeUInt32BE(json.length, 5);
  return Buffer.concat([prefix, json]);
}

export function encodeFrame(entry: CacheEntry, options: { checksum: boolean }): Buffer {
  return Buffer.concat([encodeHeader(entry, options), entry.data]);
}

/**
 * The JSON header length announced by a frame's first `PREFIX_BYTES`, or a reason it is not a
 * frame of ours.
 */
export function readPrefix(prefix: Buffer): { headerBytes: number } | { error: string } {
  if (prefix.length < PREFIX_BYTES) return { error: 'shorter than the frame prefix' };
  if (!prefix.subarray(0, 4).equals(MAGIC)) return { error: 'bad magic' };
  const version = prefix.readUInt8(4);
  if (version !== VERSION) return { error: `unknown frame version ${version}` };
  const headerBytes = prefix.readUInt32BE(5);
  if (headerBytes === 0 || headerBytes > MAX_HEADER_BYTES) return { error: `implausible header length ${headerBytes}` };
  return { headerBytes };
}

/** Parses and shape-checks the JSON header. */
export function parseHeader(json: Buffer): FrameHeader | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    return { error: 'header is not JSON' };
  }
  const header = value as Partial<FrameHeader> | null;
  const meta = header?.meta as Partial<EntryMeta> | undefined;
  if (
    !header ||
    typeof header.length !== 'number' ||
    !Number.isSafeInteger(header.length) ||
    header.length < 0 ||
    (header.sha256 !== undefined && typeof header.sha256 !== 'string') ||
    !meta ||
    typeof meta !== 'object' ||
    !ENTRY_KINDS.includes(meta.kind as EntryMeta['kind']) ||
    typeof meta.contentType !== 'string' ||
    (meta.expiresAt !== undefined && typeof meta.expiresAt !== 'number')
  ) {
    return { error: 'header has the wrong shape' };
  }
  return header as FrameHeader;
}

/**
 * The entry in `frame`, or why it is unusable. `data` is a view into `frame` (no copy).
 * `requireChecksum`: a frame without `sha256` is refused (the disk tier always writes one).
 */
/**
 * `requireChecksum`: a frame without one is an error. `verify` (default true): hash the data and
 * compare; false skips the hash (a file this process has verified already, see the disk tier).
 */
export function decodeFrame(frame: Buffer, options: { requireChecksum: boolean; verify?: boolean }): { entry: CacheEntry } | { error: string } {
  const prefix = readPrefix(frame);
  if ('error' in prefix) return prefix;
  const dataStart = PREFIX_BYTES + prefix.headerBytes;
  if (frame.length < dataStart) return { error: 'truncated inside the header' };
  const header = parseHeader(frame.subarray(PREFIX_BYTES, dataStart));
  if ('error' in header) return header;
  const data = frame.subarray(dataStart);
  if (data.length !== header.length) return { error: `holds ${data.length} data bytes, header says ${header.length}` };
  if (header.sha256 === undefined && options.requireChecksum) return { error: 'no checksum' };
  if (header.sha256 !== undefined && options.verify !== false && sha256Hex(data) !== header.sha256) return { error: 'checksum mismatch' };
  return { entry: { data, meta: header.meta } };
}
