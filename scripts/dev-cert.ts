// Writes a self-signed development certificate: `tsx scripts/dev-cert.ts CERT KEY [NAME...]`.
// Its private key is published with the project; never use it outside development.
import { writeFileSync } from 'node:fs';
import { issueCertificate } from '../src/tls/devcert.js';

const [cert, key, ...names] = process.argv.slice(2);
if (!cert || !key) {
  console.error('usage: tsx scripts/dev-cert.ts CERT KEY [NAME...]');
  process.exit(2);
}
const dnsNames = names.length ? names : ['localhost'];
const pair = issueCertificate({
  commonName: dnsNames[0]!,
  dnsNames,
  ipAddresses: ['127.0.0.1', '::1'],
  notAfter: new Date(Date.now() + 10 * 365 * 86400_000),
});
writeFileSync(cert, pair.certPem);
writeFileSync(key, pair.keyPem, { mode: 0o600 });
console.log(`wrote ${cert} and ${key} (${dnsNames.join(', ')})`);
