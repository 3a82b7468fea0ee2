// A DKIM private key read from PEM and checked the way TLS keys are (tls/material.ts): parsed
// with node:crypto, of a type DKIM signs with (RSA of at least 1024 bits, or Ed25519), held as
// a Secret. What may be shown is derived from the public half only: the algorithm, the size,
// the p= value of the DNS record and its fingerprint.
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { Secret } from '../config/secret.js';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

/** RFC 8301 section 3.2: verifiers ignore signatures made with smaller RSA keys. */
export const MIN_RSA_BITS = 1024;
export const RECOMMENDED_RSA_BITS = 2048;

export interface DkimPublicKey {
  readonly algorithm: DkimAlgorithm;
  /** RSA modulus length; 256 for Ed25519 */
  readonly bits: number;
  /** the p= value of the DNS record: base64 of the SubjectPublicKeyInfo (RSA), of the raw 32-byte key (Ed25519, RFC 8463) */
  readonly publicKey: string;
  /** "sha256:" and the hex sha256 of the p= bytes (for RSA: of the SubjectPublicKeyInfo), as `echo P | base64 -d | sha256sum` prints it */
  readonly fingerprint: string;
}

export interface DkimKeyMaterial extends DkimPublicKey {
  readonly privateKey: Secret;
}

export class DkimKeyError extends Error {}

/** The DKIM view of a key's public half. */
export function dkimPublicKey(key: KeyObject): DkimPublicKey {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  let algorithm: DkimAlgorithm;
  let bits: number;
  let raw: Buffer;
  if (pub.asymmetricKeyType === 'rsa') {
    algorithm = 'rsa-sha256';
    bits = pub.asymmetricKeyDetails?.modulusLength ?? 0;
    raw = pub.export({ type: 'spki', format: 'der' });
  } else if (pub.asymmetricKeyType === 'ed25519') {
    algorithm = 'ed25519-sha256';
    bits = 256;
    raw = Buffer.from((pub.export({ format: 'jwk' }) as { x: string }).x, 'base64url');
  } else {
    throw new DkimKeyError(`not a DKIM key type: ${pub.asymmetricKeyType ?? 'unknown'}`);
  }
  return { algorithm, bits, publicKey: raw.toString('base64'), fingerprint: `sha256:${createHash('sha256').update(raw).digest('hex')}` };
}

/**
 * Parses and checks a PEM private key; throws DkimKeyError with a message for people (never
 * the key's bytes). `warnings` are what is accepted but not recommended.
 */
export function readDkimKey(pem: string): { material: DkimKeyMaterial; warnings: string[] } {
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) {
    const what = /-----BEGIN PUBLIC KEY-----/.test(pem)
      ? 'this is a public key; privateKeyFile needs the private key (the public key goes into DNS)'
      : /-----BEGIN CERTIFICATE-----/.test(pem)
        ? 'this is a certificate; privateKeyFile needs a private key'
        : 'no PEM private key found (expected -----BEGIN PRIVATE KEY-----)';
    throw new DkimKeyError(what);
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem))
    throw new DkimKeyError('encrypted private keys are not supported: store the key unencrypted, readable only by mailplane');
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new DkimKeyError(`private key cannot be parsed: ${(e as Error).message}`);
  }
  const type = key.asymmetricKeyType;
  if (type === 'rsa-pss') throw new DkimKeyError('an RSA-PSS key: DKIM rsa-sha256 signs with PKCS#1 v1.5; make a plain RSA key (mailplane dkim keygen)');
  if (type !== 'rsa' && type !== 'ed25519') throw new DkimKeyError(`key type ${type ?? 'unknown'}: DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256) keys only`);
  const warnings: string[] = [];
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS)
      throw new DkimKeyError(`RSA key of ${bits} bits: verifiers ignore signatures of RSA keys under ${MIN_RSA_BITS} bits (RFC 8301); use ${RECOMMENDED_RSA_BITS} (mailplane dkim keygen)`);
    const weakness = rsaWeakness(key);
    if (weakness) throw new DkimKeyError(`${weakness}; make a new key (mailplane dkim keygen)`);
    if (bits < RECOMMENDED_RSA_BITS) warnings.push(`RSA key of ${bits} bits: accepted, but ${RECOMMENDED_RSA_BITS} bits are recommended`);
  }
  return { material: { ...dkimPublicKey(key), privateKey: new Secret(pem, 'key') }, warnings };
}

/**
 * A known weakness of an RSA private key, or null: parts that do not fit together, a broken
 * public exponent, primes closer than FIPS 186-4 allows (|p - q| at most 2^(bits/2 - 100): what
 * Fermat's method factors, CVE-2022-26320), or the modulus fingerprint of the Infineon key generator (ROCA,
 * CVE-2017-15361). The key is ours, so its primes are at hand.
 */
export function rsaWeakness(key: KeyObject): string | null {
  const jwk = key.export({ format: 'jwk' });
  const int = (v: string | undefined) => (v ? BigInt(`0x${Buffer.from(v, 'base64url').toString('hex') || '0'}`) : 0n);
  const [n, e, p, q] = [int(jwk.n), int(jwk.e), int(jwk.p), int(jwk.q)];
  if (e < 3n || e % 2n === 0n) return `RSA key with public exponent ${e}: not a usable RSA key`;
  if (p <= 1n || q <= 1n || p * q !== n) return 'RSA key whose primes do not multiply to its modulus: not a usable RSA key';
  const bits = n.toString(2).length;
  const gap = p > q ? p - q : q - p;
  if (gap < 1n << BigInt(Math.max(0, Math.floor(bits / 2) - 100))) return "RSA key whose two primes are closer than FIPS 186-4 allows: Fermat's method may factor it (CVE-2022-26320)";
  if (rocaFingerprint(n)) return 'RSA key with the ROCA fingerprint (CVE-2017-15361, Infineon key generation): its modulus can be factored';
  return null;
}

/** Small primes of the ROCA test: a modulus whose residue mod each lies in the subgroup 65537 generates has the fingerprint. */
const ROCA_PRIMES = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167];
const ROCA_SUBGROUPS = ROCA_PRIMES.map((p) => {
  const seen = new Set<number>();
  for (let x = 1; !seen.has(x); x = (x * (65537 % p)) % p) seen.add(x);
  return seen;
});

export function rocaFingerprint(n: bigint): boolean {
  return ROCA_PRIMES.every((p, i) => ROCA_SUBGROUPS[i]!.has(Number(n % BigInt(p))));
}

/** The TXT record value: v=DKIM1; k=rsa|ed25519; p=... */
export function txtValue(pub: Pick<DkimPublicKey, 'algorithm' | 'publicKey'>): string {
  return `v=DKIM1; k=${pub.algorithm === 'rsa-sha256' ? 'rsa' : 'ed25519'}; p=${pub.publicKey}`;
}

/** A TXT value as DNS character-strings: at most 255 bytes each (RFC 1035 section 3.3). */
export function splitTxt(value: string, size = 255): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += size) out.push(value.slice(i, i + size));
  return out.length ? out : [''];
}

/** The zone-file line to publish: `S._domainkey.D. IN TXT ( "…" "…" )`. */
export function txtRecord(domain: string, selector: string, pub: Pick<DkimPublicKey, 'algorithm' | 'publicKey'>): string {
  const parts = splitTxt(txtValue(pub)).map((s) => `"${s}"`);
  return `${selector}._domainkey.${domain}. IN TXT ( ${parts.join(' ')} )`;
}
