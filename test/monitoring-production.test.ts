// What an operator reads when an alert fires, and what the dashboard shows at a production scrape
// interval: every rule links its section of docs/runbooks.md (each section says what it means,
// what to check, what to do), and the config reload annotations show at a 60 s scrape interval
// (checked by promtool on series scraped once a minute).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ROOT } from './helpers/cli.js';
import { CHART } from './helpers/helm.js';
import { toolOrSkip } from './helpers/prometheus.js';
import { tempDir } from './helpers/tmp.js';

const RULES = join(CHART, 'rules/mailplane-alerts.yaml');
const rules = parseYaml(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert: string; annotations: Record<string, string> }[] }[] };
const alerts = rules.groups.flatMap((g) => g.rules);
const runbooks = readFileSync(join(ROOT, 'docs/runbooks.md'), 'utf8');
const dashboard = JSON.parse(readFileSync(join(CHART, 'dashboards/mailplane.json'), 'utf8'));

test('every alert rule has a runbook_url into docs/runbooks.md, whose section says what it means, what to check and what to do', () => {
  const sections = new Map<string, string>();
  for (const part of runbooks.split(/^## /m).slice(1)) sections.set(part.split('\n')[0]!.trim(), part);
  for (const { alert, annotations } of alerts) {
    assert.equal(annotations.runbook_url, `docs/runbooks.md#${alert.toLowerCase()}`, alert);
    const section = sections.get(alert);
    assert.ok(section, `docs/runbooks.md has no section "## ${alert}"`);
    assert.match(section, /\*\*Means\.\*\*/, `${alert}: what it means`);
    assert.match(section, /\*\*Check(\.| \/ do\.)\*\*/, `${alert}: what to check`);
    assert.match(section, /\*\*(Do|Check \/ do)\.\*\*/, `${alert}: what to do`);
  }
  // the alerts the production issue asked for, and the newer ones
  for (const name of [
    'MailplaneAbsent',
    'MailplaneVolumeAlmostFull',
    'MailplaneMemoryNearLimit',
    'MailplaneRestarting',
    'MailplaneRelayDown',
    'MailplaneAccountBackendDown',
    'MailplaneInboundChecksDeferring',
    'MailplaneSpamFilterDown',
    'MailplaneDkimSigningFailing',
  ]) {
    assert.ok(
      alerts.some((a) => a.alert === name),
      name,
    );
  }
  // links between sections resolve
  for (const [, anchor] of runbooks.matchAll(/\]\(#([a-z0-9-]+)\)/g)) {
    const headings = [...runbooks.matchAll(/^##+ (.+)$/gm)].map((m) =>
      m[1]!
        .toLowerCase()
        .replace(/[^a-z0-9 -]/g, '')
        .replace(/ /g, '-'),
    );
    assert.ok(headings.includes(anchor!), `#${anchor} is no heading`);
  }
});

test('the reload annotations show at a 60 s scrape interval (promtool, series scraped once a minute)', { skip: !toolOrSkip('promtool') }, () => {
  const expr = (name: string) => {
    const a = dashboard.annotations.list.find((x: { name: string }) => x.name === name);
    return String(a.expr).replaceAll('$namespace', '.*').replaceAll('$job', 'mailplane').replaceAll('$instance', '.*');
  };
  const dir = tempDir('annotations');
  writeFileSync(join(dir, 'empty.yaml'), 'groups: []\n');
  const labels = 'job="mailplane", instance="mail-mailplane-0", namespace="mail"';
  const tests = {
    rule_files: ['empty.yaml'],
    evaluation_interval: '1m',
    tests: [
      {
        interval: '1m',
        input_series: [
          // generation 1, then a change applied at 5m, one refused at 8m
          { series: `mailplane_config_generation{${labels}}`, values: '1x4 2x10' },
          { series: `mailplane_config_reloads_total{${labels}, outcome="applied"}`, values: '1x4 2x10' },
          { series: `mailplane_config_reloads_total{${labels}, outcome="invalid"}`, values: '0x7 1x7' },
        ],
        promql_expr_test: [
          { expr: expr('Config applied'), eval_time: '4m', exp_samples: [] },
          { expr: expr('Config applied'), eval_time: '5m', exp_samples: [{ labels: '{instance="mail-mailplane-0"}', value: 1 }] },
          { expr: expr('Config applied'), eval_time: '6m', exp_samples: [] },
          { expr: expr('Config refused'), eval_time: '8m', exp_samples: [{ labels: '{instance="mail-mailplane-0", outcome="invalid"}', value: 1 }] },
          { expr: expr('Config refused'), eval_time: '9m', exp_samples: [] },
        ],
      },
    ],
  };
  writeFileSync(join(dir, 'annotations.test.yaml'), stringifyYaml(tests));
  const out = execFileSync('promtool', ['test', 'rules', join(dir, 'annotations.test.yaml')], { encoding: 'utf8' });
  assert.match(out, /SUCCESS/);
  // the dashboard's annotation queries are evaluated once a minute at most, as these samples are
  for (const a of dashboard.annotations.list) assert.equal(a.step, '60s', a.name);
});
