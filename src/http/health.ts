/**
 * `/readyz`: each dependency reports itself. Only a failed `critical` check makes the instance
 * unready: Redis down is a detail (the instance still serves from memory and disk).
 */
import type { RequestHandler } from 'express';

export interface ReadinessCheck {
  name: string;
  critical: boolean;
  check(): Promise<{ ok: boolean; detail?: string }>;
}

export function readinessRoute(checks: ReadinessCheck[]): RequestHandler {
  return async (_req, res) => {
    const results = await Promise.all(
      checks.map(async (c) => {
        try {
          return { name: c.name, critical: c.critical, ...(await c.check()) };
        } catch (error) {
          return { name: c.name, critical: c.critical, ok: false, detail: (error as Error).message };
        }
      }),
    );
    const ready = results.every((r) => r.ok || !r.critical);
    res.setHeader('Cache-Control', 'no-store');
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unready',
      checks: Object.fromEntries(results.map(({ name, ...rest }) => [name, rest])),
    });
  };
}
