// The embedded quick-start config `mailplane run` serves when there is no ./mailserver.yaml:
// loopback only, high ports, no root, a development certificate made on first start.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { issueCertificate } from '../tls/devcert.js';

export const QUICKSTART_LOGIN = { user: 'demo', password: 'demo', address: 'demo@localhost' } as const;

export const QUICKSTART_YAML = `# mailplane embedded quick start (development only)
version: 1
hostname: mail.localhost
domains: [localhost]
smtp:
  tls:
    certFile: ./data/tls/dev.crt    # self-signed, made on first start
    keyFile: ./data/tls/dev.key
  listeners:
    - { name: mx, address: 127.0.0.1, port: 2525, role: mx, tls: starttls }
    - { name: submission, address: 127.0.0.1, port: 2587, role: submission, tls: starttls }
    - { name: submissions, address: 127.0.0.1, port: 2465, role: submission, tls: implicit }
accounts:
  local:
    users:
      - name: demo
        passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$69ECyqRV43EJKfKZybC20A$YSz3zsB8npyhwM0qP/GXnrORbu6URGryE3nXoGZCeT0"
        aliases: [postmaster, abuse]
storage:
  dataDir: ./data
observability:
  listen: 127.0.0.1:9465
`;

/** Makes ./data/tls/dev.{crt,key} under baseDir unless they exist; returns true when it made them. */
export function ensureDevCertificate(baseDir: string): boolean {
  const dir = resolve(baseDir, 'data', 'tls');
  if (existsSync(join(dir, 'dev.crt')) && existsSync(join(dir, 'dev.key'))) return false;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pair = issueCertificate({
    commonName: 'mail.localhost',
    dnsNames: ['mail.localhost', 'localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    notAfter: new Date(Date.now() + 825 * 86400_000),
  });
  writeFileSync(join(dir, 'dev.key'), pair.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'dev.crt'), pair.certPem);
  return true;
}
