// Every bad config fixture yields exactly the messages (with positions) in its .expected file
// and exit code 1; every good fixture and example validates.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { mailplane, ROOT } from './helpers/cli.js';

const BAD = 'test/fixtures/config/bad';
const GOOD = 'test/fixtures/config/good';

for (const name of readdirSync(`${ROOT}/${BAD}`).filter((f) => f.endsWith('.yaml'))) {
  test(`bad fixture ${name}`, async () => {
    const expected = readFileSync(`${ROOT}/${BAD}/${name.replace(/\.yaml$/, '.expected')}`, 'utf8');
    const r = await mailplane(['validate', `${BAD}/${name}`]);
    assert.equal(r.stdout, expected);
    assert.equal(r.code, 1);
  });
}

for (const name of readdirSync(`${ROOT}/${GOOD}`).filter((f) => f.endsWith('.yaml'))) {
  test(`good fixture ${name}`, async () => {
    const r = await mailplane(['validate', `${GOOD}/${name}`]);
    assert.equal(r.stdout, `${GOOD}/${name}: ok\n`);
    assert.equal(r.code, 0);
  });
}

test('every example validates', async () => {
  const examples = readdirSync(`${ROOT}/examples`)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `examples/${f}`);
  assert.ok(examples.length >= 6);
  const r = await mailplane(['validate', ...examples], { env: { ...process.env, RELAY_PASSWORD: 'set-in-test' } });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const f of examples) assert.match(r.stdout, new RegExp(`^${f}: ok$`, 'm'));
});
