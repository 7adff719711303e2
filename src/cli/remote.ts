/**
 * A running clarity-cdn server as the commands' `--server <url>` mode sees it: `POST /sources`,
 * `POST /jobs`, `GET /jobs/:id`, over one undici Agent (closed at the end, so no keep-alive socket
 * holds the process open). Every refusal is a `ServerProblemError` carrying the server's own
 * problem `code` and `detail`, which the commands print as they are.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { JobView } from '../jobs/index.js';
import { UsageError } from './usage.js';

/** What `POST /sources` answers. */
export interface SourceAnswer {
  hash: string;
  width: number;
  height: number;
  format: string;
  bytes: number;
}

/** An answer other than success, or no answer: `status` 0 when the server was not reached. */
export class ServerProblemError extends Error {
  override name = 'ServerProblemError';
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${detail} (${code})`);
  }
}

export interface Remote {
  /** The server's root, without a trailing slash. */
  readonly base: string;
  /** Resolves when `GET /healthz` answers 200. */
  health(): Promise<void>;
  addSource(input: Buffer | { url: string }): Promise<{ status: number; source: SourceAnswer }>;
  /** 200: the job was COMPLETED already (cached); 202: it was accepted and runs. */
  submitJob(body: Record<string, unknown>): Promise<{ status: number; job: JobView }>;
  getJob(id: string): Promise<JobView>;
  close(): Promise<void>;
}

/** `--server`: an absolute http(s) root; a path prefix (a proxy's mount point) is kept. */
export function parseServerUrl(raw: string): string {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new UsageError(`--server must be the http(s) root of a clarity-cdn server, such as http://localhost:3000, got ${JSON.stringify(raw)}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

async function problemOf(res: Dispatcher.ResponseData): Promise<ServerProblemError> {
  const text = await res.body.text();
  try {
    const body = JSON.parse(text) as { code?: unknown; detail?: unknown; title?: unknown };
    if (typeof body.code === 'string') {
      return new ServerProblemError(res.statusCode, body.code, String(body.detail ?? body.title ?? `HTTP ${res.statusCode}`));
    }
  } catch {
    // not problem+json: a proxy's page, or not clarity-cdn at all
  }
  return new ServerProblemError(res.statusCode, `HTTP_${res.statusCode}`, text.replace(/\s+/g, ' ').trim().slice(0, 200) || `HTTP ${res.statusCode}`);
}

export function createRemote(options: { server: string; token?: string }): Remote {
  const base = parseServerUrl(options.server);
  const agent = new Agent({ keepAliveTimeout: 10_000 });
  const auth: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};

  async function call<T>(method: 'GET' | 'POST', path: string, body?: { data: Buffer | string; type: string }): Promise<{ status: number; json: T }> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${base}${path}`, {
        method,
        dispatcher: agent,
        headers: { accept: 'application/json', ...auth, ...(body ? { 'content-type': body.type } : {}) },
        ...(body ? { body: body.data } : {}),
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'CONNECTION_FAILED';
      throw new ServerProblemError(0, code, `${method} ${base}${path}: ${(error as Error).message}`);
    }
    if (res.statusCode >= 300) throw await problemOf(res);
    return { status: res.statusCode, json: (await res.body.json()) as T };
  }

  return {
    base,
    async health() {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(`${base}/healthz`, { dispatcher: agent });
      } catch (error) {
        throw new ServerProblemError(0, (error as NodeJS.ErrnoException).code ?? 'CONNECTION_FAILED', `cannot reach ${base}: ${(error as Error).message}`);
      }
      await res.body.dump();
      if (res.statusCode !== 200) throw new ServerProblemError(res.statusCode, `HTTP_${res.statusCode}`, `${base}/healthz answered ${res.statusCode}: is this a clarity-cdn server?`);
    },
    async addSource(input) {
      const body = Buffer.isBuffer(input)
        ? { data: input, type: 'application/octet-stream' }
        : { data: JSON.stringify({ url: input.url }), type: 'application/json' };
      const { status, json } = await call<SourceAnswer>('POST', '/sources', body);
      return { status, source: json };
    },
    async submitJob(job) {
      const { status, json } = await call<JobView>('POST', '/jobs', { data: JSON.stringify(job), type: 'application/json' });
      return { status, job: json };
    },
    async getJob(id) {
      return (await call<JobView>('GET', `/jobs/${id}`)).json;
    },
    close: () => agent.close(),
  };
}
