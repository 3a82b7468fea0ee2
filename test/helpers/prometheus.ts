// A real Prometheus server (Debian's package `prometheus`, the one that brings promtool) on
// loopback, scraping one target every second as job "mailplane" and evaluating rule files.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { waitFor } from './server.js';
import { tempDir } from './tmp.js';

/** Whether a Debian prometheus tool is installed; in CI a missing one fails, elsewhere it skips loudly. */
export function toolOrSkip(tool: 'promtool' | 'prometheus'): boolean {
  if (!spawnSync(tool, ['--version']).error) return true;
  if (process.env.CI) throw new Error(`${tool} is required in CI (Debian package prometheus)`);
  console.warn(`\n*** SKIPPED LOUDLY: ${tool} not installed (apt-get install prometheus); monitoring checks not run ***\n`);
  return false;
}

export interface QueryResult {
  status: string;
  error?: string;
  data: { resultType: string; result: unknown[] } | string[];
}

export class Prometheus {
  logs = '';
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.stdout?.on('data', (d) => (this.logs += d));
    child.stderr?.on('data', (d) => (this.logs += d));
  }

  static async start(target: string, ruleFiles: readonly string[]): Promise<Prometheus> {
    const dir = tempDir('prometheus');
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: ruleFiles,
      scrape_configs: [{ job_name: 'mailplane', static_configs: [{ targets: [target] }] }],
    };
    writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config)); // JSON is YAML
    const port = await freePort();
    const child = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p = new Prometheus(child, `http://127.0.0.1:${port}`);
    await waitFor(
      'prometheus ready',
      async () => (await fetch(`${p.url}/-/ready`).catch(() => null))?.ok ?? false,
      20_000,
      () => p.logs,
    );
    return p;
  }

  async api(path: string, params: Record<string, string | string[]> = {}): Promise<QueryResult> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) q.append(k, x);
    const res = await fetch(`${this.url}/api/v1/${path}?${q.toString()}`);
    return (await res.json()) as QueryResult;
  }

  async query(expr: string): Promise<QueryResult> {
    return this.api('query', { query: expr });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}
