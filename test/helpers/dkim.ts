// An independent DKIM verifier: Debian's python3-dkim (dkimpy), which looks the public keys up
// in DNS — the loopback TestDns of the test, never the network.
import { spawn, spawnSync } from 'node:child_process';
import { checkPrimeSync, createPrivateKey, generateKeyPairSync, generatePrimeSync } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';

/** Debian's python (where python3-dkim is installed), not whichever python3 is first on PATH. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Whether python3-dkim is installed; in CI a missing one fails, elsewhere it skips loudly. */
export function dkimpyOrSkip(): boolean {
  const r = spawnSync(PYTHON, ['-c', 'import dkim, dns.resolver, nacl, authres'], { stdio: 'ignore' });
  if (!r.error && r.status === 0) return true;
  if (process.env.CI) throw new Error('python3-dkim and python3-authres are required in CI (Debian packages python3-dkim, python3-authres)');
  console.warn('\n*** SKIPPED LOUDLY: python3-dkim or python3-authres not installed (apt-get install python3-dkim python3-authres); DKIM signatures not verified ***\n');
  return false;
}

export interface Verdict {
  /** d=, s=, a= and h= of the signature */
  d: string;
  s: string;
  a: string;
  h: string;
  ok: boolean;
}

const SCRIPT = `
import json, sys
import dkim, dns.resolver
from dkim.util import parse_tag_value
r = dns.resolver.Resolver(configure=False)
r.nameservers = ['127.0.0.1']
r.port = int(sys.argv[1])
r.timeout = r.lifetime = 3
dns.resolver.default_resolver = r
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for (k, v) in d.headers if k.lower() == b'dkim-signature']
out = []
for i, v in enumerate(sigs):
    tags = parse_tag_value(v)
    try:
        ok = bool(dkim.DKIM(msg).verify(idx=i))
    except Exception as e:
        ok = False
    out.append({k: tags.get(k.encode(), b'').decode().replace(' ', '').replace('\\r\\n', '').replace('\\t', '') for k in ('d', 's', 'a', 'h')} | {'ok': ok})
print(json.dumps(out))
`;

/** Every DKIM-Signature of the message, checked by dkimpy with keys from the DNS server on dnsPort. */
export function verifyDkim(message: Buffer | string, dnsPort: number): Promise<Verdict[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', SCRIPT, String(dnsPort)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`dkimpy exited ${code}: ${stderr}`));
      resolve(JSON.parse(stdout) as Verdict[]);
    });
    child.stdin.end(message);
  });
}

/** The character-strings of a zone-file TXT line as `mailplane dkim keygen` prints it: name and strings. */
export function parseTxtRecord(line: string): { name: string; strings: string[] } {
  const m = line.match(/^(\S+)\s+IN\s+TXT\s+\(\s*((?:"[^"]*"\s*)+)\)\s*$/);
  if (!m) throw new Error(`not a TXT record line: ${line}`);
  return { name: m[1]!.replace(/\.$/, ''), strings: [...m[2]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]!) };
}

/** An RSA private key made of the given primes (what a broken generator would write). */
export function rsaFromPrimes(p: bigint, q: bigint, n = p * q): string {
  const e = 65537n;
  const inv = (a: bigint, m: bigint) => {
    let [r0, r1, s0, s1] = [((a % m) + m) % m, m, 1n, 0n];
    while (r1) {
      const t = r0 / r1;
      [r0, r1, s0, s1] = [r1, r0 - t * r1, s1, s0 - t * s1];
    }
    return ((s0 % m) + m) % m;
  };
  const d = inv(e, (p - 1n) * (q - 1n));
  const b64 = (x: bigint) => {
    const hex = x.toString(16);
    return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex').toString('base64url');
  };
  const jwk = { kty: 'RSA', n: b64(n), e: b64(e), d: b64(d), p: b64(p), q: b64(q), dp: b64(d % (p - 1n)), dq: b64(d % (q - 1n)), qi: b64(inv(q, p)) };
  return createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** A 2048-bit RSA key whose primes are close enough for Fermat's method (a weak key that parses fine). */
export function closePrimesKey(): { pem: string; p: bigint } {
  const p = generatePrimeSync(1024, { bigint: true });
  let q = p + (1n << 400n);
  while (!checkPrimeSync(q)) q += 2n;
  return { pem: rsaFromPrimes(p, q), p };
}

const SIGN_SCRIPT = `
import sys, dkim
key = open(sys.argv[3], 'rb').read()
msg = sys.stdin.buffer.read()
sig = dkim.sign(msg, sys.argv[1].encode(), sys.argv[2].encode(), key, include_headers=[b'from', b'to', b'subject', b'message-id'], canonicalize=(b'relaxed', b'relaxed'))
sys.stdout.buffer.write(sig + msg)
`;

/** The message with a DKIM-Signature by dkimpy (rsa-sha256, relaxed/relaxed) for d=domain, s=selector; keyFile: the PEM private key. */
export function signDkim(message: Buffer | string, selector: string, domain: string, keyFile: string): Buffer {
  const r = spawnSync(PYTHON, ['-c', SIGN_SCRIPT, selector, domain, keyFile], { input: message, maxBuffer: 64 * 1024 * 1024 });
  if (r.error || r.status !== 0) throw new Error(`dkimpy signing failed: ${r.error?.message ?? r.stderr.toString()}`);
  return r.stdout;
}

const ARC_SCRIPT = `
import sys, dkim
key = open(sys.argv[3], 'rb').read()
msg = sys.stdin.buffer.read()
sets = dkim.arc_sign(msg, sys.argv[1].encode(), sys.argv[2].encode(), key, sys.argv[4].encode(), include_headers=[b'from', b'to', b'subject', b'message-id', b'date'])
if not sets:
    sys.exit('arc_sign produced nothing (no Authentication-Results of the sealer in the message?)')
sys.stdout.buffer.write(b''.join(sets) + msg)
`;

/**
 * The message with an ARC set (RFC 8617) sealed by dkimpy for d=domain, s=selector, as the
 * intermediary `srvId` would add it: the message must carry that intermediary's
 * Authentication-Results (authserv-id srvId), which becomes the ARC-Authentication-Results.
 */
export function arcSeal(message: Buffer | string, selector: string, domain: string, keyFile: string, srvId: string): Buffer {
  const r = spawnSync(PYTHON, ['-c', ARC_SCRIPT, selector, domain, keyFile, srvId], { input: message, maxBuffer: 64 * 1024 * 1024 });
  if (r.error || r.status !== 0) throw new Error(`dkimpy ARC sealing failed: ${r.error?.message ?? r.stderr.toString()}`);
  return r.stdout;
}

/** A fresh RSA 2048 signing key written to `keyFile` (PKCS#1 PEM), and its DKIM TXT record as DNS strings of at most 250 bytes. */
export function rsaDkimKey(keyFile: string): string[] {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }));
  const record = `v=DKIM1; k=rsa; p=${(publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64')}`;
  const strings: string[] = [];
  for (let i = 0; i < record.length; i += 250) strings.push(record.slice(i, i + 250));
  return strings;
}
