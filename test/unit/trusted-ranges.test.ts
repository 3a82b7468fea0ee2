// How much of the internet the trusted ranges cover (src/config/cidr.ts) and the open-relay
// judgement over them (judgeTrusted in src/config/check-smtp.ts): IPv4-mapped IPv6 read as the
// IPv4 it is, overlapping and adjacent ranges counted once, non-public space left out of the
// counts, and the thresholds (a /8 of public IPv4, a /32 of public IPv6) from both sides.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { judgeTrusted, type TrustedEntry } from '../../src/config/check-smtp.js';
import {
  AddressSet,
  coverage,
  coversMappedV4,
  formatCidr,
  isNonPublic,
  MAX_PUBLIC_V4,
  MAX_PUBLIC_V6,
  mergeSpans,
  openRelayFindings,
  parseCidr,
  spanOf,
  subtractSpans,
  unmapV4,
} from '../../src/config/cidr.js';

const cov = (...texts: string[]) => coverage(texts.map(parseCidr));
const findings = (...texts: string[]) => openRelayFindings(cov(...texts)).map((f) => `${f.family}:${f.kind}`);
const V4 = 1n << 32n;

describe('IPv4-mapped IPv6 is IPv4', () => {
  test('a range inside ::ffff:0:0/96 with prefix >= 96 parses as the IPv4 range it means', () => {
    for (const [text, want, hostBits] of [
      ['::ffff:0:0/96', '0.0.0.0/0', false],
      ['::ffff:10.0.0.0/104', '10.0.0.0/8', false],
      ['::ffff:10.0.0.1/104', '10.0.0.0/8', true],
      ['::ffff:a00:0/104', '10.0.0.0/8', false],
      ['::FFFF:127.0.0.5', '127.0.0.5/32', false],
      ['::ffff:127.0.0.5/128', '127.0.0.5/32', false],
      ['0:0:0:0:0:ffff:7f00:5', '127.0.0.5/32', false],
      ['::ffff:192.168.1.0/120', '192.168.1.0/24', false],
    ] as const) {
      const c = parseCidr(text);
      assert.equal(c.family, 4, text);
      assert.equal(formatCidr(c), want, text);
      assert.equal(c.hostBitsSet, hostBits, text);
    }
  });

  test('other IPv6 ranges stay IPv6; those with a shorter prefix that hold ::ffff:0:0/96 cover all of IPv4', () => {
    for (const [text, covers] of [
      ['::/0', true],
      ['::/1', true],
      ['::/64', true],
      ['::/80', true],
      ['::ffff:0:0/95', true],
      ['::/96', false], // IPv4-compatible, not mapped
      ['::1/128', false],
      ['8000::/1', false],
      ['2001:db8::/32', false],
      ['fd00::/8', false],
    ] as const) {
      const c = parseCidr(text);
      assert.equal(c.family, 6, text);
      assert.equal(coversMappedV4(c), covers, text);
      assert.equal(cov(text).allV4, covers, text);
    }
  });

  test('unmapV4 reads every spelling of a mapped address and leaves others alone', () => {
    assert.equal(unmapV4('::ffff:127.0.0.5'), '127.0.0.5');
    assert.equal(unmapV4('::FFFF:7f00:5'), '127.0.0.5');
    assert.equal(unmapV4('0:0:0:0:0:ffff:7f00:5'), '127.0.0.5');
    for (const same of ['127.0.0.5', '::1', 'ffff::1', '2001:db8::ffff:1', '::7f00:5', 'not an address']) assert.equal(unmapV4(same), same);
  });

  test('AddressSet matches a mapped config range and a covering IPv6 range against IPv4 clients in any spelling', () => {
    const mapped = new AddressSet([parseCidr('::ffff:127.0.0.5/128')]);
    for (const client of ['127.0.0.5', '::ffff:127.0.0.5', '::ffff:7f00:5']) assert.ok(mapped.has(client), client);
    for (const client of ['127.0.0.1', '::ffff:127.0.0.1', '::1', '::7f00:5']) assert.ok(!mapped.has(client), client);

    // a range object written in mapped form (not through parseCidr) is read the same way
    const raw = new AddressSet([{ family: 6, address: '::ffff:a00:0', prefix: 104, hostBitsSet: false }]);
    assert.ok(raw.has('10.1.2.3') && raw.has('::ffff:10.1.2.3') && !raw.has('11.0.0.1'));

    const short = new AddressSet([parseCidr('::/64')]);
    for (const client of ['1.2.3.4', '::ffff:1.2.3.4', '::1', '::5']) assert.ok(short.has(client), client);
    assert.ok(!short.has('2001:db8::1'));

    const v6 = new AddressSet([parseCidr('2001:db8::/32')]);
    assert.ok(v6.has('2001:db8::1') && !v6.has('1.2.3.4') && !v6.has('::ffff:1.2.3.4'));
  });
});

describe('coverage', () => {
  test('spans: merge joins overlapping and adjacent ranges, subtract cuts holes', () => {
    assert.deepEqual(
      mergeSpans([
        [10n, 20n],
        [0n, 4n],
        [5n, 7n],
        [15n, 30n],
        [40n, 40n],
      ]),
      [
        [0n, 7n],
        [10n, 30n],
        [40n, 40n],
      ],
    );
    assert.deepEqual(
      subtractSpans(
        [[0n, 100n]],
        [
          [0n, 9n],
          [50n, 59n],
          [100n, 200n],
        ],
      ),
      [
        [10n, 49n],
        [60n, 99n],
      ],
    );
    assert.deepEqual(spanOf(parseCidr('10.0.0.0/8')), [10n << 24n, (11n << 24n) - 1n]);
  });

  test('the union of halves is all of IPv4, in plain and in mapped form', () => {
    assert.equal(cov('0.0.0.0/1').allV4, false);
    assert.equal(cov('0.0.0.0/1', '128.0.0.0/1').allV4, true);
    assert.equal(cov('::ffff:0:0/97', '128.0.0.0/1').allV4, true);
    assert.equal(cov('::ffff:0:0/97', '::ffff:128.0.0.0/97').allV4, true);
    assert.equal(cov('0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2').allV4, false);
    assert.equal(cov('0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2', '192.0.0.0/2').allV4, true);
    assert.deepEqual(cov('0.0.0.0/1', '128.0.0.0/1').v4, [[0n, V4 - 1n]]);
    assert.equal(cov('::/1', '8000::/1').allV6, true);
    assert.equal(cov('::/1', '8000::/2').allV6, false);
  });

  test('overlaps are counted once', () => {
    assert.equal(cov('1.0.0.0/8', '1.2.0.0/16', '1.0.0.0/9', '1.255.255.255').publicV4, 1n << 24n);
    assert.equal(cov('8.8.8.0/24', '8.8.8.0/24', '8.8.8.8').publicV4, 256n);
    assert.equal(cov('8.8.8.0/24', '::ffff:8.8.8.0/120').publicV4, 256n, 'the mapped form of the same range');
    assert.equal(cov('2a00::/32', '2a00:0:1::/48', '2a00::/33').publicV6, 1n << 96n);
  });

  test('non-public space is left out of the counts', () => {
    assert.equal(cov('10.0.0.0/8', '192.168.0.0/16', '172.16.0.0/12', '127.0.0.0/8', '100.64.0.0/10').publicV4, 0n);
    assert.equal(cov('0.0.0.0/7').publicV4, 1n << 24n, '0.0.0.0/8 is not public, 1.0.0.0/8 is');
    assert.equal(cov('10.0.0.0/7').publicV4, 1n << 24n, '11.0.0.0/8 is public');
    assert.equal(cov('fc00::/7', 'fe80::/10', '2001:db8::/32', '::1').publicV6, 0n);
    assert.equal(cov('8.8.8.8').publicV4, 1n);
    // ::/64 holds ::, ::1 and the mapped block: the last is IPv4 (counted as all of it), not IPv6
    const c = cov('::/64');
    assert.equal(c.publicV6, (1n << 64n) - (1n << 32n) - 2n);
    assert.equal(c.allV4, true);
    assert.ok(c.publicV4 > MAX_PUBLIC_V4);
    for (const [text, nonPublic] of [
      ['10.1.0.0/16', true],
      ['::ffff:10.0.0.0/104', true],
      ['0.0.0.0/7', false],
      ['198.18.0.0/15', true],
      ['192.0.0.0/23', false],
      ['fd00::/8', true],
      ['::/64', false],
      ['2a00::/64', false],
    ] as const) {
      assert.equal(isNonPublic(parseCidr(text)), nonPublic, text);
    }
  });
});

describe('thresholds', () => {
  test('IPv4: a public /8 is the most; one address more is an open relay', () => {
    assert.equal(MAX_PUBLIC_V4, 16_777_216n);
    assert.deepEqual(findings('1.0.0.0/8'), []);
    assert.deepEqual(findings('1.0.0.0/9', '1.128.0.0/9'), []);
    assert.deepEqual(findings('1.0.0.0/8', '10.0.0.0/8', '192.168.0.0/16'), [], 'private space does not count');
    assert.deepEqual(findings('1.0.0.0/8', '2.0.0.0/32'), ['4:public']);
    assert.equal(openRelayFindings(cov('1.0.0.0/8', '2.0.0.0/32'))[0]!.count, MAX_PUBLIC_V4 + 1n);
    assert.deepEqual(findings('2.0.0.0/7'), ['4:public']);
    assert.deepEqual(findings('0.0.0.0/7'), [], 'half of it is 0.0.0.0/8');
  });

  test('IPv6: a public /32 is the most; more is an open relay', () => {
    assert.equal(MAX_PUBLIC_V6, 1n << 96n);
    assert.deepEqual(findings('2a00::/32'), []);
    assert.deepEqual(findings('2a00::/32', 'fd00::/8', 'fe80::/10'), []);
    assert.deepEqual(findings('2a00::/32', '2a01::1'), ['6:public']);
    assert.deepEqual(findings('2a00::/31'), ['6:public']);
    assert.deepEqual(findings('fc00::/7'), [], 'unique local space, however large, is not public');
  });

  test('all of a family is named as such, whatever its count', () => {
    assert.deepEqual(findings('0.0.0.0/0'), ['4:all']);
    assert.deepEqual(findings('::ffff:0:0/96'), ['4:all']);
    assert.deepEqual(findings('::/64'), ['4:all']);
    assert.deepEqual(findings('::/1'), ['4:all', '6:public']);
    assert.deepEqual(findings('::/0'), ['4:all', '6:all']);
    assert.deepEqual(findings('0.0.0.0/1', '128.0.0.0/1'), ['4:all']);
    assert.deepEqual(findings('10.0.0.0/8', 'fd00::/8', '192.168.0.0/16', '8.8.8.0/24'), []);
  });
});

describe('judgeTrusted', () => {
  const entries = (key: TrustedEntry['key'], ...texts: string[]): TrustedEntry[] => texts.map((text, index) => ({ key, index, text, cidr: parseCidr(text) }));
  const summary = (list: readonly TrustedEntry[]) => {
    const v = judgeTrusted(list);
    return {
      alone: [...v.alone].filter(([, f]) => f.length).map(([e, f]) => `${e.key}[${e.index}] ${f.map((x) => `${x.family}:${x.kind}`).join(',')}`),
      together: v.together.map((u) => `${u.culprit.key}[${u.culprit.index}] ${u.findings.map((x) => `${x.family}:${x.kind}`).join(',')} <- ${u.contributors.map((e) => e.text).join(' + ')}`),
    };
  };

  test('ranges each fine alone are judged together, at the entry that takes them over', () => {
    assert.deepEqual(summary(entries('exemptClients', '10.0.0.0/8', '1.0.0.0/8', '192.168.0.0/16', '2.0.0.0/24', '3.0.0.0/24')), {
      alone: [],
      together: ['exemptClients[3] 4:public <- 1.0.0.0/8 + 2.0.0.0/24'],
    });
    assert.deepEqual(summary([...entries('exemptClients', '1.0.0.0/8'), ...entries('lanNetworks', 'fd00::/8', '2.0.0.0/8')]), {
      alone: [],
      together: ['lanNetworks[1] 4:public <- 1.0.0.0/8 + 2.0.0.0/8'],
    });
  });

  test('halves: the first is too much alone, the second completes all of IPv4', () => {
    assert.deepEqual(summary(entries('exemptClients', '0.0.0.0/1', '128.0.0.0/1')), {
      alone: ['exemptClients[0] 4:public'],
      together: ['exemptClients[1] 4:all <- 0.0.0.0/1 + 128.0.0.0/1'],
    });
  });

  test('an entry too much alone is reported at itself, and the others are still judged together', () => {
    assert.deepEqual(summary(entries('exemptClients', '2.0.0.0/7', '5.0.0.0/8', '6.0.0.0/8')), {
      alone: ['exemptClients[0] 4:public'],
      together: ['exemptClients[2] 4:public <- 5.0.0.0/8 + 6.0.0.0/8'],
    });
    assert.deepEqual(summary(entries('lanNetworks', '::ffff:0:0/96', '10.0.0.0/8')), { alone: ['lanNetworks[0] 4:all'], together: [] });
    assert.deepEqual(summary(entries('exemptClients', '10.0.0.5/32', '0.0.0.0/0', '::/0')), { alone: ['exemptClients[1] 4:all', 'exemptClients[2] 4:all,6:all'], together: [] });
  });

  test('a sane set has nothing to say', () => {
    assert.deepEqual(summary([...entries('exemptClients', '10.0.0.0/8', '192.168.0.0/16', 'fd00::/8', '198.51.99.0/24'), ...entries('lanNetworks', '172.16.0.0/12', 'fe80::/10')]), {
      alone: [],
      together: [],
    });
  });
});
