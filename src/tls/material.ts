// A certificate and key read from PEM, checked to parse and match, and turned into a
// SecureContext only after those checks (a failed in-place swap must never leave a
// listener without a usable context).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { Secret } from '../config/secret.js';

export interface TlsMaterial {
  readonly certPem: string;
  readonly keyPem: Secret;
  readonly fingerprint256: string;
  readonly notBefore: number; // ms since epoch
  readonly notAfter: number;
  readonly subject: string;
  readonly names: readonly string[]; // DNS names from SAN (or CN when no SAN)
}

/** Parses and cross-checks a PEM pair; throws with a message for people. */
export function readTlsMaterial(certPem: string, keyPem: string): TlsMaterial {
  if (!/-----BEGIN CERTIFICATE-----/.test(certPem)) throw new TlsError('cert', 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    throw new TlsError('cert', `certificate cannot be parsed: ${(e as Error).message}`);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new TlsError('key', `private key cannot be parsed${/ENCRYPTED/.test(keyPem) ? ' (encrypted keys are not supported)' : ''}: ${(e as Error).message}`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw new TlsError('key', 'private key does not match the certificate');
  }
  return {
    certPem,
    keyPem: new Secret(keyPem, 'key'),
    fingerprint256: cert.fingerprint256,
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
    subject: cert.subject,
    names: certNames(cert),
  };
}

export class TlsError extends Error {
  constructor(
    readonly which: 'cert' | 'key',
    message: string,
  ) {
    super(message);
  }
}

/** Builds the context now, so a bad pair fails here and not in the middle of a handshake. */
export function secureContextOf(m: Pick<TlsMaterial, 'certPem' | 'keyPem'>): tls.SecureContext {
  return tls.createSecureContext({ cert: m.certPem, key: m.keyPem.reveal(), minVersion: 'TLSv1.2' });
}

function certNames(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (san) {
    return san
      .split(/,\s*/)
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4).toLowerCase());
  }
  const cn = cert.subject.match(/CN=([^\n,]+)/);
  return cn?.[1] ? [cn[1].toLowerCase()] : [];
}

/** RFC 6125-style match, with a single leftmost wildcard label. */
export function certCovers(names: readonly string[], host: string): boolean {
  const h = host.toLowerCase();
  return names.some((n) => {
    if (n === h) return true;
    if (!n.startsWith('*.')) return false;
    const rest = n.slice(1);
    return h.endsWith(rest) && !h.slice(0, -rest.length).includes('.');
  });
}
