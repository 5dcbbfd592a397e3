// Misusing a Lane's lifecycle is either natural or a clear error at once: nothing hangs,
// nothing silently succeeds, and nothing wraps `globalThis`. The same choices as the
// Python SDK (docs/SDK_RULES.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Lane,
  LaneError,
  LaneInvalidArgumentError,
  LaneQueueError,
  LaneShutdownError,
} from '@a3s-lab/lane';
import { runNode } from './support.mjs';

function echoLane() {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 2 } });
  lane.handle('echo', (payload) => payload);
  return lane;
}

test('Lane() without new is a TypeError saying to use new', () => {
  assert.throws(
    () => Lane(),
    (error) => {
      assert.ok(error instanceof TypeError);
      assert.ok(error instanceof LaneInvalidArgumentError);
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, /Lane is a class: create it with `new Lane\(\.\.\.\)`/);
      return true;
    },
  );
  assert.equal(globalThis.laneIds, undefined, 'globalThis was not made a Lane');
  const lane = new Lane();
  assert.ok(lane instanceof Lane);
});

test('start() twice is an error; start() after shutdown is SHUTDOWN', async () => {
  const lane = echoLane();
  await lane.start();
  await assert.rejects(lane.start(), (error) => {
    assert.ok(error instanceof LaneQueueError);
    assert.match(error.message, /started already: call start\(\) once/);
    return true;
  });
  assert.equal(await lane.submit('q', 'echo', 1), 1, 'the lane still runs');
  await lane.shutdown();
  await assert.rejects(lane.start(), (error) => error instanceof LaneShutdownError && error.code === 'SHUTDOWN');
});

test('a submit before start waits in its lane and runs once the lane starts', async () => {
  const lane = echoLane();
  const early = lane.submit('q', 'echo', 'early');
  assert.equal(lane.size, 1);
  await lane.start();
  assert.equal(await early, 'early');
  await lane.shutdown();
});

test('drain(), onIdle() and onEmpty() after shutdown resolve: nothing is left', async () => {
  const lane = echoLane();
  await lane.start();
  await lane.shutdown();
  await lane.drain(100);
  await lane.onIdle();
  await lane.onEmpty();
  await lane.shutdown(); // twice: natural
  assert.equal(await lane.shutdownNow(), 0);
  await assert.rejects(lane.submit('q', 'echo', 1), (error) => error instanceof LaneShutdownError);
  assert.equal(lane.size, 0);
  assert.equal(lane.running, 0);
});

test('bad ids are a RangeError or TypeError at once', async () => {
  const lane = echoLane();
  await assert.rejects(lane.cancel(-1), (error) => {
    assert.ok(error instanceof RangeError);
    assert.ok(error instanceof LaneInvalidArgumentError);
    assert.match(error.message, /^commandId must be a whole number of 0 or more, got -1$/);
    return true;
  });
  await assert.rejects(lane.command('1'), (error) => error instanceof TypeError && error.code === 'INVALID_ARGUMENT');
  assert.equal(await lane.cancel(12345), 'unknown');
  await lane.shutdown();
});

test('a finished handle gives its result again, and cancelling it says already_finished', async () => {
  const lane = echoLane();
  await lane.start();
  const handle = await lane.submitWithHandle('q', 'echo', { n: 1 });
  assert.deepEqual(await handle.result, { n: 1 });
  assert.deepEqual(await handle.result, { n: 1 });
  assert.equal(await handle.cancel(), 'already_finished');
  await lane.shutdown();
});

test('errors the SDK makes are LaneErrors with their code; a user may make them too', () => {
  const mine = new LaneQueueError('mine');
  assert.ok(mine instanceof LaneError);
  assert.ok(mine instanceof Error);
  assert.equal(mine.code, 'QUEUE');
  assert.equal(mine.name, 'LaneQueueError');
  assert.ok(!(mine instanceof LaneShutdownError));
  assert.ok(!(new Error('plain') instanceof LaneError));
  assert.ok(!({ code: 'QUEUE' } instanceof LaneQueueError), 'a look-alike object is not one');
});

test('a lane never started does not keep the process alive; its accepted commands are reported at exit', async () => {
  const result = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ q: { priority: 0 } });
    lane.handle('echo', (payload) => payload);
    lane.submit('q', 'echo', 1);
    lane.submit('q', 'echo', 2);
  `);
  assert.equal(result.timedOut, false, 'the process hung');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /a3s_lane: 2 accepted command\(s\) were dropped at exit \(their lane was never started; call lane\.start\(\)\)/);
});
