/**
 * Graceful shutdown at the HTTP level: once it starts, every answer still to be written (those in
 * flight included, not only requests that arrive later) says `Connection: close`, so keep-alive
 * sockets close after their last answer instead of holding `server.close()` open until the
 * client or the keep-alive timeout drops them.
 */
import type { ServerResponse } from 'node:http';

export interface Drain {
  /** Called for every request as it arrives. */
  track(res: ServerResponse): void;
  /** Shutdown begins. */
  start(): void;
  /** Whether it has begun (for answers written outside Express). */
  readonly draining: boolean;
}

export function createDrain(): Drain {
  const open = new Set<ServerResponse>();
  let draining = false;
  const closeAfter = (res: ServerResponse) => {
    if (!res.headersSent) res.setHeader('Connection', 'close');
  };
  return {
    get draining() {
      return draining;
    },
    track(res) {
      if (draining) return closeAfter(res);
      open.add(res);
      res.once('close', () => open.delete(res));
    },
    start() {
      draining = true;
      for (const res of open) closeAfter(res);
      open.clear();
    },
  };
}
