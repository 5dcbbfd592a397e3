// Cancelling removes a pending command at once ('cancelled') and aborts a running
// handler's ctx.signal ('signalled'); the submitter gets code CANCELLED. An AbortSignal
// given to submit does the same, and a handler that ignores its signal is answered
// after the cancel grace but keeps its slot until it returns. The outcomes on every engine:
// client_surface_is_the_same_on_both_engines.test.mjs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, sleep } from './support.mjs';

async function laneWithBlocker(options = {}) {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1, ...options } });
  const started = deferred();
  const release = deferred();
  lane.handle('block', async () => {
    started.resolve();
    await release.promise;
    return 'released';
  });
  await lane.start();
  const blocker = lane.submit('work', 'block');
  await started.promise;
  return { lane, blocker, release };
}

const isCancelled = (error) => {
  assert.equal(error.code, 'CANCELLED');
  return true;
};

test('cancelling a pending command removes it before it runs', async () => {
  const { lane, blocker, release } = await laneWithBlocker();
  let ran = false;
  lane.handle('never', () => {
    ran = true;
  });
  const handle = await lane.submitWithHandle('work', 'never');
  assert.equal(typeof handle.id, 'number');
  assert.equal(await handle.cancel(), 'cancelled');
  await assert.rejects(handle.result, isCancelled);
  assert.equal(await handle.cancel(), 'already_finished', 'a finished command cannot be cancelled again');
  release.resolve();
  assert.equal(await blocker, 'released');
  assert.equal(ran, false);
  await lane.shutdown();
});

test('cancelling a running command aborts its signal, and a handler that stops ends cancelled', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  const running = deferred();
  let reason;
  lane.handle('long', (_payload, ctx) => {
    running.resolve();
    return new Promise((_resolve, reject) => {
      ctx.signal.addEventListener('abort', () => {
        reason = ctx.signal.reason;
        reject(ctx.signal.reason);
      });
    });
  });
  await lane.start();
  const handle = await lane.submitWithHandle('work', 'long');
  await running.promise;
  assert.equal(await lane.cancel(handle.id), 'signalled');
  await assert.rejects(handle.result, isCancelled);
  assert.equal(reason.code, 'CANCELLED');
  await lane.shutdown();
});

test('a handler that ignores its signal is answered after the cancel grace, and keeps its slot until it returns', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1, cancelGraceMs: 30 } });
  const running = deferred();
  const finish = deferred();
  let nextRan = false;
  lane.handle('stubborn', () => {
    running.resolve();
    return finish.promise; // ignores ctx.signal
  });
  lane.handle('next', () => {
    nextRan = true;
    return 'next ran';
  });
  await lane.start();
  const handle = await lane.submitWithHandle('work', 'stubborn');
  await running.promise;
  const cancelledAt = Date.now();
  assert.equal(await handle.cancel(), 'signalled');
  await assert.rejects(handle.result, (error) => {
    assert.equal(error.code, 'CANCELLED');
    assert.match(error.message, /grace/);
    return true;
  });
  assert.ok(Date.now() - cancelledAt >= 25);
  // Answered, but still running: its slot is not given to the next command.
  const next = lane.submit('work', 'next');
  const { lanes } = await lane.stats();
  assert.equal(lanes.work.active, 1);
  assert.equal(lanes.work.abandonedRunning, 1);
  assert.equal(lanes.work.pending, 1);
  assert.equal(nextRan, false);
  finish.resolve('done at last');
  assert.equal(await next, 'next ran');
  assert.equal((await lane.stats()).lanes.work.abandoned, 1);
  await lane.shutdown();
});

test('an AbortSignal cancels a pending command and becomes the cause', async () => {
  const { lane, blocker, release } = await laneWithBlocker();
  let ran = false;
  lane.handle('never', () => {
    ran = true;
  });
  const controller = new AbortController();
  const pending = lane.submit('work', 'never', {}, { signal: controller.signal });
  await sleep(5);
  controller.abort(new Error('user closed the tab'));
  await assert.rejects(pending, (error) => {
    assert.equal(error.code, 'CANCELLED');
    assert.equal(error.cause.message, 'user closed the tab');
    return true;
  });
  release.resolve();
  await blocker;
  assert.equal(ran, false);
  await lane.shutdown();
});

test('an AbortSignal cancels a running command', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  const running = deferred();
  lane.handle('long', (_payload, ctx) => {
    running.resolve();
    return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
  });
  await lane.start();
  const controller = new AbortController();
  const result = lane.submit('work', 'long', null, { signal: controller.signal });
  await running.promise;
  controller.abort();
  await assert.rejects(result, isCancelled);
  await lane.shutdown();
});

test('an already aborted signal rejects at once and runs nothing', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  let ran = false;
  lane.handle('job', () => {
    ran = true;
  });
  await lane.start();
  await assert.rejects(lane.submit('work', 'job', {}, { signal: AbortSignal.abort() }), isCancelled);
  await sleep(10);
  assert.equal(ran, false);
  assert.equal((await lane.stats()).totalPending, 0);
  await lane.shutdown();
});

test('a signal that fires after the command finished changes nothing', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  lane.handle('job', () => 42);
  await lane.start();
  const controller = new AbortController();
  assert.equal(await lane.submit('work', 'job', {}, { signal: controller.signal }), 42);
  controller.abort();
  await lane.shutdown();
});

test('cancelLane cancels everything in one lane', async () => {
  const { lane, blocker, release } = await laneWithBlocker();
  lane.handle('queued', () => 'ran');
  const queued = [1, 2, 3].map(() => lane.submit('work', 'queued'));
  release.resolve(); // the blocker finishes by itself only after the cancel below
  assert.equal(lane.cancelLane('work'), 4);
  for (const result of queued) await assert.rejects(result, isCancelled);
  // The running blocker was asked to stop; it finished within its grace, so it ends cancelled.
  await assert.rejects(blocker, isCancelled);
  await lane.shutdown();
});

test('shutdownNow cancels pending work and resolves with the count', async () => {
  const { lane, blocker, release } = await laneWithBlocker({ cancelGraceMs: 20 });
  lane.handle('queued', () => 'ran');
  const outcomes = [blocker, ...[1, 2].map(() => lane.submit('work', 'queued'))].map((result) =>
    assert.rejects(result, isCancelled),
  );
  const stopping = lane.shutdownNow();
  // Every submitter is answered, the blocker after its grace; shutdownNow() then waits
  // for the blocker, which ignores its signal, to return: it holds its slot till then.
  await Promise.all(outcomes);
  release.resolve();
  assert.equal(await stopping, 3);
  await assert.rejects(lane.submit('work', 'queued'), (error) => error.code === 'SHUTDOWN');
});
