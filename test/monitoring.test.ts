// The Grafana dashboard and the Prometheus alert rules of the chart: promtool checks and unit
// tests every alert; every query refers only to metrics, labels and label values that a live
// mailplane (with a relay, after real traffic) exports; and a real Prometheus scraping that
// server answers every dashboard panel with data and evaluates every rule without error.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { CHART } from './helpers/helm.js';
import { freePort } from './helpers/ports.js';
import { checkExpr, parseExposition, references, type Exposition } from './helpers/promql.js';
import { Prometheus, toolOrSkip } from './helpers/prometheus.js';
import { TestRelay } from './helpers/relay.js';
import { baseConfig, CLIENTS, makeEnv, startMailplane, type Env, type MailplaneProcess } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';
import { testCa } from './helpers/tls.js';
import { rspamdOrSkip, TestRspamd } from './helpers/rspamd.js';
import { aliceSubmits } from './helpers/traffic.js';

const RULES = join(CHART, 'rules/mailplane-alerts.yaml');
const RULES_TEST = join(CHART, 'rules/mailplane-alerts.test.yaml');
const DASHBOARD = join(CHART, 'dashboards/mailplane.json');

const rules = parseYaml(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: { alert: string; expr: string }[] }[] };
const alerts = rules.groups.flatMap((g) => g.rules);
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
const panels: any[] = dashboard.panels.filter((p: any) => p.type !== 'row');

/** Grafana's variables as the dashboard's "All" selection sends them. */
const grafana = (expr: string) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$namespace', '.*').replaceAll('$job', 'mailplane').replaceAll('$instance', '.*');

/** Every PromQL expression of the dashboard: panel targets, annotations, variable queries (label_values' selector). */
function dashboardExprs(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of panels) for (const t of p.targets) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
  for (const a of dashboard.annotations.list) out.push({ where: `annotation "${a.name}"`, expr: a.expr });
  for (const v of dashboard.templating.list.filter((x: any) => x.type === 'query')) {
    const m = String(v.query.query).match(/^label_values\((.+),\s*([a-zA-Z_]+)\)$/);
    assert.ok(m, `variable ${v.name}: ${v.query.query}`);
    out.push({ where: `variable ${v.name}`, expr: m[1]! });
  }
  return out;
}

test('promtool checks the alert rules and their unit tests pass', { skip: !toolOrSkip('promtool') }, () => {
  const check = execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
  assert.match(check, new RegExp(`SUCCESS: ${alerts.length} rules found`));
  const unit = execFileSync('promtool', ['test', 'rules', RULES_TEST], { encoding: 'utf8' });
  assert.match(unit, /SUCCESS/);
});

test('every alert has unit tests that see it fire and stay quiet', () => {
  const tests = parseYaml(readFileSync(RULES_TEST, 'utf8')) as { rule_files: string[]; tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] };
  assert.deepEqual(tests.rule_files, ['mailplane-alerts.yaml']);
  const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
  for (const { alert } of alerts) {
    assert.ok(
      cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0),
      `${alert} is never seen firing`,
    );
    assert.ok(
      cases.some((c) => c.alertname === alert && c.exp_alerts.length === 0),
      `${alert} is never seen quiet`,
    );
  }
  // what the issue asks to be alerted on, by the metric each alert watches
  const watched = (metric: string) => alerts.filter((a) => references(a.expr).selectors.some((s) => s.metric === metric)).map((a) => a.alert);
  for (const metric of [
    'up',
    'mailplane_config_last_reload_successful',
    'mailplane_queue_messages',
    'mailplane_queue_oldest_message_age_seconds',
    'mailplane_relay_up',
    'mailplane_accounts_backend_up',
    'mailplane_tls_certificate_expiry_timestamp_seconds',
    'mailplane_smtp_auth_total',
    'mailplane_local_deliveries_oldest_pending_age_seconds',
    'mailplane_dkim_signing_failures_total',
    'mailplane_inbound_auth_actions_total',
    'mailplane_spam_filter_up',
    'mailplane_relay_failures_total',
    'mailplane_accounts_backend_failures_total',
    'process_start_time_seconds',
    'process_resident_memory_bytes',
    'mailplane_memory_limit_bytes',
    'mailplane_storage_volume_available_bytes',
  ]) {
    assert.ok(watched(metric).length > 0, `no alert on ${metric}`);
  }
});

test('the dashboard: every panel queries the data source variable and filters by job and instance', () => {
  assert.equal(dashboard.uid, 'mailplane');
  const ids = dashboard.panels.map((p: any) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  assert.deepEqual(
    dashboard.templating.list.map((v: any) => v.name),
    ['datasource', 'namespace', 'job', 'instance'],
  );
  for (const p of panels) {
    assert.ok(p.targets?.length, `panel ${p.title} has no query`);
    assert.equal(p.datasource.uid, '${datasource}', p.title);
    for (const t of p.targets) {
      for (const s of references(grafana(t.expr)).selectors) {
        const m = (label: string) => s.matchers.find((x) => x.label === label);
        assert.equal(m('job')?.value, 'mailplane', `${p.title}: ${t.expr} does not filter by $job`);
        assert.equal(m('instance')?.value, '.*', `${p.title}: ${t.expr} does not filter by $instance`);
        assert.equal(m('namespace')?.value, '.*', `${p.title}: ${t.expr} does not filter by $namespace`);
      }
    }
  }
  // what the issue asks the dashboard to show
  const used = new Set(dashboardExprs().flatMap((e) => references(grafana(e.expr)).selectors.map((s) => s.metric)));
  for (const metric of [
    'mailplane_smtp_messages_total',
    'mailplane_smtp_rejections_total',
    'mailplane_smtp_sessions_active',
    'mailplane_smtp_auth_total',
    'mailplane_smtp_message_size_bytes_bucket',
    'mailplane_delivery_total',
    'mailplane_queue_messages',
    'mailplane_queue_oldest_message_age_seconds',
    'mailplane_relay_up',
    'mailplane_accounts_backend_up',
    'mailplane_config_last_reload_successful',
    'mailplane_config_generation_info',
    'mailplane_config_generation',
    'mailplane_config_last_reload_success_timestamp_seconds',
    'mailplane_tls_certificate_expiry_timestamp_seconds',
    'mailplane_reconcile_duration_seconds_bucket',
    'mailplane_local_deliveries_pending',
    'mailplane_local_deliveries_oldest_pending_age_seconds',
    'mailplane_dkim_signatures_total',
    'mailplane_dkim_signing_failures_total',
    'mailplane_inbound_auth_total',
    'mailplane_inbound_auth_actions_total',
    'mailplane_spam_scans_total',
    'mailplane_spam_scan_duration_seconds_bucket',
    'mailplane_spam_filter_up',
    'up',
    'process_start_time_seconds',
    'process_resident_memory_bytes',
    'mailplane_memory_limit_bytes',
    'mailplane_event_loop_delay_seconds_bucket',
    'mailplane_storage_volume_available_bytes',
    'mailplane_storage_volume_size_bytes',
  ]) {
    assert.ok(used.has(metric), `the dashboard does not show ${metric}`);
  }
});

// ---- against a live server --------------------------------------------------------------

const ACCOUNT = { user: 'mailer@example.com', pass: 'relay-s3cret' };
let env: Env;
let relay: TestRelay;
let rspamd: TestRspamd | null;
let mp: MailplaneProcess;
let live: Exposition;

before(async () => {
  env = await makeEnv();
  relay = await new TestRelay({ port: await freePort(), mode: 'starttls', account: ACCOUNT }).start();
  writeFileSync(join(env.dir, 'ca.pem'), testCa().certPem);
  writeFileSync(join(env.dir, 'relay-password'), `${ACCOUNT.pass}\n`);
  // a DKIM key: its domain's series start at 0 (what the DKIM panel and alert read)
  writeFileSync(join(env.dir, 'dkim.key'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  // a spam filter (a real Rspamd): the spam panels and alert read its series
  rspamd = rspamdOrSkip() ? await new TestRspamd(env.ports.dns).start() : null;
  const spam = rspamd ? `inbound:\n  spamFilter: { type: rspamd, url: "${rspamd.url}" }\n` : '';
  const config = `${baseConfig(env, {
    relay: `relay:\n  enabled: true\n  host: 127.0.0.1\n  port: ${relay.o.port}\n  caFile: ca.pem\n  auth: { username: ${ACCOUNT.user}, passwordFile: relay-password }\n`,
  })}dkim:\n  keys:\n    - { domain: example.com, selector: mon1, privateKeyFile: dkim.key }\n${spam}`;
  mp = await startMailplane(env, config);
  // traffic of every kind the queries look at: AUTH failure and success, a local and a relayed
  // message, refusals, and a refused config reload
  await (await aliceSubmits(env, 'monitoring')).quit();
  const m = (await SmtpClient.connect({ port: env.ports.mx, localAddress: CLIENTS.other })).client;
  await m.ehlo();
  await m.send('x@example.net', ['nobody@example.com', 'victim@elsewhere.example'], message('refused'));
  await m.quit();
  // the duration is observed when the relay session ends, after the recipient's result
  await mp.waitFor('the relayed delivery', async () => ((await mp.metric('mailplane_delivery_duration_seconds_count', 'transport="relay"')) ?? 0) >= 1);
  assert.equal(await mp.metric('mailplane_delivery_total', 'transport="relay",result="delivered"'), 1);
  writeFileSync(env.configFile, `${config}smtp: {}\n`);
  assert.equal((await mp.http('/-/reload', { method: 'POST' })).status, 422);
  writeFileSync(env.configFile, config);
  assert.equal((await mp.http('/-/reload', { method: 'POST' })).status, 200);
  live = parseExposition(await mp.metrics());
});
after(async () => {
  await mp?.stop();
  await relay?.stop();
  await rspamd?.stop();
});

const CHECK = { targetLabels: ['job', 'instance', 'namespace'], synthetic: ['up'] };

test('every dashboard and alert query uses only metrics, labels and label values a live mailplane exports', () => {
  const problems: string[] = [];
  for (const { where, expr } of dashboardExprs()) problems.push(...checkExpr(grafana(expr), live, CHECK).map((p) => `${where}: ${p}`));
  for (const a of alerts) problems.push(...checkExpr(a.expr, live, CHECK).map((p) => `alert ${a.alert}: ${p}`));
  assert.deepEqual(problems, []);
  // and the check itself catches a wrong metric, label, value and grouping
  assert.equal(checkExpr('rate(mailplane_smtp_message_total[5m])', live, CHECK).length, 1);
  assert.equal(checkExpr('mailplane_smtp_auth_total{reason="failure"}', live, CHECK).length, 1);
  assert.equal(checkExpr('mailplane_smtp_auth_total{result="failed"}', live, CHECK).length, 1);
  assert.equal(checkExpr('sum by (transport) (mailplane_smtp_auth_total)', live, CHECK).length, 1);
  assert.equal(checkExpr('sum by (le) (rate(mailplane_delivery_duration_seconds_bucket{transport="relay"}[5m]))', live, CHECK).length, 0);
});

test('a real Prometheus scraping mailplane answers every dashboard panel with data and evaluates every alert rule', { skip: !toolOrSkip('prometheus') }, async () => {
  const prom = await Prometheus.start(`127.0.0.1:${env.ports.ops}`, [RULES]);
  try {
    // rate() needs two samples in its window; wait for a few scrapes
    await mp.waitFor(
      'three scrapes',
      async () => {
        const r = await prom.query('count_over_time(up{job="mailplane"}[1m]) >= 3 and up{job="mailplane"} == 1');
        return Array.isArray((r.data as any).result) && (r.data as any).result.length === 1;
      },
      20_000,
    );
    const empty: string[] = [];
    for (const p of panels) {
      for (const t of p.targets) {
        const r = await prom.query(grafana(t.expr));
        assert.equal(r.status, 'success', `${p.title}: ${r.error}`);
        if ((r.data as any).result.length === 0) empty.push(`${p.title} ${t.refId}: ${t.expr}`);
      }
    }
    assert.deepEqual(empty, [], 'panels without data');
    for (const a of dashboard.annotations.list) assert.equal((await prom.query(grafana(a.expr))).status, 'success', a.name);
    for (const v of ['job', 'instance']) {
      // (namespace: only in a cluster, where the ServiceMonitor's targets carry it)
      const r = await prom.api(`label/${v}/values`, { 'match[]': 'mailplane_config_generation_info{job=~"mailplane"}' });
      assert.ok((r.data as string[]).length > 0, `variable ${v} has no values`);
    }
    // every rule evaluated, none failing, and none firing on a healthy server
    const rulesState = await mp.waitFor(
      'rules evaluated',
      async () => {
        const r = (await prom.api('rules')) as any;
        const all = r.data.groups.flatMap((g: any) => g.rules);
        return all.length === alerts.length && all.every((x: any) => x.lastEvaluation !== '0001-01-01T00:00:00Z') ? all : false;
      },
      20_000,
    );
    for (const r of rulesState) {
      assert.equal(r.health, 'ok', `${r.name}: ${r.lastError}`);
      assert.equal(r.state, 'inactive', `${r.name} is ${r.state} on a healthy server`);
    }
  } finally {
    await prom.stop();
  }
});
