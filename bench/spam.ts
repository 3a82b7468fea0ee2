// The spam-filter rows: mailplane with inbound.spamFilter pointing at a real Rspamd (Debian's,
// started here on loopback with the small network-free config of the tests: test/helpers/rspamd.ts)
// next to the same server without it. The load is one ordinary 1 KiB message (Rspamd's verdict:
// no action), so every copy is streamed to Rspamd and back before the 250; what Rspamd itself
// spends depends on its modules (a production Rspamd runs many more), so the row measures
// mailplane's cost of scanning plus a lean Rspamd's.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TestDns } from '../test/helpers/dns.js';
import { rspamdOrSkip, TestRspamd } from '../test/helpers/rspamd.js';
import { metricCounts, type PairVariant } from './pairs.js';

export const spamVariant: PairVariant = {
  flag: 'spam',
  title: 'spam filter',
  names: ['rspamd off', 'rspamd on'],
  describe: (size) => `Rspamd on loopback, lean config; 20 sessions, a ${size} message, new connection per message, untrusted client`,
  unavailable: () => (rspamdOrSkip() ? null : 'rspamd is not installed (apt-get install rspamd)'),
  async setUp(dir) {
    mkdirSync(dir, { recursive: true });
    const dns = await new TestDns({}).start();
    const rspamd = await new TestRspamd(dns.port).start();
    const head = ['From: Load Generator <load@example.net>', 'To: bench@example.com', 'Subject: spam filter', 'Date: Thu, 03 Dec 2026 12:00:00 +0000', 'Message-ID: <spam-filter@example.net>'].join(
      '\r\n',
    );
    const line = 'The quick brown fox jumps over the lazy dog, and the filter reads it all.';
    const lines: string[] = [];
    for (let n = head.length + 4; n < 1024; n += line.length + 2) lines.push(line);
    const message = `${head}\r\n\r\n${lines.join('\r\n')}\r\n`;
    const file = join(dir, 'message.eml');
    writeFileSync(file, message.replace(/\r\n/g, '\n'));
    return {
      message,
      file,
      size: Buffer.byteLength(message),
      config: (on) => ({
        extra: on ? `inbound:\n  spamFilter: { type: rspamd, url: "${rspamd.url}" }\n` : '',
        // 127.0.0.1 is the load generator: not exempt, not LAN, like a stranger
        options: { auth: '{ exemptClients: [], lanBypass: false, lanNetworks: [] }' },
      }),
      counts: (ops) => metricCounts(ops, 'mailplane_spam_scans_total', ['action']),
      ran: (on, seen, messages) => (on ? (seen.get('no_action') ?? 0) >= messages && !seen.has('error') : seen.size === 0),
      stop: async () => {
        await rspamd.stop();
        dns.stop();
      },
    };
  },
};
