// A submit to an unknown lane reports the unknown lane first, before a missing handler,
// whichever way the lane is set up (no store, dead letters, a store) and whichever way
// the command is submitted (submit, with options, submitWithHandle).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';

const laneNotFound = (error) => {
  assert.ok(error instanceof RangeError, `expected a RangeError, got ${error.name}: ${error.message}`);
  assert.equal(error.code, 'LANE_NOT_FOUND', error.message);
  assert.match(error.message, /lane 'nowhere' not found/);
  return true;
};

const handlerNotFound = (error) => {
  assert.equal(error.code, 'HANDLER_NOT_FOUND', error.message);
  assert.match(error.message, /unregistered/);
  return true;
};

for (const setup of ['plain', 'deadLetters', 'storage']) {
  test(`an unknown lane is reported before a missing handler (${setup})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'a3s-lane-order-'));
    const options = {
      plain: undefined,
      deadLetters: { deadLetterCapacity: 10 },
      storage: { storage: { path: join(dir, 'store') } },
    }[setup];
    const lane = new Lane({ work: { priority: 0, maxConcurrency: 2 } }, options);
    lane.handle('known', (payload) => payload);
    await lane.start();
    try {
      await assert.rejects(lane.submit('nowhere', 'unregistered', { n: 1 }), laneNotFound);
      await assert.rejects(lane.submit('nowhere', 'unregistered', { n: 2 }, { delayMs: 1 }), laneNotFound);
      await assert.rejects(lane.submitWithHandle('nowhere', 'unregistered', { n: 3 }), laneNotFound);
      await assert.rejects(lane.submit('nowhere', 'known', { n: 4 }), laneNotFound);
      await assert.rejects(lane.submit('work', 'unregistered', { n: 5 }), handlerNotFound);
      assert.deepEqual(await lane.submit('work', 'known', { n: 6 }), { n: 6 });
    } finally {
      await lane.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
