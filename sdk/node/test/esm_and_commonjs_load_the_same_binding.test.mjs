// `import` and `require` of '@a3s-lab/lane' give the same classes, and both work.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import * as esm from '@a3s-lab/lane';
import { runNode } from './support.mjs';

const require = createRequire(import.meta.url);

test('the ESM entry exports exactly what the CommonJS entry does', () => {
  const cjs = require('@a3s-lab/lane');
  const esmNames = Object.keys(esm)
    .filter((name) => name !== 'default')
    .sort();
  assert.deepEqual(esmNames, Object.keys(cjs).sort());
  for (const name of esmNames) assert.equal(esm[name], cjs[name], `${name} differs between import and require`);
  assert.equal(esm.default, cjs);
  assert.equal(typeof esm.Lane, 'function');
});

test('a CommonJS program runs commands', async () => {
  const { code, stdout, stderr } = await runNode(
    `
    const { Lane } = require('@a3s-lab/lane');
    const lane = new Lane({ query: { priority: 2, maxConcurrency: 2 } });
    lane.handle('add', ({ a, b }) => a + b);
    lane.start();
    lane.submit('query', 'add', { a: 2, b: 3 }).then(async (sum) => {
      console.log('sum=' + sum);
      await lane.shutdown();
    });
  `,
    { type: 'cjs' },
  );
  assert.equal(code, 0, stderr);
  assert.match(stdout, /sum=5/);
});

test('an ES module program runs commands', async () => {
  const { code, stdout, stderr } = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ query: { priority: 2, maxConcurrency: 2 } });
    lane.handle('add', async ({ a, b }) => a + b);
    await lane.start();
    console.log('sum=' + (await lane.submit('query', 'add', { a: 2, b: 3 })));
    await lane.shutdown();
  `);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /sum=5/);
});
