// With `storage`, a command is on disk before submit accepts it; a process that dies
// with unfinished commands leaves them to the next start, which runs them in order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { join } from 'node:path';
import { runNode, tempDir } from './support.mjs';

test('commands accepted by a process that exits abruptly run after the next start', async (t) => {
  const dir = join(tempDir(t), 'queue');
  const first = await runNode(
    `
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: process.argv[1] } });
    lane.handle('work', () => new Promise(() => {})); // never finishes in this process
    await lane.start();
    const handles = [];
    for (const n of [1, 2, 3, 4]) handles.push(await lane.submitWithHandle('jobs', 'work', { n }));
    console.log('accepted ' + handles.map((h) => h.id).join(','));
    process.exit(0); // no shutdown: a crash, as far as the store can tell
  `,
    { args: [dir] },
  );
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /accepted 1,2,3,4/);

  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: dir } });
  const ran = [];
  let done;
  const allRan = new Promise((resolve) => (done = resolve));
  lane.handle('work', ({ n }, ctx) => {
    ran.push({ n, id: ctx.id });
    if (ran.length === 4) done();
    return n;
  });
  await lane.start();
  await allRan;
  await lane.shutdown();
  assert.deepEqual(
    ran.map((r) => r.n),
    [1, 2, 3, 4],
  );
  assert.deepEqual(
    ran.map((r) => r.id),
    [1, 2, 3, 4],
    'recovered commands keep their ids',
  );

  // Everything finished, so a third start finds nothing to run.
  const again = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: dir } });
  let runs = 0;
  again.handle('work', () => {
    runs += 1;
  });
  await again.start();
  await again.drain(500);
  assert.equal(runs, 0);
  assert.equal((await again.stats()).totalPending, 0);
  await again.shutdown();
});

test('durable submits keep their order and new ids continue after recovered ones', async (t) => {
  const dir = join(tempDir(t), 'queue');
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: dir, sync: 'normal' } });
  const order = [];
  lane.handle('work', ({ n }) => {
    order.push(n);
    return n * 10;
  });
  // Submitted before start: they wait for the store to open.
  const early = lane.submit('jobs', 'work', { n: 0 });
  await lane.start();
  const results = await Promise.all([early, ...Array.from({ length: 50 }, (_, i) => lane.submit('jobs', 'work', { n: i + 1 }))]);
  assert.deepEqual(order, Array.from({ length: 51 }, (_, i) => i));
  assert.deepEqual(results, Array.from({ length: 51 }, (_, i) => i * 10));
  await lane.shutdown();
});

test('a failure to open the store rejects start() with code STORAGE, and submits with it', async (t) => {
  const missingParent = join(tempDir(t), 'does', 'not', 'exist');
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: missingParent } });
  lane.handle('work', () => null);
  const submitted = lane.submit('jobs', 'work');
  await assert.rejects(lane.start(), (error) => {
    assert.equal(error.code, 'STORAGE');
    assert.match(error.message, /does/);
    return true;
  });
  await assert.rejects(submitted, (error) => error.code === 'STORAGE');
});

test('a second lane on the same store is refused', async (t) => {
  const dir = join(tempDir(t), 'queue');
  const owner = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: dir } });
  await owner.start();
  const intruder = await runNode(
    `
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { storage: { path: process.argv[1] } });
    try { await lane.start(); console.log('opened'); } catch (error) { console.log(error.code + ': ' + error.message); }
  `,
    { args: [dir] },
  );
  assert.equal(intruder.code, 0, intruder.stderr);
  assert.match(intruder.stdout, /STORAGE: .*lock/i);
  await owner.shutdown();
});
