// Certificates for tests: a test CA and server certificates it signs, written to a folder.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueCertificate, type IssuedCert } from '../../src/tls/devcert.js';

let ca: IssuedCert | undefined;

export function testCa(): IssuedCert {
  ca ??= issueCertificate({ commonName: 'mailplane test CA', isCA: true, notAfter: new Date(Date.now() + 3650 * 86400_000) });
  return ca;
}

/** A server certificate for mail.example.com/localhost/127.0.0.1 signed by the test CA. */
export function serverCert(name = 'mail.example.com'): IssuedCert {
  const c = testCa();
  return issueCertificate({
    commonName: name,
    dnsNames: [name, 'localhost'],
    ipAddresses: ['127.0.0.1'],
    issuer: { certPem: c.certPem, keyPem: c.keyPem },
  });
}

export function writeCert(dir: string, cert: IssuedCert, base = 'tls'): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${base}.crt`);
  const keyFile = join(dir, `${base}.key`);
  writeFileSync(certFile, cert.certPem);
  writeFileSync(keyFile, cert.keyPem);
  return { certFile, keyFile };
}
