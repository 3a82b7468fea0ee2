// A real OpenLDAP server (Debian's slapd) on a loopback port, with a generated config, a test
// CA certificate for StartTLS, and an LDIF of test users. Stopped and restarted by its PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accepts, freePort } from './ports.js';
import { serverCert, testCa } from './tls.js';
import { tempDir } from './tmp.js';

const SLAPD = '/usr/sbin/slapd';
const SLAPADD = '/usr/sbin/slapadd';

export function slapdAvailable(): boolean {
  return existsSync(SLAPD) && existsSync(SLAPADD);
}

export const LDAP_USERS = {
  carol: { password: 'carol-ldap-pw', aliases: ['sales'] },
  dave: { password: 'dave-ldap-pw', aliases: [] },
} as const;
export const SERVICE = { dn: 'cn=mailplane,ou=services,dc=example,dc=com', password: 'service-pw' };

const LDIF = `dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: ${SERVICE.dn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: mailplane
userPassword: ${SERVICE.password}

dn: uid=carol,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Example
mail: carol@example.com
mail: sales@example.org
userPassword: ${LDAP_USERS.carol.password}

dn: uid=dave,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: dave
cn: Dave
sn: Example
mail: dave@example.com
userPassword: ${LDAP_USERS.dave.password}
`;

export class Slapd {
  private child: ChildProcess | null = null;
  readonly dir: string;
  port = 0;
  log = '';

  constructor() {
    this.dir = tempDir('slapd');
  }

  get url(): string {
    return `ldap://127.0.0.1:${this.port}`;
  }

  get caFile(): string {
    return join(this.dir, 'ca.pem');
  }

  async start(): Promise<this> {
    if (!this.port) {
      this.port = await freePort();
      this.setup();
    }
    this.child = spawn(SLAPD, ['-f', join(this.dir, 'slapd.conf'), '-h', `${this.url}/`, '-d', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.on('data', (d) => (this.log += d));
    this.child.stderr?.on('data', (d) => (this.log += d));
    const child = this.child;
    process.on('exit', () => child.kill('SIGKILL'));
    const deadline = Date.now() + 10_000;
    while (!(await accepts(this.port))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`slapd did not start:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this;
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const done = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await done;
  }

  private setup(): void {
    const ca = testCa();
    const cert = serverCert('ldap.example.com');
    writeFileSync(this.caFile, ca.certPem);
    writeFileSync(join(this.dir, 'server.crt'), cert.certPem);
    writeFileSync(join(this.dir, 'server.key'), cert.keyPem);
    mkdirSync(join(this.dir, 'db'));
    writeFileSync(
      join(this.dir, 'slapd.conf'),
      `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile ${this.dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile ${this.caFile}
TLSCertificateFile ${this.dir}/server.crt
TLSCertificateKeyFile ${this.dir}/server.key
database mdb
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw admin-pw
directory ${this.dir}/db
maxsize 10485760
access to attrs=userPassword by anonymous auth by self write by * none
access to * by dn.exact="${SERVICE.dn}" read by users read by anonymous auth
`,
    );
    writeFileSync(join(this.dir, 'data.ldif'), LDIF);
    const r = spawnSync(SLAPADD, ['-f', join(this.dir, 'slapd.conf'), '-l', join(this.dir, 'data.ldif')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`slapadd failed: ${r.stderr}`);
  }
}

/** The accounts block for a mailplane config that reads `slapd` (the bind password goes into env.dir). */
export function ldapAccounts(env: { dir: string }, slapd: Slapd, caFile = slapd.caFile): string {
  writeFileSync(join(env.dir, 'ldap-bind-password'), `${SERVICE.password}\n`);
  return `accounts:
  type: ldap
  ldap:
    url: ${slapd.url}
    startTls: true
    caFile: ${caFile}
    bindDn: ${SERVICE.dn}
    bindPasswordFile: ldap-bind-password
    userBase: ou=people,dc=example,dc=com
    userFilter: "(&(objectClass=inetOrgPerson)(uid={user}))"
    aliasAttributes: [mail]
    timeout: 1s
    cacheTtl: 500ms
`;
}
