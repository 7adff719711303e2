import { describe, expect, it } from 'vitest';
import { createCircuitBreaker } from '../../../src/cache/breaker.js';

function setup(options = { failureThreshold: 3, cooldownMs: 1000, maxCooldownMs: 4000 }) {
  let now = 0;
  const events: string[] = [];
  const breaker = createCircuitBreaker(options, () => now, {
    onOpen: ({ cooldownMs }) => events.push(`open ${cooldownMs}`),
    onClose: () => events.push('close'),
  });
  return { breaker, events, advance: (ms: number) => (now += ms) };
}

describe('circuit breaker', () => {
  it('stays closed below the threshold, and a success resets the count', () => {
    const { breaker } = setup();
    breaker.failure();
    breaker.failure();
    breaker.success();
    breaker.failure();
    breaker.failure();
    expect(breaker.state()).toBe('closed');
    expect(breaker.allow()).toBe(true);
  });

  it('opens after N consecutive failures and refuses calls during the cool-down', () => {
    const { breaker, events, advance } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    expect(breaker.state()).toBe('open');
    expect(events).toEqual(['open 1000']);
    advance(999);
    expect(breaker.allow()).toBe(false);
  });

  it('lets exactly one probe through after the cool-down; its success closes the breaker', () => {
    const { breaker, events, advance } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    advance(1000);
    expect(breaker.allow()).toBe(true);
    expect(breaker.state()).toBe('half-open');
    expect(breaker.allow()).toBe(false);
    breaker.success();
    expect(breaker.state()).toBe('closed');
    expect(events).toEqual(['open 1000', 'close']);
  });

  it('doubles the cool-down after each failed probe, up to the maximum, and resets it on success', () => {
    const { breaker, events, advance } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    for (const cooldown of [1000, 2000, 4000, 4000]) {
      advance(cooldown - 1);
      expect(breaker.allow()).toBe(false);
      advance(1);
      expect(breaker.allow()).toBe(true);
      breaker.failure();
    }
    expect(events).toEqual(['open 1000', 'open 2000', 'open 4000', 'open 4000', 'open 4000']);
    advance(4000);
    breaker.allow();
    breaker.success();
    for (let i = 0; i < 3; i++) breaker.failure();
    expect(events.at(-1)).toBe('open 1000');
  });

  it('ignores late results of calls made before it opened', () => {
    const { breaker } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    breaker.success();
    breaker.failure();
    expect(breaker.state()).toBe('open');
  });

  it('reset() closes it at once (the dependency reconnected)', () => {
    const { breaker, events } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    breaker.reset();
    expect(breaker.state()).toBe('closed');
    expect(breaker.allow()).toBe(true);
    expect(events).toEqual(['open 1000', 'close']);
  });

  it.each([0, 1.5, -1])('refuses failureThreshold %s', (failureThreshold) => {
    expect(() => createCircuitBreaker({ failureThreshold })).toThrow(/failureThreshold/);
  });
});
