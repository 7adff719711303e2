import type { LookupAddress, LookupOptions } from 'node:dns';
import { createServer } from 'node:http';
import { getDefaultAutoSelectFamily, setDefaultAutoSelectFamily, type AddressInfo, type LookupFunction } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ADDRESS_REFUSED,
  AddressRefusedError,
  createGuardedAgent,
  findAddressRefusal,
  isPublicAddress,
} from '../../../src/security/ssrf.js';

describe('isPublicAddress', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'linkLocal'], // cloud metadata (AWS, GCP, Azure)
    ['100.64.0.1', 'carrierGradeNat'],
    ['100.100.100.200', 'carrierGradeNat'], // Alibaba Cloud metadata
    ['0.0.0.0', 'unspecified'], // connects to this host on Linux
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'], // IPv4-mapped: judged as the v4 it carries
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:7f00:1', 'loopback'], // the same, as WHATWG URL spells it
    ['fd00:ec2::254', 'uniqueLocal'], // AWS metadata over IPv6
    ['fe80::1', 'linkLocal'],
    ['ff02::1', 'multicast'],
    ['64:ff9b::7f00:1', 'rfc6052'], // NAT64 of 127.0.0.1
    ['2002:7f00:1::', '6to4'], // 6to4 of 127.0.0.1
    ['2001::1', 'teredo'],
    ['::7f00:1', 'ipv4Compatible'], // deprecated ::a.b.c.d, unicast to ipaddr.js
    ['2001:db8::1', 'reserved'],
    ['localhost', 'invalid'], // a name, not an address
    ['127.1', 'invalid'], // ipaddr.js reads it as 127.0.0.1; net.connect would not connect to it as an IP
    ['010.0.0.1', 'invalid'],
    ['', 'invalid'],
    ['[::1]', 'invalid'],
  ])('refuses %j as %s', (address, range) => {
    expect(isPublicAddress(address)).toEqual({ ok: false, range });
  });

  it.each(['8.8.8.8', '1.1.1.1', '93.184.215.14', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e', '::ffff:8.8.8.8'])(
    'allows %j',
    (address) => {
      expect(isPublicAddress(address)).toEqual({ ok: true });
    },
  );
});

/** A lookup with fixed answers that records how Node called it, answering in the form asked. */
function fixedLookup(answers: LookupAddress[]) {
  const calls: LookupOptions[] = [];
  const lookup = ((_hostname: string, options: LookupOptions, callback: (...args: unknown[]) => void) => {
    calls.push(options);
    if (options.all) callback(null, answers);
    else callback(null, answers[0]?.address, answers[0]?.family);
  }) as LookupFunction;
  return { lookup, calls };
}

/** The rejection of one request, for assertions on its shape. */
async function failure(url: string, dispatcher: ReturnType<typeof createGuardedAgent>): Promise<unknown> {
  try {
    const res = await request(url, { dispatcher });
    await res.body.dump();
  } catch (error) {
    return error;
  }
  throw new Error(`expected ${url} to be refused`);
}

// Refusals come before any socket is opened, so nothing here listens: every port is closed.
describe('createGuardedAgent refusals reach undici.request callers', () => {
  const defaultAutoSelect = getDefaultAutoSelectFamily();
  afterEach(() => setDefaultAutoSelectFamily(defaultAutoSelect));

  it('refuses an IP literal, which Node connects to without any lookup', async () => {
    const { lookup, calls } = fixedLookup([]);
    const agent = createGuardedAgent({ allowPrivate: false, lookup });
    const error = await failure('http://[::ffff:127.0.0.1]:9/', agent);
    // undici hands the connector's error to the request as is: no wrapping to look through.
    expect(error).toBeInstanceOf(AddressRefusedError);
    expect(error).toMatchObject({ code: ADDRESS_REFUSED, host: '::ffff:7f00:1', range: 'loopback', literal: true });
    expect(calls).toEqual([]);
    await agent.close();
  });

  it('refuses a name when any of its addresses is not public, and finds the refusal through causes', async () => {
    const { lookup, calls } = fixedLookup([
      { address: '8.8.8.8', family: 4 },
      { address: '10.0.0.7', family: 4 },
    ]);
    const agent = createGuardedAgent({ allowPrivate: false, lookup });
    const error = await failure('http://mixed.test:9/', agent);
    expect(error).toMatchObject({ code: ADDRESS_REFUSED, host: 'mixed.test', address: '10.0.0.7', range: 'private', literal: false });
    // Node 20 races families (autoSelectFamily), so it asks for every address.
    expect(calls).toMatchObject([{ all: true }]);
    expect(findAddressRefusal(new Error('outer', { cause: new Error('middle', { cause: error }) }))).toBe(error);
    expect(findAddressRefusal(new AggregateError([new Error('x'), error]))).toBe(error);
    expect(findAddressRefusal(new Error('unrelated'))).toBeUndefined();
    await agent.close();
  });

  it('checks every address even when Node asks for a single one', async () => {
    setDefaultAutoSelectFamily(false);
    const { lookup, calls } = fixedLookup([
      { address: '1.1.1.1', family: 4 },
      { address: '::1', family: 6 },
    ]);
    const agent = createGuardedAgent({ allowPrivate: false, lookup });
    const error = await failure('http://single.test:9/', agent);
    expect(error).toMatchObject({ code: ADDRESS_REFUSED, address: '::1', range: 'loopback' });
    // The guard asked for every address though Node wanted one.
    expect(calls).toMatchObject([{ all: true }]);
    await agent.close();
  });

  it('answers Node in the single-address form when that is what it asked for', async () => {
    setDefaultAutoSelectFamily(false);
    const server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const { lookup } = fixedLookup([{ address: '127.0.0.1', family: 4 }]);
    const agent = createGuardedAgent({ allowPrivate: false, lookup, allowAddress: (a) => a === '127.0.0.1' });
    try {
      // An array handed back to a single-form lookup would fail here with ERR_INVALID_IP_ADDRESS.
      const res = await request(`http://single.test:${port}/`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('ok');
    } finally {
      await agent.close();
      server.close();
    }
  });

  it('reports a name with no addresses as ENOTFOUND rather than crashing Node', async () => {
    const { lookup } = fixedLookup([]);
    const agent = createGuardedAgent({ allowPrivate: false, lookup });
    expect(await failure('http://empty.test:9/', agent)).toMatchObject({ code: 'ENOTFOUND' });
    await agent.close();
  });
});
