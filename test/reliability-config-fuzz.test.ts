// Config fuzzing: thousands of mutated configs (keys deleted, duplicated, retyped, files cut
// short, random bytes). Loading never throws and always answers either a state or errors with
// positions; a running server fed a stream of them never stops serving.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigText } from '../src/config/load.js';
import { ROOT } from './helpers/cli.js';
import { baseConfig, makeEnv, startMailplane } from './helpers/server.js';
import { message, SmtpClient } from './helpers/smtp.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SCALARS = [
  '7',
  '-1',
  '0',
  '3.5',
  'true',
  'no',
  'null',
  '~',
  '[]',
  '{}',
  '[a, b]',
  '{ x: 1 }',
  '"25MB"',
  "''",
  'ldap',
  'implicit',
  '0.0.0.0/0',
  '99999999999999999999',
  '"\\u0000"',
  '&a x',
  '*a',
  '!!binary aGk=',
  '| block',
  '> folded',
];

export function mutate(text: string, r: () => number): string {
  const lines = text.split('\n');
  const pick = () => Math.floor(r() * lines.length);
  switch (Math.floor(r() * 9)) {
    case 0:
      lines.splice(pick(), 1);
      break;
    case 1: {
      const i = pick();
      lines.splice(i, 0, lines[i]!);
      break;
    }
    case 2:
      return text.slice(0, Math.floor(r() * text.length));
    case 3: {
      const i = pick();
      lines[i] = lines[i]!.replace(/:\s.*$/, `: ${SCALARS[Math.floor(r() * SCALARS.length)]}`);
      break;
    }
    case 4: {
      const at = Math.floor(r() * text.length);
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 12) }, () => Math.floor(r() * 256))).toString('latin1');
      return text.slice(0, at) + junk + text.slice(at);
    }
    case 5: {
      const [i, j] = [pick(), pick()];
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      break;
    }
    case 6: {
      const i = pick();
      lines[i] = r() < 0.5 ? `  ${lines[i]}` : lines[i]!.replace(/^ {1,2}/, '');
      break;
    }
    case 7: {
      const i = pick();
      lines[i] = lines[i]!.replace(/^(\s*)(-\s*)?([A-Za-z]+):/, (_m, s, d, k: string) => `${s}${d ?? ''}${k.slice(0, -1) || 'x'}:`);
      break;
    }
    default:
      lines.splice(pick(), 0, `${' '.repeat(Math.floor(r() * 6))}extra${Math.floor(r() * 9)}: ${SCALARS[Math.floor(r() * SCALARS.length)]}`);
  }
  return lines.join('\n');
}

test('thousands of mutated configs: validation never throws, always a state or positioned errors', async () => {
  const examples = readdirSync(join(ROOT, 'examples')).filter((f) => f.endsWith('.yaml'));
  const r = rng(20261129);
  let valid = 0;
  let invalid = 0;
  let errors = 0;
  const N = 3000;
  for (let n = 0; n < N; n++) {
    const name = examples[n % examples.length]!;
    let text = readFileSync(join(ROOT, 'examples', name), 'utf8');
    const rounds = 1 + Math.floor(r() * 3);
    for (let k = 0; k < rounds; k++) text = mutate(text, r);
    const file = join(ROOT, 'examples', `fuzz-${name}`);
    let result;
    try {
      result = await loadConfigText(file, text, { env: { RELAY_PASSWORD: 'x' } });
    } catch (e) {
      assert.fail(`mutation ${n} of ${name} threw: ${(e as Error).stack}\n--- input ---\n${text}`);
    }
    if (result.state) {
      assert.equal(result.errors.length, 0);
      valid++;
    } else {
      assert.ok(result.errors.length > 0, `mutation ${n}: no state and no error`);
      for (const e of result.errors) {
        assert.ok(e.line >= 1 && e.col >= 1 && e.message.length > 0, `mutation ${n}: ${JSON.stringify(e)}`);
        assert.ok(e.file === file || e.file.length > 0);
      }
      invalid++;
      errors += result.errors.length;
    }
  }
  console.log(`RELIABILITY config-fuzzing mutations=${N} valid=${valid} invalid=${invalid} errorsReported=${errors} crashes=0`);
});

test('a running server fed a stream of mutated configs keeps serving', async () => {
  const env = await makeEnv();
  const good = baseConfig(env);
  const mp = await startMailplane(env, good);
  const r = rng(7);
  let served = 0;
  try {
    for (let n = 0; n < 150; n++) {
      writeFileSync(env.configFile, mutate(mutate(good, r), r));
      await new Promise((res) => setTimeout(res, 15));
      if (n % 15 === 14) {
        assert.ok(mp.running);
        assert.equal((await mp.http('/healthz')).status, 200);
        const { client, greeting } = await SmtpClient.connect({ port: env.ports.mx });
        if (greeting.code === 220) {
          await client.ehlo();
          const res = await client.send('x@example.net', ['bob@example.com'], message(`fuzz ${n}`));
          if (res.data?.code === 250) served++;
          await client.quit();
        } else client.destroy();
      }
    }
    writeFileSync(env.configFile, good.replace('maxMessageSize: "1MB"', 'maxMessageSize: 1234567'));
    await mp.waitFor('the good config back', async () => (await mp.status()).specs?.policy.maxMessageSize === 1234567);
    assert.ok(mp.running);
    console.log(`RELIABILITY config-fuzzing-live configsWritten=150 serverRunning=1 messagesServedMeanwhile=${served}`);
  } finally {
    await mp.stop();
  }
});
