// MTA-STS (RFC 8461) both ways, on loopback. Serving: the ops endpoint answers
// /.well-known/mta-sts.txt for `Host: mta-sts.<our domain>` with the policy whose id
// `mailplane dns` publishes. Honouring, on direct MX delivery: the recipient domain's policy is
// found through the configured resolver (a loopback DNS server) and fetched over HTTPS (a
// loopback server on 127.0.0.9:443 with a certificate of the test CA, which the server trusts
// through NODE_EXTRA_CA_CERTS); `enforce` delivers only over TLS with a valid certificate to an
// MX the policy names, else the mail waits (and says why); `testing` delivers and counts.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { issueCertificate } from '../src/tls/devcert.js';
import { mailplane } from './helpers/cli.js';
import { TestDns } from './helpers/dns.js';
import { freePort } from './helpers/ports.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';

const POLICY_IP = '127.0.0.9';
const POLICIES: Record<string, string> = {
  'enforce.test': 'version: STSv1\r\nmode: enforce\r\nmx: mx.good-sts.test\r\nmax_age: 86400\r\n',
  'mismatch.test': 'version: STSv1\r\nmode: enforce\r\nmx: mx.elsewhere.test\r\nmax_age: 86400\r\n',
  'notls.test': 'version: STSv1\r\nmode: enforce\r\nmx: *.plain-sts.test\r\nmax_age: 86400\r\n',
  'testing.test': 'version: STSv1\r\nmode: testing\r\nmx: mx.elsewhere.test\r\nmax_age: 86400\r\n',
  'badcert.test': 'version: STSv1\r\nmode: enforce\r\nmx: mx.badcert-sts.test\r\nmax_age: 86400\r\n',
};

describe('MTA-STS', () => {
  let env: Env;
  let mp: MailplaneProcess;
  let dns: TestDns;
  let good: TestRelay;
  let plain: TestRelay;
  let wrongCert: TestRelay;
  let https: Server;

  before(async () => {
    env = await makeEnv();
    const port = await freePort();
    good = await new TestRelay({ port, mode: 'starttls', name: 'mx.good-sts.test' }).start();
    plain = await new TestRelay({ port, mode: 'plain', name: 'mx.plain-sts.test', host: '127.0.0.3' }).start();
    // STARTTLS with a certificate for another name
    wrongCert = await new TestRelay({ port, mode: 'starttls', name: 'wrong-name.test', host: '127.0.0.4' }).start();
    const ca = testCa();
    const policyCert = issueCertificate({
      commonName: 'mta-sts.enforce.test',
      dnsNames: Object.keys(POLICIES).map((d) => `mta-sts.${d}`),
      issuer: { certPem: ca.certPem, keyPem: ca.keyPem },
    });
    https = createServer({ key: policyCert.keyPem, cert: policyCert.certPem }, (req, res) => {
      const domain = (req.headers.host ?? '').replace(/^mta-sts\./, '');
      const body = POLICIES[domain];
      if (req.url !== '/.well-known/mta-sts.txt' || !body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    });
    await new Promise<void>((resolve, reject) => {
      https.once('error', reject);
      https.listen(443, POLICY_IP, () => resolve());
    });
    const mx = (host: string) => [{ priority: 10, exchange: host }];
    dns = await new TestDns({
      mx: {
        'enforce.test': mx('mx.good-sts.test'),
        'mismatch.test': mx('mx.good-sts.test'),
        'notls.test': mx('mx.plain-sts.test'),
        'testing.test': mx('mx.plain-sts.test'),
        'badcert.test': mx('mx.badcert-sts.test'),
      },
      a: {
        'mx.good-sts.test': ['127.0.0.1'],
        'mx.plain-sts.test': ['127.0.0.3'],
        'mx.badcert-sts.test': ['127.0.0.4'],
        ...Object.fromEntries(Object.keys(POLICIES).map((d) => [`mta-sts.${d}`, [POLICY_IP]])),
      },
      txt: Object.fromEntries(Object.keys(POLICIES).map((d) => [`_mta-sts.${d}`, [['v=STSv1; id=20261203']]])),
    }).startOn(env.ports.dns);
    const caFile = join(env.dir, 'test-ca.pem');
    writeFileSync(caFile, ca.certPem);
    const config = `${baseConfig(env, {
      delivery: `delivery:\n  minRetryDelay: 300ms\n  maxRetryDelay: 600ms\n  mxPort: ${port}\n  connectTimeout: 2s\n  dns: { servers: [127.0.0.1:${env.ports.dns}], timeout: 2s }\n`,
    })}mtaSts: { mode: enforce, maxAge: 30d }\n`;
    mp = await startMailplane(env, config, { NODE_EXTRA_CA_CERTS: caFile });
  });

  after(async () => {
    await mp?.stop();
    await good?.stop();
    await plain?.stop();
    await wrongCert?.stop();
    https?.close();
    dns?.stop();
  });

  /** GET of the policy path with this Host header (fetch() does not let a caller set Host). */
  function get(host: string): Promise<{ status: number; type: string; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: env.ports.ops, path: '/.well-known/mta-sts.txt', headers: { host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  async function submit(to: string, subject: string): Promise<void> {
    const { client } = await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.exempt });
    await client.ehlo();
    const r = await client.send('alice@example.com', [to], message(subject));
    assert.equal(r.data?.code, 250);
    await client.quit();
  }

  test('our policy is served for mta-sts.<domain>, with the id `mailplane dns` publishes', async () => {
    const res = await get('mta-sts.example.org');
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain/);
    const text = res.body;
    assert.equal(text, 'version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 2592000\r\n');
    const out = await mailplane(['dns', '--config', env.configFile, '--format', 'json']);
    assert.equal(out.code, 0, out.stderr);
    const records = JSON.parse(out.stdout) as { records: { name: string; rdata: string }[] };
    const published = records.records.find((r) => r.name === '_mta-sts.example.org')!.rdata;
    assert.match(published, new RegExp(`id=${createHash('sha256').update(text).digest('hex').slice(0, 32)}`));
    for (const host of ['mta-sts.other.test', 'example.org', 'mta-sts.mail.example.com']) {
      assert.equal((await get(host)).status, 404, host);
    }
  });

  test('enforce, MX named by the policy, valid certificate: delivered over TLS', async () => {
    await submit('bob@enforce.test', 'sts-enforce');
    await mp.waitFor('delivered', () => good.for('bob@enforce.test')[0]);
    assert.equal(good.for('bob@enforce.test')[0]!.secure, true);
    assert.ok((await mp.metric('mailplane_mta_sts_total', 'result="enforced"'))! >= 1);
  });

  test('enforce, no MX the policy names / an MX without STARTTLS / a certificate for another name: the mail waits and the queue says why', async () => {
    await submit('carol@mismatch.test', 'sts-mismatch');
    await submit('dave@notls.test', 'sts-notls');
    await submit('frank@badcert.test', 'sts-badcert');
    const waiting = await mp.waitFor('both deferred with a reason', async () => {
      const q = await mailplane(['queue', 'list', '--config', env.configFile, '--format', 'json']);
      const entries = (JSON.parse(q.stdout) as { messages: { recipients: { address: string; lastResponse: string | null }[] }[] }).messages;
      const why = (a: string) => entries.flatMap((e) => e.recipients).find((r) => r.address === a)?.lastResponse ?? '';
      const [m, n, b] = [why('carol@mismatch.test'), why('dave@notls.test'), why('frank@badcert.test')];
      return /MTA-STS/.test(m) && /MTA-STS/.test(n) && /MTA-STS/.test(b) ? { m, n, b } : false;
    });
    assert.match(waiting.m, /allows none of its MX hosts.*mx\.good-sts\.test/);
    assert.match(waiting.n, /TLS/);
    assert.match(waiting.b, /certificate|altname|Hostname/i);
    assert.equal(wrongCert.for('frank@badcert.test').length, 0, 'nothing sent to an MX that could not prove its name');
    assert.equal(good.for('carol@mismatch.test').length, 0);
    assert.equal(plain.for('dave@notls.test').length, 0, 'never sent in clear');
    assert.ok((await mp.metric('mailplane_mta_sts_total', 'result="deferred"'))! >= 3);
  });

  test('mailplane to mailplane: a second server fetches our policy over HTTPS (through a TLS proxy, as an Ingress would) and delivers under enforce', async () => {
    // the proxy: TLS for mta-sts.example.org, forwarding to the ops endpoint with the Host header
    const ca = testCa();
    const proxyCert = issueCertificate({ commonName: 'mta-sts.example.org', dnsNames: ['mta-sts.example.org'], issuer: { certPem: ca.certPem, keyPem: ca.keyPem } });
    const proxy = createServer({ key: proxyCert.keyPem, cert: proxyCert.certPem }, (req, res) => {
      const up = httpRequest({ host: '127.0.0.1', port: env.ports.ops, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    await new Promise<void>((resolve, reject) => {
      proxy.once('error', reject);
      proxy.listen(443, '127.0.0.10', () => resolve());
    });
    const policy = (await get('mta-sts.example.org')).body;
    const id = createHash('sha256').update(policy).digest('hex').slice(0, 32);
    dns.zone.mx = { ...dns.zone.mx, 'example.org': [{ priority: 10, exchange: 'mail.example.com' }] };
    dns.zone.a = { ...dns.zone.a, 'mail.example.com': ['127.0.0.1'], 'mta-sts.example.org': ['127.0.0.10'] };
    dns.zone.txt = { ...dns.zone.txt, '_mta-sts.example.org': [[`v=STSv1; id=${id}`]] };
    const env2 = await makeEnv();
    const caFile = join(env2.dir, 'test-ca.pem');
    writeFileSync(caFile, ca.certPem);
    const config2 = baseConfig(env2, {
      delivery: `delivery:\n  minRetryDelay: 300ms\n  maxRetryDelay: 600ms\n  mxPort: ${env.ports.mx}\n  connectTimeout: 2s\n  dns: { servers: [127.0.0.1:${env.ports.dns}], timeout: 2s }\n`,
    })
      .replace('hostname: mail.example.com', 'hostname: mx2.sender.test')
      .replace('domains: [example.com, example.org]', 'domains: [sender.test]');
    const mp2 = await startMailplane(env2, config2, { NODE_EXTRA_CA_CERTS: caFile });
    try {
      const { client } = await SmtpClient.connect({ port: env2.ports.mx, localAddress: CLIENTS.exempt });
      await client.ehlo();
      const r = await client.send('carol@sender.test', ['bob@example.org'], message('mailplane-to-mailplane'));
      assert.equal(r.data?.code, 250);
      await client.quit();
      const copy = await mp.waitFor(
        'stored at the first server',
        () => {
          const dir = join(env.dataDir, 'mail', 'bob', 'new');
          return existsSync(dir)
            ? readdirSync(dir)
                .map((f) => readFileSync(join(dir, f), 'latin1'))
                .find((m) => m.includes('Subject: mailplane-to-mailplane'))
            : undefined;
        },
        20_000,
      );
      assert.match(copy, /^Received: from mx2\.sender\.test .*\r\n\t.*with ESMTPS/m, 'received over TLS');
      assert.equal(await mp2.metric('mailplane_mta_sts_total', 'result="enforced"'), 1);
    } finally {
      await mp2.stop();
      proxy.close();
    }
  });

  test('testing: delivered as without a policy, the mismatch counted', async () => {
    await submit('erin@testing.test', 'sts-testing');
    await mp.waitFor('delivered', () => plain.for('erin@testing.test')[0]);
    assert.ok((await mp.metric('mailplane_mta_sts_total', 'result="testing_violation"'))! >= 1);
  });
});
