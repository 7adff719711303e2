/**
 * The fake Segmind upstream, by hand: `npm run fake-upstream`, then point the proxy at it to try the
 * segmind engine without a key or a bill. Port from FAKE_SEGMIND_PORT (default 4010), expected key
 * from FAKE_SEGMIND_KEY (default the fake's own).
 */
import { createFakeSegmind, FAKE_SEGMIND_KEY } from './segmind.js';

const port = Number(process.env.FAKE_SEGMIND_PORT ?? 4010);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`FAKE_SEGMIND_PORT: expected a port number, got ${process.env.FAKE_SEGMIND_PORT}`);
  process.exit(2);
}
const apiKey = process.env.FAKE_SEGMIND_KEY || FAKE_SEGMIND_KEY;
const host = process.env.FAKE_SEGMIND_HOST || '127.0.0.1';

const fake = await createFakeSegmind({
  port,
  host,
  apiKey,
  onRequest: (r) => console.log(`${new Date(r.at).toISOString()} ${r.method} ${r.url}${r.headers['x-api-key'] === apiKey ? '' : ' (no or wrong x-api-key)'}`),
});

console.log(`fake Segmind Clarity Upscaler listening on ${fake.url}`);
console.log(`expects x-api-key: ${fake.apiKey}`);
console.log('run the proxy against it:');
console.log(`  UPSCALE_ENGINE=segmind SEGMIND_BASE_URL=${fake.url} SEGMIND_API_KEY=${fake.apiKey} npm run dev`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void fake.close().then(() => process.exit(0));
  });
}
