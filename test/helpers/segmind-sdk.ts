/**
 * A client that behaves as the official `segmind` SDK does (UPSTREAM.md): `x-api-key` on every
 * call to the API root; sync posts to `/v1/<model>` and reads the bytes; `run` submits to
 * `/v2/<model>`, polls the `status_url` it got back until a terminal status (judged by the body's
 * `status`, whatever the HTTP code), then reads `response_url` and downloads `output` (no key: the
 * output host is not the API's). Written from the protocol, not from our gateway's code.
 */
import { request } from 'undici';

export interface SdkRun {
  requestId: string;
  submit: Record<string, unknown>;
  result: Record<string, unknown>;
  image: Buffer;
  polls: number;
}

export class SegmindLikeClient {
  constructor(
    readonly apiKey: string,
    readonly baseUrl: string,
  ) {}

  private headers() {
    return { 'x-api-key': this.apiKey, 'content-type': 'application/json' };
  }

  /** `POST /v1/<model>`: the raw answer. */
  async sync(model: string, payload: Record<string, unknown>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const res = await request(`${this.baseUrl}/v1/${model}`, { method: 'POST', headers: this.headers(), body: JSON.stringify(payload) });
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
  }

  /** `POST /v2/<model>`: the submit answer as JSON, with its status code. */
  async submit(model: string, payload: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await request(`${this.baseUrl}/v2/${model}`, { method: 'POST', headers: this.headers(), body: JSON.stringify(payload) });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  }

  /** Polls a submitted request to its end and downloads the output; throws on FAILED with the upstream's error. */
  async finish(submit: Record<string, unknown>): Promise<SdkRun> {
    const statusUrl = String(submit.status_url ?? submit.poll_url);
    let polls = 0;
    for (;;) {
      polls += 1;
      const res = await request(statusUrl, { headers: { 'x-api-key': this.apiKey } });
      const body = (await res.body.json()) as { status?: string; error?: string };
      if (body.status === 'FAILED') throw Object.assign(new Error(body.error ?? 'FAILED'), { httpStatus: res.statusCode, body });
      if (body.status === 'COMPLETED') break;
      // The SDK waits a second between polls; this client waits 10 ms (its pace, not an assertion).
      await new Promise<void>((resolve) => setTimeout(resolve, 10));
    }
    const result = await request(String(submit.response_url), { headers: { 'x-api-key': this.apiKey } });
    const resultBody = (await result.body.json()) as Record<string, unknown>;
    const output = await request(String(resultBody.output));
    if (output.statusCode !== 200) throw new Error(`output download answered ${output.statusCode}`);
    return { requestId: String(submit.request_id), submit, result: resultBody, image: Buffer.from(await output.body.arrayBuffer()), polls };
  }

  /** `segmind.run()`: submit, poll, download. */
  async run(model: string, payload: Record<string, unknown>): Promise<SdkRun> {
    const { status, body } = await this.submit(model, payload);
    if (status !== 200) throw Object.assign(new Error(String(body.error)), { httpStatus: status, body });
    return this.finish(body);
  }
}
