// A lane's priorityBoost lowers its priority number (makes it more urgent) as its oldest
// pending command waits; stats show it as effectivePriority and the scheduler picks by
// it. Deadlines here are either an hour (nothing changes during the test) or already
// passed; the tests wait for conditions, never for durations.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, waitFor } from './support.mjs';

const HOUR = 3_600_000;

test('effectivePriority shows the boost of a lane with a waiting command', async () => {
  const lane = new Lane({
    // Boosted by 4 from the moment a command is queued.
    stepped: { priority: 9, maxConcurrency: 1, priorityBoost: { deadlineMs: HOUR, steps: [{ beforeDeadlineMs: HOUR, boost: 4 }] } },
    // The standard steps start when 75% of the deadline remains: not within this test.
    standard: { priority: 9, maxConcurrency: 1, priorityBoost: { standard: HOUR } },
    // Past its deadline a lane is at priority 0.
    late: { priority: 9, maxConcurrency: 1, priorityBoost: { deadlineMs: 1 } },
    plain: { priority: 9, maxConcurrency: 1 },
  });
  lane.handle('job', () => 'done');
  await lane.start();
  const ids = lane.laneIds;
  for (const id of ids) await lane.pauseLane(id);
  // No pending command: no boost.
  for (const id of ids) assert.equal((await lane.stats()).lanes[id].effectivePriority, 9, id);

  const results = ids.map((id) => lane.submit(id, 'job'));
  const stats = (await lane.stats()).lanes;
  assert.equal(stats.stepped.effectivePriority, 5);
  assert.equal(stats.stepped.priority, 9, 'the configured priority stays as it is');
  assert.equal(stats.standard.effectivePriority, 9);
  assert.equal(stats.plain.effectivePriority, 9);
  await waitFor(async () => (await lane.stats()).lanes.late.effectivePriority === 0, 'the late lane to reach priority 0');

  for (const id of ids) await lane.resumeLane(id);
  assert.deepEqual(await Promise.all(results), ['done', 'done', 'done', 'done']);
  for (const id of ids) assert.equal((await lane.stats()).lanes[id].effectivePriority, 9, `${id} after its queue emptied`);
  await lane.shutdown();
});

test('the scheduler picks a boosted lane before a more urgent unboosted one', async () => {
  const order = [];
  async function run(priorityBoost) {
    const lane = new Lane(
      {
        gate: { priority: 0, minConcurrency: 0, maxConcurrency: 1 },
        urgent: { priority: 1, minConcurrency: 0, maxConcurrency: 1 },
        bulk: { priority: 9, minConcurrency: 0, maxConcurrency: 1, ...(priorityBoost && { priorityBoost }) },
      },
      { maxConcurrency: 1 },
    );
    const gateStarted = deferred();
    const release = deferred();
    lane.handle('gate', async () => {
      gateStarted.resolve();
      await release.promise;
    });
    const started = [];
    lane.handle('record', (_payload, ctx) => started.push(ctx.lane));
    await lane.start();
    const gate = lane.submit('gate', 'gate');
    await gateStarted.promise;
    const waiting = [lane.submit('urgent', 'record'), lane.submit('bulk', 'record')];
    release.resolve();
    await Promise.all([gate, ...waiting]);
    await lane.shutdown();
    order.push(started);
  }
  await run(undefined);
  await run({ deadlineMs: HOUR, steps: [{ beforeDeadlineMs: HOUR, boost: 9 }] });
  assert.deepEqual(order, [
    ['urgent', 'bulk'],
    ['bulk', 'urgent'],
  ]);
});

test('{ aggressive: deadlineMs } is accepted and waits for its first step', async () => {
  const lane = new Lane({ a: { priority: 200, maxConcurrency: 1, priorityBoost: { aggressive: HOUR } } });
  lane.handle('job', () => null);
  await lane.start();
  await lane.pauseLane('a');
  const result = lane.submit('a', 'job');
  assert.equal((await lane.stats()).lanes.a.effectivePriority, 200);
  await lane.resumeLane('a');
  await result;
  await lane.shutdown();
});

function throwsConfig(priorityBoost, ErrorClass, pattern) {
  assert.throws(
    () => new Lane({ a: { priority: 5, maxConcurrency: 1, priorityBoost } }),
    (error) => {
      assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
      assert.equal(error.code, 'CONFIG');
      assert.match(error.message, pattern);
      return true;
    },
  );
}

test('invalid priority boosts are a TypeError or RangeError saying what is wrong', () => {
  throwsConfig(60_000, TypeError, /lanes\.a\.priorityBoost must be an object, one of \{ standard: deadlineMs \}/);
  throwsConfig({}, TypeError, /priorityBoost must be one of .* \(leave priorityBoost out for no boosting\)/);
  throwsConfig({ standard: 1000, aggressive: 1000 }, TypeError, /names both 'standard' and 'aggressive'/);
  throwsConfig({ standard: 1000, deadlineMs: 1000 }, TypeError, /names both 'standard' and 'deadlineMs'/);
  throwsConfig({ standard: 0 }, RangeError, /lane 'a': priority boost: the deadline must be longer than zero/);
  throwsConfig({ aggressive: -5 }, RangeError, /priorityBoost\.aggressive must be 0 or more, got -5/);
  throwsConfig({ standard: 1000, steps: [] }, TypeError, /priorityBoost\.steps goes with deadlineMs, not with 'standard'/);
  throwsConfig({ steps: [{ beforeDeadlineMs: 1, boost: 1 }] }, TypeError, /priorityBoost must be one of/);
  throwsConfig({ deadlineMs: 1000, steps: {} }, TypeError, /priorityBoost\.steps must be an array like \[\{ beforeDeadlineMs: 1000, boost: 2 \}\], got an object/);
  throwsConfig({ deadlineMs: 1000, steps: [5] }, TypeError, /steps\[0\] must be an object like \{ beforeDeadlineMs: 1000, boost: 2 \}, got 5/);
  throwsConfig({ deadlineMs: 1000, steps: [{ boost: 1 }] }, TypeError, /steps\[0\]\.beforeDeadlineMs is required/);
  throwsConfig({ deadlineMs: 1000, steps: [{ beforeDeadlineMs: 500 }] }, TypeError, /steps\[0\]\.boost is required \(levels, 1 to 255\)/);
  throwsConfig({ deadlineMs: 1000, steps: [{ beforeDeadlineMs: 500, boost: 0 }] }, RangeError, /lane 'a': priority boost: the step at 500ms before the deadline boosts by 0 levels/);
  throwsConfig({ deadlineMs: 1000, steps: [{ beforeDeadlineMs: 500, boost: 256 }] }, RangeError, /steps\[0\]\.boost must be between 0 and 255, got 256/);
  throwsConfig({ deadlineMs: 1000, steps: [{ beforeDeadlineMs: 2000, boost: 1 }] }, RangeError, /lane 'a': priority boost: the step at 2s before the deadline is longer than the deadline \(1s\)/);
  throwsConfig({ deadlineMs: 1000, steps: [{ beforeDeadlineMs: 0, boost: 1 }] }, RangeError, /lane 'a': priority boost: the step at 0 before the deadline would boost only when the deadline has passed/);
  throwsConfig({ deadlineMs: 1000, steps: [{ beforeDeadlineMs: 10, boost: 1, extra: 1 }] }, TypeError, /unknown option 'extra'; known options: beforeDeadlineMs, boost/);
});
