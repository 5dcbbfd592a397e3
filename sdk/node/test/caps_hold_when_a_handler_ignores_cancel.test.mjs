// A handler that ignores its aborted ctx.signal is answered (CANCELLED after the cancel
// grace, or TIMEOUT) but keeps its lane slot until it really returns, so maxConcurrency
// is never exceeded; the stats count it (`abandoned`, `abandonedRunning`) and the queue
// emits `queue.command.abandoned`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, waitFor } from './support.mjs';

test('cancelled and timed-out handlers that ignore their signal never let the cap be exceeded', async () => {
  const cap = 2;
  const lane = new Lane({ work: { priority: 0, maxConcurrency: cap, cancelGraceMs: 20, timeoutMs: 200 } });
  let running = 0;
  let peak = 0;
  const stubborn = [];
  lane.handle('stubborn', () => {
    running += 1;
    peak = Math.max(peak, running);
    const done = deferred();
    stubborn.push(done);
    // Ignores ctx.signal: returns only when the test says so.
    return done.promise.finally(() => {
      running -= 1;
    });
  });
  lane.handle('quick', async () => {
    running += 1;
    peak = Math.max(peak, running);
    await new Promise((resolve) => setImmediate(resolve));
    running -= 1;
    return 'quick';
  });
  const abandoned = [];
  lane.on('queue.command.abandoned', (event) => abandoned.push(event.payload));
  await lane.start();

  // Fill the lane with stubborn runs, cancel one and let the other time out.
  const first = await lane.submitWithHandle('work', 'stubborn');
  const second = await lane.submitWithHandle('work', 'stubborn');
  await waitFor(() => stubborn.length === cap, 'both stubborn handlers to run');
  const quick = Array.from({ length: 10 }, () => lane.submit('work', 'quick'));
  assert.equal(await first.cancel(), 'signalled');
  await assert.rejects(first.result, (error) => error.code === 'CANCELLED' && /grace/.test(error.message));
  await assert.rejects(second.result, (error) => error.code === 'TIMEOUT');

  // Both were answered, yet both still run: no quick command may start.
  const { lanes } = await lane.stats();
  assert.equal(lanes.work.active, cap);
  assert.equal(lanes.work.abandonedRunning, cap);
  assert.equal(lanes.work.abandoned, 2);
  assert.equal(lanes.work.pending, 10);
  assert.equal(lane.running, cap);
  assert.equal(lane.size, 10);
  await waitFor(() => abandoned.length === 2, 'two queue.command.abandoned events');
  assert.deepEqual(abandoned.map((p) => p.commandId).sort(), [first.id, second.id].sort());
  for (const payload of abandoned) assert.equal(payload.laneId, 'work');
  assert.equal(peak, cap);

  // Only when a stubborn handler returns does its slot go to the next command.
  for (const done of stubborn) done.resolve('late');
  assert.deepEqual(await Promise.all(quick), Array(10).fill('quick'));
  assert.ok(peak <= cap, `peak ${peak} exceeded the cap ${cap}`);
  const after = (await lane.stats()).lanes.work;
  assert.equal(after.abandonedRunning, 0);
  assert.equal(after.abandoned, 2);
  await lane.shutdown();
});

test('shutdown() waits for an answered handler to return', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1, timeoutMs: 20 } });
  const done = deferred();
  let returned = false;
  lane.handle('stubborn', () =>
    done.promise.then(() => {
      returned = true;
    }),
  );
  await lane.start();
  await assert.rejects(lane.submit('work', 'stubborn'), (error) => error.code === 'TIMEOUT');
  const stopping = lane.shutdown();
  setTimeout(() => done.resolve(), 30);
  await stopping;
  assert.equal(returned, true, 'shutdown resolved before the handler returned');
});
