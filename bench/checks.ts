// The inbound-checks rows: mailplane with inbound.checks on (SPF, DKIM, ARC, DMARC monitor)
// against a DNS server on loopback, next to the same server with the checks off. The load is one
// message, DKIM-signed once by python3-dkim (an independent signer) with a key that `mailplane
// dkim keygen` made and the loopback zone publishes, sent over and over by smtp-source -F: every
// copy is checked anew (the body hash, the RSA signature, the SPF and DMARC lookups). The client
// (127.0.0.1) is neither authenticated nor trusted, or nothing would be checked; the metrics of
// each server say what was checked, and a row whose checks did not run is marked as failed.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimpyOrSkip, parseTxtRecord, signDkim } from '../test/helpers/dkim.js';
import { TestDns } from '../test/helpers/dns.js';
import { ROOT, type ConfigOptions } from './harness.js';
import { metricCounts, type PairVariant } from './pairs.js';

/** The sender's domain (smtp-source's MAIL FROM is load@example.net) and the key's selector. */
const DOMAIN = 'example.net';
const SELECTOR = 'bench';

export interface InboundChecks {
  readonly dns: TestDns;
  /** the signed message as sent (CRLF), for the latency probe */
  readonly message: string;
  /** the same with LF line ends, for smtp-source -F (which sends each line with CRLF) */
  readonly file: string;
  /** its size in bytes as sent */
  readonly size: number;
  /** what the config of a server with the checks on or off says beyond the usual */
  config(on: boolean): { extra: string; options: ConfigOptions };
}

/** Why the rows cannot be measured here, or null. */
export function inboundChecksUnavailable(): string | null {
  return dkimpyOrSkip() ? null : 'python3-dkim, the signer of the load, is not usable here (see the message above)';
}

/** The key, the zone on a loopback DNS server, and the signed message of about `size` bytes (before its signature). */
export async function setUpInboundChecks(dir: string, size = 1024): Promise<InboundChecks> {
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, `${DOMAIN}.${SELECTOR}.key`);
  const keygen = spawnSync(process.execPath, [join(ROOT, 'bin/mailplane.js'), 'dkim', 'keygen', '--domain', DOMAIN, '--selector', SELECTOR, '--out', keyFile], { encoding: 'utf8' });
  if (keygen.status !== 0) throw new Error(`mailplane dkim keygen failed: ${keygen.stderr}`);
  const record = parseTxtRecord(keygen.stdout.trim());
  const dns = await new TestDns({
    txt: {
      [DOMAIN]: [['v=spf1 ip4:127.0.0.1 -all']],
      [record.name]: [record.strings],
      [`_dmarc.${DOMAIN}`]: [['v=DMARC1; p=reject']],
    },
  }).start();
  const head = [
    `From: Load Generator <load@${DOMAIN}>`,
    'To: bench@example.com',
    'Subject: inbound checks',
    'Date: Thu, 03 Dec 2026 12:00:00 +0000',
    `Message-ID: <inbound-checks@${DOMAIN}>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
  ].join('\r\n');
  const line = 'The quick brown fox jumps over the lazy dog, and the checks verify it all.';
  const lines: string[] = [];
  for (let n = head.length + 4; n < size; n += line.length + 2) lines.push(line);
  const message = signDkim(`${head}\r\n\r\n${lines.join('\r\n')}\r\n`, SELECTOR, DOMAIN, keyFile).toString('latin1');
  if (!/^DKIM-Signature:/i.test(message)) throw new Error('python3-dkim did not sign the message');
  const file = join(dir, 'signed.eml');
  writeFileSync(file, message.replace(/\r\n/g, '\n'), 'latin1');
  return {
    dns,
    message,
    file,
    size: Buffer.byteLength(message, 'latin1'),
    config: (on) => ({
      // the same resolver either way; only the checks differ
      extra: `delivery:\n  dns: { servers: ["127.0.0.1:${dns.port}"] }\n${on ? 'inbound:\n  checks: { spf: true, dkim: true, arc: true, dmarc: monitor }\n' : ''}`,
      // 127.0.0.1 is the load generator: not exempt, not LAN, so it is checked like a stranger
      options: { auth: '{ exemptClients: [], lanBypass: false, lanNetworks: [] }' },
    }),
  };
}

/** The inbound checks on and off, as bench/run.ts measures pairs. */
export const checksVariant: PairVariant = {
  flag: 'checks',
  title: 'inbound checks',
  names: ['checks off', 'checks on'],
  describe: (size) => `spf, dkim, arc, dmarc monitor; 20 sessions, a ${size} DKIM-signed message, new connection per message, untrusted client, DNS on loopback`,
  unavailable: inboundChecksUnavailable,
  async setUp(dir) {
    const s = await setUpInboundChecks(dir);
    return {
      message: s.message,
      file: s.file,
      size: s.size,
      config: (on) => s.config(on),
      counts: (ops) => metricCounts(ops, 'mailplane_inbound_auth_total', ['method', 'result']),
      // smtp-source's messages are signed and SPF-aligned; the probe's too
      ran: (on, seen, messages) => (on ? ['dkim pass', 'spf pass', 'dmarc pass'].every((k) => (seen.get(k) ?? 0) >= messages) : seen.size === 0),
      stop: () => {
        s.dns.stop();
        return Promise.resolve();
      },
    };
  },
};
