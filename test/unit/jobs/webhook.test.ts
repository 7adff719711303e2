import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  parseWebhookUrl,
  signWebhook,
  verifyWebhook,
  webhookRetryDelay,
  type WebhookRetryPolicy,
} from '../../../src/jobs/webhook.js';

const KEY = 'whsec_test_key';
const OTHER_KEY = 'whsec_other_key';
const T = 1_700_000_000;
const BODY = '{"id":"job_1","status":"COMPLETED","output":"https://cdn.example/é.png"}';

/** The documented recipe, computed here independently of signWebhook. */
const expectedV1 = (key: string, t: number, body: string) =>
  createHmac('sha256', key).update(`${t}.${body}`, 'utf8').digest('hex');

describe('signWebhook', () => {
  it('is t=<seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>', () => {
    expect(signWebhook(BODY, KEY, T)).toBe(`t=${T},v1=${expectedV1(KEY, T, BODY)}`);
  });

  it('matches a fixed known answer', () => {
    // HMAC-SHA256("key", "1700000000.{}"), computed once with node:crypto and pinned here, so a
    // change to the recipe (or to the helper above) cannot pass unnoticed.
    const pinned = '9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae';
    expect(expectedV1('key', T, '{}')).toBe(pinned);
    expect(signWebhook('{}', 'key', T)).toBe(`t=1700000000,v1=${pinned}`);
  });

  it('signs whole seconds', () => {
    expect(signWebhook(BODY, KEY, T + 0.9)).toBe(signWebhook(BODY, KEY, T));
  });
});

describe('verifyWebhook', () => {
  const header = signWebhook(BODY, KEY, T);
  const v1 = expectedV1(KEY, T, BODY);

  it.each<[string, string, string, readonly string[], { toleranceSeconds?: number; nowSeconds?: number }, boolean]>([
    ['the signing key', BODY, header, [KEY], { nowSeconds: T }, true],
    ['one of several keys (rotation)', BODY, header, [OTHER_KEY, KEY], { nowSeconds: T }, true],
    ['another key', BODY, header, [OTHER_KEY], { nowSeconds: T }, false],
    ['no key at all', BODY, header, [], { nowSeconds: T }, false],
    ['a tampered body', BODY.replace('COMPLETED', 'FAILED'), header, [KEY], { nowSeconds: T }, false],
    ['a body with one byte more', `${BODY} `, header, [KEY], { nowSeconds: T }, false],
    ['a timestamp 300 s old (the default tolerance)', BODY, header, [KEY], { nowSeconds: T + 300 }, true],
    ['a timestamp 301 s old', BODY, header, [KEY], { nowSeconds: T + 301 }, false],
    ['a timestamp 301 s in the future', BODY, header, [KEY], { nowSeconds: T - 301 }, false],
    ['an old timestamp within a wider tolerance', BODY, header, [KEY], { nowSeconds: T + 3000, toleranceSeconds: 3600 }, true],
    ['a re-signed timestamp (replay with a new t)', BODY, `t=${T + 100},v1=${v1}`, [KEY], { nowSeconds: T + 100 }, false],
    ['several v1, one valid', BODY, `t=${T},v1=${'0'.repeat(64)},v1=${v1}`, [KEY], { nowSeconds: T }, true],
    ['an unknown scheme next to v1', BODY, `t=${T},v0=zzz,v1=${v1}`, [KEY], { nowSeconds: T }, true],
    ['spaces after commas', BODY, `t=${T}, v1=${v1}`, [KEY], { nowSeconds: T }, true],
    ['an empty header', BODY, '', [KEY], { nowSeconds: T }, false],
    ['no timestamp', BODY, `v1=${v1}`, [KEY], { nowSeconds: T }, false],
    ['no v1', BODY, `t=${T}`, [KEY], { nowSeconds: T }, false],
    ['two timestamps', BODY, `t=${T},t=${T},v1=${v1}`, [KEY], { nowSeconds: T }, false],
    ['a non-numeric timestamp', BODY, `t=${T}x,v1=${v1}`, [KEY], { nowSeconds: T }, false],
    ['an upper-case digest', BODY, `t=${T},v1=${v1.toUpperCase()}`, [KEY], { nowSeconds: T }, false],
    ['a short digest', BODY, `t=${T},v1=${v1.slice(2)}`, [KEY], { nowSeconds: T }, false],
    ['a part without =', BODY, `t=${T},v1=${v1},junk`, [KEY], { nowSeconds: T }, false],
  ])('%s → %s', (_name, body, value, keys, options, expected) => {
    expect(verifyWebhook(body, value, keys, options)).toBe(expected);
  });

  it('reads the clock when no nowSeconds is given', () => {
    const fresh = signWebhook(BODY, KEY, Math.floor(Date.now() / 1000));
    expect(verifyWebhook(BODY, fresh, [KEY])).toBe(true);
    expect(verifyWebhook(BODY, header, [KEY])).toBe(false); // T is years ago
  });
});

describe('webhookRetryDelay', () => {
  const policy: WebhookRetryPolicy = { baseDelayMs: 1000, maxDelayMs: 60_000 };

  it.each([
    // attempt, random, expected: full jitter, random × min(max, base × 2^attempt)
    [0, 0, 0],
    [0, 0.5, 500],
    [0, 1, 1000],
    [1, 1, 2000],
    [2, 0.25, 1000],
    [5, 1, 32_000],
    [6, 1, 60_000], // 64 000 capped
    [30, 0.5, 30_000],
  ])('attempt %i with random %d → %i ms', (attempt, random, expected) => {
    expect(webhookRetryDelay(attempt, undefined, policy, () => random)).toBe(expected);
  });

  it('clamps a random source that strays outside [0, 1]', () => {
    expect(webhookRetryDelay(0, undefined, policy, () => 7)).toBe(1000);
    expect(webhookRetryDelay(0, undefined, policy, () => -1)).toBe(0);
  });

  it.each([
    [7000, 7000],
    [0, 0],
    [-5, 0],
    [12.2, 13],
    [3_600_000, 60_000], // a receiver's hint is capped: it cannot park a delivery for an hour
  ])('takes a Retry-After of %d ms as %d ms, without jitter', (hint, expected) => {
    expect(webhookRetryDelay(4, hint, policy, () => 0.5)).toBe(expected);
  });

  it('ignores a non-finite hint', () => {
    expect(webhookRetryDelay(0, Number.NaN, policy, () => 1)).toBe(1000);
  });
});

describe('parseWebhookUrl', () => {
  it.each([
    ['https://hooks.example.com/clarity?token=abc', true],
    ['http://hooks.example.com:8080/x', true],
    ['ftp://hooks.example.com/x', false],
    ['file:///etc/passwd', false],
    ['javascript:alert(1)', false],
    ['/relative/path', false],
    ['not a url', false],
    ['https://user:pass@hooks.example.com/x', false],
    ['https://user@hooks.example.com/x', false],
  ])('%s → ok %s', (raw, ok) => {
    expect(parseWebhookUrl(raw).ok).toBe(ok);
  });

  it('says why it refused', () => {
    expect(parseWebhookUrl('ftp://h/x')).toEqual({ ok: false, reason: 'ftp: URLs are not supported (http: or https: only)' });
    expect(parseWebhookUrl('https://u:p@h/x')).toEqual({ ok: false, reason: 'the URL may not carry credentials' });
  });
});
