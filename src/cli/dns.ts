// `mailplane dns`: the DNS records the config needs, as a zone-file fragment, JSON or
// external-dns resources; `mailplane dns check`: those records compared with live DNS, for CI.
import { parseArgs } from 'node:util';
import { resolverAddress } from '../config/check-relay.js';
import type { DesiredState } from '../config/desired-state.js';
import { formatIssue, type ConfigIssue } from '../config/issues.js';
import { loadConfigFile } from '../config/load.js';
import { allOk, checkRecords, formatCheckJson, formatCheckText } from '../dns/check.js';
import { formatRecords, type DnsFormat } from '../dns/format.js';
import { expectedRecords } from '../dns/records.js';
import { configuredResolver } from '../outbound/dns.js';
import { UsageError, type Command } from './command.js';

const FORMATS: readonly DnsFormat[] = ['zone', 'json', 'external-dns'];

export const dnsCommand: Command = {
  name: 'dns',
  summary: 'the DNS records the config needs; "dns check" compares them with live DNS',
  usage: `Usage: mailplane dns [--config FILE] [--format zone|json|external-dns]
       mailplane dns check [--config FILE] [--resolver ADDR[:PORT]] [--format text|json]

mailplane dns prints every record the config needs: for each domain MX, SPF,
DKIM (one per dkim.keys entry), DMARC, MTA-STS, TLS-RPT and the mail-client SRV
records (RFC 6186, RFC 8314); for the host name its SPF and, with dns.addresses,
its A/AAAA records and PTR advice. See docs/dns.md.

mailplane dns check looks every one of them up and prints, per record, ok,
missing or different (with what was expected and what was found); it also
checks that the DKIM keys in DNS are ours, that SPF stays within its 10 DNS
lookups and that the MX host name resolves. PTR records are advice: reported,
never a failure.

Options:
  --config FILE          the config file (default ./mailserver.yaml)
  --format FORMAT        dns: zone (default; a zone-file fragment for BIND, NSD,
                         Knot), json, or external-dns (DNSEndpoint resources);
                         dns check: text (default) or json
  --resolver ADDR[:PORT] dns check: the resolver to ask (ip, ip:port,
                         [ipv6]:port); default: delivery.dns.servers, else the
                         system's resolvers
  -h, --help             show this help

Exit status: 0 printed / every record matches, 1 some record does not match
(dns check), 2 usage error, or a config that cannot be read or is invalid.`,
  async run(argv) {
    const check = argv[0] === 'check';
    const { values, positionals } = parseArgs({
      args: check ? argv.slice(1) : argv,
      allowPositionals: true,
      options: { config: { type: 'string' }, format: { type: 'string' }, resolver: { type: 'string' } },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'${check ? '' : ' (the only subcommand is check)'}`);
    const format = values.format ?? (check ? 'text' : 'zone');
    if (check ? format !== 'text' && format !== 'json' : !FORMATS.includes(format as DnsFormat)) {
      throw new UsageError(`--format must be ${check ? 'text or json' : FORMATS.join(', ')}, not '${format}'`);
    }
    if (!check && values.resolver !== undefined) throw new UsageError('--resolver is for dns check');
    let server: string | null = null;
    if (values.resolver !== undefined) {
      server = resolverAddress(values.resolver);
      if (server === null) throw new UsageError(`--resolver: '${values.resolver}' is not a resolver address (ip, ip:port or [ipv6]:port)`);
    }
    const file = values.config ?? 'mailserver.yaml';
    const state = await load(file);
    if (!state) return 2;
    const records = expectedRecords(state);
    if (!check) {
      process.stdout.write(formatRecords(records, format as DnsFormat, file));
      return 0;
    }
    const servers = server ? [server] : state.delivery.dnsServers;
    const resolver = configuredResolver(servers, state.delivery.dnsTimeoutMs);
    const label = servers.length ? servers.join(', ') : 'the system resolvers';
    const results = await checkRecords(records, resolver);
    process.stdout.write(format === 'json' ? formatCheckJson(results, label) : formatCheckText(results, label));
    return allOk(results) ? 0 : 1;
  },
};

/** The DNS-related findings are worth seeing here; the others belong to `mailplane validate`. */
function aboutDns(i: ConfigIssue): boolean {
  return /^(dns|mtaSts)(\.|\[|$)/.test(i.path) || i.code === 'MP_DNS_SPF' || i.code === 'MP_DNS_ADDRESS' || i.code === 'MP_MTA_STS';
}

async function load(file: string): Promise<DesiredState | null> {
  const r = await loadConfigFile(file);
  for (const i of r.state ? r.warnings.filter(aboutDns) : [...r.errors, ...r.warnings]) process.stderr.write(`${formatIssue(i)}\n`);
  if (!r.state) {
    process.stderr.write(`mailplane dns: ${file}: ${r.unreadable ? 'cannot be read' : 'invalid (mailplane validate shows why)'}\n`);
    return null;
  }
  return r.state;
}
