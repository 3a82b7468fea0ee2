// Reload under load: 20 sessions send continuously while the config is rewritten 50 times
// (policy changes, every fifth a certificate rotation). Reports file-change → applied latency
// from the server's own appliedAt timestamps, and every failed or refused transaction.
import { spawn } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueCertificate } from '../src/tls/devcert.js';
import { freePort, mailplaneConfig, percentile, startMailplane } from './harness.js';

export interface ReloadResult {
  changes: number;
  applied: number;
  p50: number;
  p99: number;
  sent: number;
  failed: number;
}

async function status(ops: number): Promise<{ applied: { generation: number; appliedAt: string } }> {
  return (await fetch(`http://127.0.0.1:${ops}/status`)).json() as Promise<{ applied: { generation: number; appliedAt: string } }>;
}

async function metric(ops: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${ops}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

export async function reloadUnderLoad(bin: string, dir: string, changes: number): Promise<ReloadResult> {
  mkdirSync(dir, { recursive: true });
  const cert = () => issueCertificate({ commonName: 'mail.example.com' });
  const writeCert = () => {
    const c = cert();
    writeFileSync(join(dir, 'tls.key.new'), c.keyPem);
    writeFileSync(join(dir, 'tls.crt.new'), c.certPem);
    renameSync(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
    renameSync(join(dir, 'tls.crt.new'), join(dir, 'tls.crt'));
  };
  writeCert();
  const [port, ops, sub] = [await freePort(), await freePort(), await freePort()];
  const config = (size: number) =>
    mailplaneConfig(dir, port, ops)
      .replace('    - { name: mx,', `    - { name: submission, address: 127.0.0.1, port: ${sub}, role: submission, tls: starttls }\n    - { name: mx,`)
      .replace('maxMessageSize: 10MB', `maxMessageSize: ${size}`);
  const s = await startMailplane(dir, config(10_000_000), ops, port);
  const file = join(dir, 'mailserver.yaml');
  const latencies: number[] = [];
  let applied = 0;
  const sent0 = await metric(ops, 'mailplane_smtp_messages_total');
  const rejected0 = await metric(ops, 'mailplane_smtp_rejections_total');
  const load = spawn(bin, ['-s', '20', '-l', '1024', '-m', '100000000', '-f', 'load@example.net', '-t', 'bench@example.com', '-M', 'loadgen.example.net', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let loadErrors = '';
  load.stderr.on('data', (d) => (loadErrors += d));
  try {
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 1; i <= changes; i++) {
      const before = (await status(ops)).applied.generation;
      const t0 = Date.now();
      if (i % 5 === 0) writeCert();
      else writeFileSync(file, config(10_000_000 + i));
      const deadline = Date.now() + 5000;
      for (;;) {
        const st = await status(ops);
        if (st.applied.generation > before) {
          applied++;
          latencies.push(Date.parse(st.applied.appliedAt) - t0);
          break;
        }
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    const exited = new Promise((r) => load.once('exit', r));
    load.kill('SIGTERM');
    await exited;
  }
  await new Promise((r) => setTimeout(r, 300)); // let the sessions cut by the generator's exit close
  const sent = (await metric(ops, 'mailplane_smtp_messages_total')) - sent0;
  const rejected = (await metric(ops, 'mailplane_smtp_rejections_total')) - rejected0;
  const generatorFailures = /fatal/.test(loadErrors) ? 1 : 0;
  await s.stop();
  return { changes, applied, p50: percentile(latencies, 50), p99: percentile(latencies, 99), sent, failed: rejected + generatorFailures };
}
