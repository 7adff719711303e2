/**
 * Durable small-file writes: a temp file unique to this writer, fsynced, renamed over the target,
 * then the directory fsynced, so a reader (or a restart after a crash) sees the old file or the
 * new one, never half of one, and a write that resolved survives a power cut.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Makes a rename durable. Not every platform can open a directory; there it is as durable as the OS makes it. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // EINVAL/EPERM on some filesystems: nothing more can be done here.
  } finally {
    await handle.close();
  }
}

export async function writeFileAtomic(path: string, data: Buffer | string): Promise<void> {
  // Unique per writer: concurrent writers of one path (two processes) each rename whole files.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  await syncDir(dirname(path));
}
