// A script that submits and returns without awaiting never loses accepted work: the
// submits' promises keep the process alive until every command has run (as a pending
// timer would), 100 times over in parallel children. A process that exits anyway
// (process.exit()) reports on stderr how many accepted commands it dropped.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runNode } from './support.mjs';

const COMMANDS = 20;

const script = `
  import { Lane } from '@a3s-lab/lane';
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 4 } });
  let ran = 0;
  lane.handle('work', async ({ n }) => {
    await new Promise((resolve) => setTimeout(resolve, n % 3).unref());
    ran += 1;
    return n;
  });
  process.on('exit', () => console.log('ran ' + ran));
  lane.start();
  for (let n = 0; n < ${COMMANDS}; n++) lane.submit('q', 'work', { n });
  // returns here: nothing awaited, no shutdown
`;

test('100 scripts that submit and return without awaiting each run every command', async () => {
  const children = 100;
  const parallel = 8;
  const outcomes = [];
  for (let first = 0; first < children; first += parallel) {
    const batch = Array.from({ length: Math.min(parallel, children - first) }, () => runNode(script, { timeoutMs: 60_000 }));
    outcomes.push(...(await Promise.all(batch)));
  }
  const lost = outcomes.filter((r) => r.timedOut || r.code !== 0 || !r.stdout.includes(`ran ${COMMANDS}`) || r.stderr !== '');
  assert.deepEqual(
    lost.map((r) => ({ code: r.code, timedOut: r.timedOut, stdout: r.stdout, stderr: r.stderr })),
    [],
    `${lost.length} of ${children} children lost work`,
  );
});

test('process.exit() with work left reports how many accepted commands were dropped', async () => {
  const result = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ q: { priority: 0, maxConcurrency: 1 } });
    lane.handle('slow', () => new Promise((resolve) => setTimeout(resolve, 10_000)));
    await lane.start();
    for (let n = 0; n < 3; n++) lane.submit('q', 'slow');
    await new Promise((resolve) => setTimeout(resolve, 50));
    process.exit(0);
  `);
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stderr,
    /^a3s_lane: 3 accepted command\(s\) were dropped at exit \(the process exited before they finished; await lane\.onIdle\(\) or lane\.shutdown\(\) first\)\n$/,
  );
});

test('a process that shuts down first reports nothing', async () => {
  const result = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ q: { priority: 0 } });
    lane.handle('job', (n) => n);
    await lane.start();
    lane.submit('q', 'job', 1);
    await lane.shutdown();
    process.exit(0);
  `);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
});
