// Commands that fail for good become dead letters (with deadLetterCapacity); they can
// be listed, re-driven under a new id, and purged. The same on every engine:
// client_surface_is_the_same_on_both_engines.test.mjs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';

test('a failed command is kept, and redrive runs it again', async () => {
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { deadLetterCapacity: 2 });
  let healthy = false;
  lane.handle('sync', ({ account }) => {
    if (!healthy) throw new Error(`upstream down for ${account}`);
    return `synced ${account}`;
  });
  await lane.start();
  await assert.rejects(lane.submit('jobs', 'sync', { account: 'a' }), /upstream down for a/);
  const letters = await lane.deadLetters();
  assert.equal(letters.length, 1);
  const [letter] = letters;
  assert.equal(letter.laneId, 'jobs');
  assert.equal(letter.commandType, 'sync');
  assert.equal(letter.attempts, 1);
  assert.deepEqual(letter.payload, { account: 'a' });
  assert.match(letter.error, /upstream down for a/);
  assert.ok(letter.failedAt > Date.now() - 60_000);

  healthy = true;
  const handle = await lane.redrive(letter.commandId);
  assert.notEqual(handle.id, letter.commandId);
  assert.equal(await handle.result, 'synced a');
  assert.deepEqual(await lane.deadLetters(), []);
  await assert.rejects(lane.redrive(letter.commandId), (error) => {
    assert.equal(error.code, 'QUEUE');
    assert.match(error.message, /no dead letter with command id/);
    return true;
  });
  await lane.shutdown();
});

test('the oldest letters are evicted beyond the capacity, and purge removes them all', async () => {
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { deadLetterCapacity: 2 });
  lane.handle('fail', ({ n }) => {
    throw new Error(`failure ${n}`);
  });
  await lane.start();
  for (const n of [1, 2, 3]) await assert.rejects(lane.submit('jobs', 'fail', { n }));
  assert.deepEqual(
    (await lane.deadLetters()).map((letter) => letter.payload.n),
    [2, 3],
  );
  assert.deepEqual(
    (await lane.deadLetters(1)).map((letter) => letter.payload.n),
    [2],
  );
  assert.deepEqual(await lane.deadLetters(0), []);
  assert.equal(await lane.purgeDeadLetters(), 2);
  assert.deepEqual(await lane.deadLetters(), []);
  assert.equal(await lane.purgeDeadLetters(), 0);
  await lane.shutdown();
});

test('a lane without deadLetterCapacity lists none and keeps the command as failed', async () => {
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } });
  lane.handle('fail', () => {
    throw new Error('lost');
  });
  await lane.start();
  const handle = await lane.submitWithHandle('jobs', 'fail');
  await assert.rejects(handle.result, /lost/);
  assert.deepEqual(await lane.deadLetters(), []);
  // Not a dead letter: its lane keeps it (keepLast) as 'failed', with its error.
  const status = await lane.command(handle.id);
  assert.equal(status?.state, 'failed');
  assert.match(status.error.message, /^Error: lost/);
  assert.deepEqual(await lane.listCommands('jobs', 'dead_lettered'), []);
  assert.equal(await lane.purgeDeadLetters(), 0);
  await lane.shutdown();
});

test('clearDeadLetters is a deprecated purge', async () => {
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1 } }, { deadLetterCapacity: 2 });
  lane.handle('fail', () => {
    throw new Error('lost');
  });
  await lane.start();
  await assert.rejects(lane.submit('jobs', 'fail'));
  assert.equal(await lane.clearDeadLetters(), 1);
  assert.deepEqual(await lane.deadLetters(), []);
  await lane.shutdown();
});
