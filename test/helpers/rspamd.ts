// A real Rspamd (Debian's rspamd) on loopback ports, with a small config of its own: no module
// that reaches the network (no RBLs, fuzzy storage or remote maps), DNS pointed at a loopback
// port, a tiny public-suffix list (so it starts in about a second), the test patterns enabled
// (GTUBE and its add-header / rewrite-subject / no-action variants), and one test rule: a
// message with `X-Test-Verdict: <action>` gets that action (for soft reject and greylist, which
// have no GTUBE variant), and `X-Test-Milter: yes` makes Rspamd ask for a header to be added
// and one removed; the symbol MP_TRUSTED_CLIENT shows a request sent with `MTA-Tag: trusted`.
// Started and stopped by PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts } from './ports.js';
import { tempDir } from './tmp.js';

const RSPAMD = '/usr/bin/rspamd';

/** Whether Debian's rspamd is installed; in CI a missing one fails, elsewhere it skips loudly. */
export function rspamdOrSkip(): boolean {
  if (existsSync(RSPAMD)) return true;
  if (process.env.CI) throw new Error('rspamd is required in CI (Debian package rspamd)');
  console.warn('\n*** SKIPPED LOUDLY: rspamd not installed (apt-get install rspamd); spam filter tests not run ***\n');
  return false;
}

export const GTUBE = {
  reject: 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
  addHeader: 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
  rewriteSubject: 'ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
  noAction: 'AJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
} as const;

const RULES = `
rspamd_config:register_symbol({
  name = 'MP_TEST_VERDICT',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local h = task:get_header('X-Test-Verdict')
    if h then
      task:set_pre_result(h, 'test verdict ' .. h)
      return true
    end
    return false
  end,
})
rspamd_config:register_symbol({
  name = 'MP_TRUSTED_CLIENT',
  score = 0.01,
  callback = function(task)
    return task:get_request_header('MTA-Tag') ~= nil and tostring(task:get_request_header('MTA-Tag')) == 'trusted'
  end,
})
rspamd_config:register_symbol({
  name = 'MP_TEST_MILTER',
  score = 1.5,
  callback = function(task)
    if task:get_header('X-Test-Milter') then
      task:set_milter_reply({ add_headers = { ['X-Test-Added'] = 'by rspamd' }, remove_headers = { ['X-Test-Remove'] = 0 } })
      return true
    end
    return false
  end,
})
`;

export class TestRspamd {
  child: ChildProcess | null = null;
  readonly dir = tempDir('rspamd');
  port = 0;
  controllerPort = 0;
  log = '';

  /** @param bayesRedis a Redis port: Rspamd then keeps a Bayes classifier there (learning through the controller, password `test`) */
  constructor(
    private readonly dnsPort: number,
    private readonly bayesRedis: number | null = null,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** host:port of the controller worker (learning; password `test`) */
  get controller(): string {
    return `127.0.0.1:${this.controllerPort}`;
  }

  async start(): Promise<this> {
    if (!this.port) [this.port, this.controllerPort] = (await freePorts(2)) as [number, number];
    const d = this.dir;
    writeFileSync(join(d, 'tld.dat'), 'com\norg\nnet\ntest\n');
    writeFileSync(join(d, 'rules.lua'), RULES);
    writeFileSync(
      join(d, 'rspamd.conf'),
      `options {
  pidfile = "${d}/rspamd.pid";
  dns { nameserver = ["127.0.0.1:${this.dnsPort}"]; timeout = 1s; retransmits = 1; }
  enable_test_patterns = true;
  local_addrs = [];
  filters = "";
  url_tld = "${d}/tld.dat";
  disable_hyperscan = true;
  tempdir = "${d}";
}
logging { type = "file"; filename = "${d}/rspamd.log"; level = "info"; }
worker "normal" { bind_socket = "127.0.0.1:${this.port}"; count = 1; }
worker "controller" { bind_socket = "127.0.0.1:${this.controllerPort}"; count = 1; password = "test"; }
actions { reject = 15; add_header = 6; greylist = 4; }
lua = "${d}/rules.lua";
${
  this.bayesRedis === null
    ? ''
    : `redis { servers = "127.0.0.1:${this.bayesRedis}"; }
classifier "bayes" {
  backend = "redis";
  servers = "127.0.0.1:${this.bayesRedis}";
  min_learns = 1;
  min_tokens = 1;
  statfile { symbol = "BAYES_HAM"; spam = false; }
  statfile { symbol = "BAYES_SPAM"; spam = true; }
}
`
}`,
    );
    const root = process.getuid?.() === 0;
    const user = root && spawnSync('id', ['_rspamd']).status === 0 ? '_rspamd' : null;
    if (user) {
      const uid = Number(spawnSync('id', ['-u', user]).stdout.toString());
      chownSync(d, uid, -1);
    }
    const args = ['-f', '-c', join(d, 'rspamd.conf'), ...(user ? ['-u', user, '-g', user] : root ? ['--insecure'] : [])];
    const child = spawn(RSPAMD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (x) => (this.log += x));
    child.stderr.on('data', (x) => (this.log += x));
    this.child = child;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`rspamd exited ${child.exitCode}: ${this.log}\n${this.fileLog()}`);
      try {
        const r = await fetch(`${this.url}/ping`, { signal: AbortSignal.timeout(1000) });
        if ((await r.text()).includes('pong')) return this;
      } catch {}
      if (Date.now() > deadline) throw new Error(`rspamd did not answer within 30 s: ${this.log}\n${this.fileLog()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  fileLog(): string {
    const f = join(this.dir, 'rspamd.log');
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    this.child = null;
  }
}
