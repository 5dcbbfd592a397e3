// The committed index.d.ts (and the generated loader index.js) are exactly what
// building the addon generates, and the documented API type-checks against them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageDir } from './support.mjs';

const generatedDir = join(packageDir, '.napi');
const howToGenerate =
  'run scripts/test.sh, which builds the addon and writes the generated files to .napi/ ' +
  '(npx napi build --platform --output-dir .napi)';

for (const file of ['index.d.ts', 'index.js']) {
  test(`the committed ${file} matches the generated one`, () => {
    const generated = join(generatedDir, file);
    assert.ok(existsSync(generated), `no generated ${file} in .napi/: ${howToGenerate}`);
    const committed = readFileSync(join(packageDir, file), 'utf8').split('\n');
    const fresh = readFileSync(generated, 'utf8').split('\n');
    const at = committed.findIndex((line, i) => line !== fresh[i]);
    if (at === -1 && committed.length === fresh.length) return;
    const line = at === -1 ? Math.min(committed.length, fresh.length) : at;
    assert.fail(
      `${file} drifted from the addon at line ${line + 1}:\n` +
        `  committed: ${JSON.stringify(committed[line])}\n` +
        `  generated: ${JSON.stringify(fresh[line])}\n` +
        `run \`npm run build:debug\` (which rewrites ${file}) and commit it`,
    );
  });
}

test('every documented class and function exists at runtime', async () => {
  const dts = readFileSync(join(packageDir, 'index.d.ts'), 'utf8');
  const declared = [...dts.matchAll(/^export declare (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
  const binding = await import('@a3s-lab/lane');
  const exported = Object.keys(binding)
    .filter((name) => name !== 'default')
    .sort();
  assert.deepEqual(exported, declared);
});

test('the documented API type-checks with tsc --strict', () => {
  const tsc = join(packageDir, 'node_modules', 'typescript', 'bin', 'tsc');
  assert.ok(existsSync(tsc), 'typescript is missing: run npm ci');
  try {
    execFileSync(
      process.execPath,
      [
        tsc,
        '--noEmit',
        '--strict',
        '--target',
        'es2022',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--types',
        'node',
        '--lib',
        'es2022',
        join(packageDir, 'test', 'types', 'usage.ts'),
      ],
      { cwd: packageDir, stdio: 'pipe' },
    );
  } catch (error) {
    assert.fail(`tsc failed:\n${error.stdout}${error.stderr}`);
  }
});
