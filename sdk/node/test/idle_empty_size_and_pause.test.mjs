// The everyday helpers p-queue users reach for: onIdle() and onEmpty() promises, the
// `size` (waiting) and `running` counts as plain reads, and a whole-queue pause()/resume().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, waitFor } from './support.mjs';

test('size and running count waiting and running commands over all lanes', async () => {
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 1 }, b: { priority: 1, maxConcurrency: 2 } });
  const release = deferred();
  let started = 0;
  lane.handle('hold', async () => {
    started += 1;
    await release.promise;
  });
  assert.equal(lane.size, 0);
  assert.equal(lane.running, 0);
  await lane.start();
  const all = [...Array(3)].map(() => lane.submit('a', 'hold')).concat([...Array(4)].map(() => lane.submit('b', 'hold')));
  await waitFor(() => started === 3, 'three handlers to run');
  assert.equal(lane.running, 3);
  assert.equal(lane.size, 4);
  release.resolve();
  await Promise.all(all);
  assert.equal(lane.running, 0);
  assert.equal(lane.size, 0);
  await lane.shutdown();
});

test('onEmpty() resolves when nothing waits, onIdle() when nothing runs either', async () => {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 1 } });
  const gates = [];
  lane.handle('gate', () => {
    const gate = deferred();
    gates.push(gate);
    return gate.promise;
  });
  await lane.start();
  await lane.onIdle(); // at once when idle
  await lane.onEmpty();
  const results = [1, 2, 3].map(() => lane.submit('q', 'gate'));
  let empty = false;
  let idle = false;
  const emptied = lane.onEmpty().then(() => (empty = true));
  const idled = lane.onIdle().then(() => (idle = true));
  await waitFor(() => gates.length === 1, 'the first command to run');
  gates[0].resolve();
  await waitFor(() => gates.length === 2, 'the second command to run');
  assert.equal(empty, false, 'onEmpty resolved while a command still waited');
  gates[1].resolve();
  await waitFor(() => gates.length === 3, 'the last command to run');
  await emptied; // the last one runs: nothing waits
  assert.equal(idle, false, 'onIdle resolved while a command still ran');
  gates[2].resolve();
  await idled;
  await Promise.all(results);
  await lane.shutdown();
});

test('pause() stops every lane from starting commands; resume() starts them all again', async () => {
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 2 }, b: { priority: 1, maxConcurrency: 2 } });
  let ran = 0;
  lane.handle('job', () => {
    ran += 1;
    return ran;
  });
  await lane.start();
  lane.pause();
  const stats = await lane.stats();
  assert.ok(stats.lanes.a.paused && stats.lanes.b.paused);
  const jobs = [lane.submit('a', 'job'), lane.submit('b', 'job'), lane.submit('b', 'job')];
  assert.equal(lane.size, 3, 'submits are accepted while paused');
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(ran, 0, 'a paused queue started a command');
  await lane.pauseLane('a'); // one lane paused on its own is resumed too
  lane.resume();
  assert.equal((await Promise.all(jobs)).length, 3);
  const after = await lane.stats();
  assert.ok(!after.lanes.a.paused && !after.lanes.b.paused);
  await lane.shutdown();
  assert.throws(() => lane.pause(), (error) => error.code === 'SHUTDOWN');
});
