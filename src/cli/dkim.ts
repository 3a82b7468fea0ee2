// `mailplane dkim keygen`: a new DKIM key in a file only its owner may read, and the DNS TXT
// record to publish for it (on stdout, so it can go straight into a zone file).
import { generateKeyPair as generateKeyPairCb, randomBytes } from 'node:crypto';
import { link, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { normalizeDomain } from '../config/check-names.js';
import { MIN_RSA_BITS, readDkimKey, RECOMMENDED_RSA_BITS, txtRecord } from '../dkim/key.js';
import { UsageError, type Command } from './command.js';

const generateKeyPair = promisify(generateKeyPairCb);

/** RFC 6376 selector syntax (the schema's pattern for dkim.keys[].selector). */
const SELECTOR = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const MAX_RSA_BITS = 8192;

export const dkimCommand: Command = {
  name: 'dkim',
  summary: 'DKIM keys: "dkim keygen" makes a signing key and prints its DNS record',
  usage: `Usage: mailplane dkim keygen --domain DOMAIN --selector SELECTOR --out FILE
                              [--algorithm rsa|ed25519] [--bits 2048] [--force]

Writes a new private key to FILE (PEM, mode 0600; an existing FILE is refused
unless --force, which replaces it in one rename) and prints the DNS TXT record
to publish at SELECTOR._domainkey.DOMAIN, in zone-file syntax, split into
strings of at most 255 bytes. Then add the key to dkim.keys in mailserver.yaml.

Options:
  --domain DOMAIN        the From: domain the key signs for (one of domains)
  --selector SELECTOR    the selector, e.g. mp2026a (a new one for every new key)
  --algorithm rsa|ed25519  rsa (default: every verifier knows it) or ed25519
                         (RFC 8463; not every verifier checks it yet: publish it
                         next to an RSA key)
  --bits N               RSA key size (default ${RECOMMENDED_RSA_BITS}, at least ${MIN_RSA_BITS})
  --out FILE             where the private key goes
  --force                replace FILE if it exists
  -h, --help             show this help`,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== 'keygen') throw new UsageError(sub === undefined ? 'give a subcommand: keygen' : `unknown subcommand '${sub}'`);
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        domain: { type: 'string' },
        selector: { type: 'string' },
        algorithm: { type: 'string', default: 'rsa' },
        bits: { type: 'string' },
        out: { type: 'string' },
        force: { type: 'boolean', default: false },
      },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if (!values.domain) throw new UsageError('--domain is required');
    if (!values.selector) throw new UsageError('--selector is required');
    if (!values.out) throw new UsageError('--out is required');
    const domain = normalizeDomain(values.domain);
    if (!domain) throw new UsageError(`--domain: '${values.domain}' is not a domain name`);
    if (!SELECTOR.test(values.selector) || values.selector.length > 63)
      throw new UsageError(`--selector: '${values.selector}' is not a selector (letters, digits and hyphens in dot-separated labels)`);
    const selector = values.selector.toLowerCase();
    const algorithm = values.algorithm;
    if (algorithm !== 'rsa' && algorithm !== 'ed25519') throw new UsageError('--algorithm must be rsa or ed25519');
    if (algorithm === 'ed25519' && values.bits !== undefined) throw new UsageError('--bits is for RSA keys only');
    const bits = values.bits === undefined ? RECOMMENDED_RSA_BITS : Number(values.bits);
    if (!Number.isInteger(bits) || bits < MIN_RSA_BITS || bits > MAX_RSA_BITS || bits % 8 !== 0) {
      throw new UsageError(`--bits must be a multiple of 8 from ${MIN_RSA_BITS} to ${MAX_RSA_BITS} (${RECOMMENDED_RSA_BITS} recommended)`);
    }

    const { privateKey } =
      algorithm === 'rsa'
        ? await generateKeyPair('rsa', { modulusLength: bits, publicExponent: 0x10001, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
        : await generateKeyPair('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    // the same checks a config load makes, so what keygen writes always loads
    const { material } = readDkimKey(privateKey);

    const out = values.out;
    await mkdir(dirname(out), { recursive: true, mode: 0o700 });
    // written whole under a temporary name first: a running server watching FILE never sees half a key
    const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
    await writeFile(tmp, privateKey, { mode: 0o600, flag: 'wx' });
    try {
      if (values.force) {
        await rename(tmp, out);
      } else {
        await link(tmp, out).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'EEXIST') throw new KeygenError(`${out} exists; refusing to overwrite a key (use --force to replace it)`);
          throw e;
        });
        await unlink(tmp);
      }
    } catch (e) {
      await unlink(tmp).catch(() => {});
      if (e instanceof KeygenError) {
        process.stderr.write(`mailplane dkim: ${e.message}\n`);
        return 1;
      }
      throw e;
    }

    process.stdout.write(`${txtRecord(domain, selector, material)}\n`);
    process.stderr.write(
      `mailplane dkim: wrote ${out} (${material.algorithm}, ${material.bits} bits, public key ${material.fingerprint}; mode 0600, keep it secret)
Publish the TXT record above, wait until it resolves (dig +short TXT ${selector}._domainkey.${domain}), then add to mailserver.yaml:
  dkim:
    keys:
      - { domain: ${domain}, selector: ${selector}, privateKeyFile: ${out} }
`,
    );
    return 0;
  },
};

class KeygenError extends Error {}
