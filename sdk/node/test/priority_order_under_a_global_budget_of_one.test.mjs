// With a global budget of one slot, the scheduler always starts the most urgent lane's
// oldest command next: priority first, FIFO inside a lane.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred } from './support.mjs';

test('commands start by lane priority, then in submit order, one at a time', async () => {
  const lane = new Lane(
    {
      prompt: { priority: 5, minConcurrency: 0, maxConcurrency: 4 },
      query: { priority: 2, minConcurrency: 0, maxConcurrency: 4 },
      control: { priority: 1, minConcurrency: 0, maxConcurrency: 4 },
    },
    { maxConcurrency: 1 },
  );
  const started = [];
  let running = 0;
  let mostRunning = 0;
  const blockerStarted = deferred();
  const release = deferred();
  lane.handle('block', async () => {
    blockerStarted.resolve();
    await release.promise;
  });
  lane.handle('record', async ({ name }) => {
    running += 1;
    mostRunning = Math.max(mostRunning, running);
    started.push(name);
    await new Promise((resolve) => setImmediate(resolve));
    running -= 1;
    return name;
  });
  await lane.start();

  const blocker = lane.submit('prompt', 'block');
  await blockerStarted.promise;
  const submitted = [
    ['prompt', 'prompt-1'],
    ['query', 'query-1'],
    ['control', 'control-1'],
    ['prompt', 'prompt-2'],
    ['control', 'control-2'],
    ['query', 'query-2'],
    ['control', 'control-3'],
  ].map(([laneId, name]) => lane.submit(laneId, 'record', { name }));
  const { totalPending, totalActive } = await lane.stats();
  assert.equal(totalPending, 7);
  assert.equal(totalActive, 1);
  release.resolve();

  assert.deepEqual(await Promise.all(submitted), [
    'prompt-1',
    'query-1',
    'control-1',
    'prompt-2',
    'control-2',
    'query-2',
    'control-3',
  ]);
  await blocker;
  assert.deepEqual(started, ['control-1', 'control-2', 'control-3', 'query-1', 'query-2', 'prompt-1', 'prompt-2']);
  assert.equal(mostRunning, 1);
  await lane.shutdown();
});

test('a control command submitted behind a full prompt lane starts first', async () => {
  // The agent-runtime case: control commands never wait behind queued prompts.
  // Six default lanes reserve one slot each; two more are shared by priority.
  const lane = new Lane(undefined, { maxConcurrency: 8 });
  const order = [];
  const release = deferred();
  let promptsRunning = 0;
  const promptsFull = deferred();
  lane.handle('generate', async ({ n }) => {
    order.push(`prompt-${n}`);
    if (++promptsRunning === 2) promptsFull.resolve();
    await release.promise;
  });
  lane.handle('pause', async () => {
    order.push('control');
  });
  await lane.start();
  const prompts = [1, 2, 3, 4].map((n) => lane.submit('prompt', 'generate', { n }));
  await promptsFull.promise;
  await lane.submit('control', 'pause');
  // Two prompts run at once, so which of them reaches JavaScript first is a race: compare
  // each wave as a set, and the control command's place exactly.
  const wave = (from, to) => order.slice(from, to).sort();
  assert.deepEqual(wave(0, 2), ['prompt-1', 'prompt-2']);
  assert.equal(order[2], 'control');
  assert.equal(order.length, 3);
  release.resolve();
  await Promise.all(prompts);
  assert.deepEqual(wave(3, 5), ['prompt-3', 'prompt-4']);
  assert.equal(order.length, 5);
  await lane.shutdown();
});
