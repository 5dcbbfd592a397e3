// index.d.ts stands on its own and is strict: a user-style TypeScript file compiles with
// `tsc --noEmit --strict` without @types/node or the DOM lib, and the misuse marked
// `@ts-expect-error` in it does not compile.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageDir } from './support.mjs';

/** tsc's errors for `file` ('' when it compiles); `types` is the @types packages seen. */
function tsc(file, types) {
  const bin = join(packageDir, 'node_modules', 'typescript', 'bin', 'tsc');
  assert.ok(existsSync(bin), 'typescript is missing: run npm ci (it is a devDependency)');
  // A project file: only it can say "no @types packages at all" (`types: []`).
  const dir = mkdtempSync(join(tmpdir(), 'lane-tsc-'));
  const project = join(dir, 'tsconfig.json');
  writeFileSync(
    project,
    JSON.stringify({
      compilerOptions: {
        noEmit: true,
        strict: true,
        target: 'es2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        lib: ['es2022'],
        types,
        typeRoots: [join(packageDir, 'node_modules', '@types')],
      },
      files: [file],
    }),
  );
  try {
    execFileSync(process.execPath, [bin, '-p', project], { cwd: packageDir, stdio: 'pipe' });
    return '';
  } catch (error) {
    return `${error.stdout}${error.stderr}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('index.d.ts type-checks strictly with no @types/node and no DOM lib', () => {
  const errors = tsc(join(packageDir, 'test', 'types', 'self_contained.ts'), []);
  assert.equal(errors, '', `tsc failed:\n${errors}`);
});

test('the same file type-checks next to @types/node (its AbortSignal merges with ours)', () => {
  const errors = tsc(join(packageDir, 'test', 'types', 'self_contained.ts'), ['node']);
  assert.equal(errors, '', `tsc failed:\n${errors}`);
});

test('the check fails on a type error (it is not vacuous)', () => {
  const errors = tsc(join(packageDir, 'test', 'types', 'must_not_compile.ts'), []);
  assert.match(errors, /must_not_compile\.ts\(\d+,\d+\): error TS2322/);
});
