// Minimal X.509 certificate issuing (ECDSA P-256, DER built by hand) so the quick-start
// config can serve STARTTLS without openssl. Development use only: it makes the
// self-signed certificate the quick start prints a warning about, and test CAs.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

export interface IssueOptions {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  notBefore?: Date;
  notAfter?: Date;
  isCA?: boolean;
  /** Sign with this CA instead of self-signing. */
  issuer?: { certPem: string; keyPem: string };
  /** Use this key instead of a new one (for "same key, new certificate" renewals). */
  keyPem?: string;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
}

export function issueCertificate(o: IssueOptions): IssuedCert {
  const key = o.keyPem ? createPrivateKey(o.keyPem) : generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const subject = name(o.commonName);
  const issuerName = o.issuer ? issuerSubject(o.issuer.certPem) : subject;
  const signer: KeyObject = o.issuer ? createPrivateKey(o.issuer.keyPem) : key;
  const notBefore = o.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = o.notAfter ?? new Date(Date.now() + 365 * 86400_000);
  const alg = seq(oid('1.2.840.10045.4.3.2')); // ecdsa-with-SHA256
  const ski = createHash('sha1').update(spki).digest();

  const exts: Buffer[] = [ext('2.5.29.19', true, seq(o.isCA ? boolTrue() : Buffer.alloc(0))), ext('2.5.29.14', false, octets(ski))];
  if (o.isCA) {
    exts.push(ext('2.5.29.15', true, bitString(Buffer.from([0x06]), 1))); // keyCertSign | cRLSign
  } else {
    exts.push(ext('2.5.29.15', true, bitString(Buffer.from([0x80]), 7))); // digitalSignature
    exts.push(ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1')))); // serverAuth
    const san = [...(o.dnsNames ?? [o.commonName]).map((d) => tlv(0x82, Buffer.from(d, 'ascii'))), ...(o.ipAddresses ?? []).map((ip) => tlv(0x87, ipBytes(ip)))];
    exts.push(ext('2.5.29.17', false, seq(...san)));
  }

  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const tbs = seq(tlv(0xa0, integer(Buffer.from([2]))), integer(serial), alg, issuerName, seq(time(notBefore), time(notAfter)), subject, spki, tlv(0xa3, seq(...exts)));
  const signature = sign('sha256', tbs, signer);
  const cert = seq(tbs, alg, bitString(signature, 0));
  return {
    certPem: pem('CERTIFICATE', cert),
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function issuerSubject(certPem: string): Buffer {
  // The issuer's subject is the 6th element of its TBSCertificate; re-reading DER keeps it byte-exact.
  const der = Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const tbs = children(children(der)[0]!);
  return tbs[5]!;
}

function children(node: Buffer): Buffer[] {
  const { headerLen, len } = header(node, 0);
  const out: Buffer[] = [];
  let off = headerLen;
  while (off < headerLen + len) {
    const h = header(node, off);
    out.push(node.subarray(off, off + h.headerLen + h.len));
    off += h.headerLen + h.len;
  }
  return out;
}

function header(buf: Buffer, off: number): { headerLen: number; len: number } {
  const first = buf[off + 1]!;
  if (first < 0x80) return { headerLen: 2, len: first };
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i]!;
  return { headerLen: 2 + n, len };
}

function tlv(tag: number, body: Buffer): Buffer {
  const len = body.length;
  let lenBytes: Buffer;
  if (len < 0x80) lenBytes = Buffer.from([len]);
  else {
    const parts: number[] = [];
    for (let l = len; l > 0; l >>= 8) parts.unshift(l & 0xff);
    lenBytes = Buffer.from([0x80 | parts.length, ...parts]);
  }
  return Buffer.concat([Buffer.from([tag]), lenBytes, body]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const boolTrue = (): Buffer => tlv(0x01, Buffer.from([0xff]));
const bitString = (b: Buffer, unused: number): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));

function integer(b: Buffer): Buffer {
  let body = b;
  while (body.length > 1 && body[0] === 0 && body[1]! < 0x80) body = body.subarray(1);
  if (body[0]! >= 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return tlv(0x02, body);
}

function oid(text: string): Buffer {
  const parts = text.split('.').map(Number);
  const bytes = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) stack.unshift((v & 0x7f) | 0x80);
    bytes.push(...stack);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function name(cn: string): Buffer {
  return seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [boolTrue()] : []), octets(value));
}

function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

function pem(label: string, der: Buffer): string {
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
