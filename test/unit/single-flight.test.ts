import { describe, expect, it } from 'vitest';
import { SingleFlight } from '../../src/single-flight.js';

describe('SingleFlight', () => {
  it('joins identical concurrent work and says who joined', async () => {
    const flight = new SingleFlight<number>();
    let calls = 0;
    let release!: (n: number) => void;
    const work = () => {
      calls++;
      return new Promise<number>((resolve) => (release = resolve));
    };
    const first = flight.run('k', work);
    const second = flight.run('k', work);
    const other = flight.run('other', async () => 7);
    expect([first.joined, second.joined, other.joined]).toEqual([false, true, false]);
    expect(flight.size).toBe(2);
    release(42);
    expect(await Promise.all([first.promise, second.promise, other.promise])).toEqual([42, 42, 7]);
    expect(calls).toBe(1);
    expect(flight.size).toBe(0);
  });

  it('does not remember a failure: the next call runs the work again', async () => {
    const flight = new SingleFlight<string>();
    await expect(flight.run('k', async () => Promise.reject(new Error('boom'))).promise).rejects.toThrow('boom');
    expect(flight.size).toBe(0);
    await expect(flight.run('k', async () => 'ok').promise).resolves.toBe('ok');
  });
});
