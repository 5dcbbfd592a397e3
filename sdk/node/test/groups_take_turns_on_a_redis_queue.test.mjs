// Groups inside a lane on a RedisQueue (`options.group` of a submit), over all workers:
// a lane's groups take turns, so one group's backlog delays another group's first
// command by at most one turn; a group's cap (`groupMaxConcurrency`, an override's)
// holds; groups are paused, resumed, cancelled and read as on a `Lane` (see
// groups_take_turns_inside_a_lane). Needs Redis (A3S_LANE_REDIS_URL); each test uses its
// own key prefix and clears it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisUrl, uniquePrefix, waitFor } from './support.mjs';

/**
 * A queue with its own prefix and one worker whose `job` handler records each start
 * (`payload.label`) and how many of each group run at once, then waits for the gate
 * (opened with `open()`); cleared after the test.
 */
async function gated(t, lanes, slots) {
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('groups'), lanes });
  const gate = deferred();
  const starts = [];
  const running = new Map();
  const most = new Map();
  const worker = await RedisWorker.start(queue, {
    slots,
    handlers: {
      job: async ({ label, group }) => {
        starts.push(label);
        const now = (running.get(group) ?? 0) + 1;
        running.set(group, now);
        most.set(group, Math.max(most.get(group) ?? 0, now));
        try {
          await gate.promise;
        } finally {
          running.set(group, running.get(group) - 1);
        }
        return label;
      },
    },
  });
  // Handles whose result has not settled: a failed test cancels them, so that their
  // pending results do not keep the process alive.
  const unsettled = new Set();
  t.after(async () => {
    gate.resolve();
    await Promise.all([...unsettled].map((handle) => handle.cancel().catch(() => {})));
    await worker.shutdownNow();
    await queue.clear();
  });
  const submit = async (lane, group, label) => {
    const handle = await queue.submit(lane, 'job', { label, group }, { group });
    unsettled.add(handle);
    handle.result.then(
      () => unsettled.delete(handle),
      () => unsettled.delete(handle),
    );
    return handle;
  };
  return { queue, starts, most, submit, open: () => gate.resolve() };
}

test("a group's backlog delays another group's first command by one turn, over Redis", async (t) => {
  const { starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 1 } }, 4);
  // A's first runs (held by the gate), then A submits 999 more, then B submits one.
  const handles = [await submit('work', 'A', 'A0')];
  await waitFor(() => starts.length === 1, 'the first command of A to start');
  const backlog = [];
  for (let n = 1; n < 1000; n++) backlog.push(submit('work', 'A', `A${n}`));
  handles.push(...(await Promise.all(backlog)));
  handles.push(await submit('work', 'B', 'B0'));
  assert.deepEqual(starts, ['A0']);
  open();
  await Promise.all(handles.map((handle) => handle.result));
  // B's only command runs right after A's first, not after A's thousand.
  assert.deepEqual(starts.slice(0, 3), ['A0', 'B0', 'A1']);
  assert.equal(starts.length, 1001);
});

test('a group that arrives behind a queued backlog goes right after the running command, over Redis', async (t) => {
  const { queue, starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 1 } }, 4);
  await queue.pauseLane('work');
  const backlog = [];
  for (let n = 0; n < 100; n++) backlog.push(submit('work', 'A', `A${n}`));
  const handles = await Promise.all(backlog);
  await queue.resumeLane('work');
  await waitFor(() => starts.length === 1, 'the first command of A to start');
  handles.push(await submit('work', 'B', 'B0'));
  open();
  await Promise.all(handles.map((handle) => handle.result));
  assert.deepEqual(starts.slice(0, 3), ['A0', 'B0', 'A1']);
});

test('each group runs at most its cap over Redis, an override its own', async (t) => {
  const { queue, most, submit, open } = await gated(
    t,
    { work: { priority: 0, maxConcurrency: 20, groupMaxConcurrency: 2, groupOverrides: { vip: { maxConcurrency: 3 } } } },
    16,
  );
  const handles = [];
  for (let n = 0; n < 6; n++) handles.push(await submit('work', 'plain', `plain${n}`), await submit('work', 'vip', `vip${n}`));
  await waitFor(async () => (await queue.stats()).lanes.work.active === 5, '2 + 3 commands running');
  const plain = await queue.groupStatus('work', 'plain');
  assert.deepEqual(plain, { lane: 'work', group: 'plain', pending: 4, active: 2, paused: false, throttled: false, maxConcurrency: 2 });
  const vip = await queue.groupStatus('work', 'vip');
  assert.deepEqual([vip.active, vip.pending, vip.maxConcurrency], [3, 3, 3]);
  assert.deepEqual(
    (await queue.groups('work')).map((g) => g.group),
    ['plain', 'vip'],
  );
  open();
  await Promise.all(handles.map((handle) => handle.result));
  assert.deepEqual(Object.fromEntries(most), { plain: 2, vip: 3 });
});

test('a paused group waits in Redis until resumed; cancelGroup ends its commands', async (t) => {
  const { queue, starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 4 } }, 4);
  open();
  await queue.pauseGroup('work', 'held');
  const held = [await submit('work', 'held', 'held0'), await submit('work', 'held', 'held1')];
  assert.equal(await (await submit('work', 'free', 'free0')).result, 'free0');
  assert.deepEqual(starts, ['free0']);
  const status = await queue.groupStatus('work', 'held');
  assert.deepEqual([status.paused, status.pending, status.active], [true, 2, 0]);
  await queue.resumeGroup('work', 'held');
  assert.deepEqual(await Promise.all(held.map((handle) => handle.result)), ['held0', 'held1']);

  await queue.pauseGroup('work', 'doomed');
  const doomed = [await submit('work', 'doomed', 'd0'), await submit('work', 'doomed', 'd1')];
  assert.equal(await queue.cancelGroup('work', 'doomed'), 2);
  for (const handle of doomed) await assert.rejects(handle.result, (error) => error.code === 'CANCELLED');
});

test('declareLane takes the group options, and bad group input is refused as on a Lane', async (t) => {
  const { queue, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 8 } }, 8);
  const refused = (ErrorClass, code, pattern) => (error) => {
    assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  };
  await assert.rejects(
    queue.declareLane('work', { priority: 0, groupMaxConcurrency: 0 }),
    refused(RangeError, 'CONFIG', /a group maxConcurrency of 0 would never start a command/),
  );
  await assert.rejects(
    queue.declareLane('work', { priority: 0, groupOverrides: { vip: { rateLimit: { slidingWindow: { limit: 1, windowMs: 10 } } } } }),
    refused(RangeError, 'CONFIG', /lane 'work' group 'vip': a group rate limit must be a token bucket/),
  );
  await assert.rejects(queue.submit('work', 'job', {}, { group: '' }), refused(RangeError, 'INVALID_ARGUMENT', /a group key must not be empty/));
  await assert.rejects(queue.submit('work', 'job', {}, { group: 1 }), refused(TypeError, 'INVALID_ARGUMENT', /options\.group must be a string/));
  await assert.rejects(queue.pauseGroup('work', 'x'.repeat(300)), refused(RangeError, 'INVALID_ARGUMENT', /^group: a group key of 300 bytes/));
  await assert.rejects(queue.groupStatus('nowhere', 'g'), refused(RangeError, 'LANE_NOT_FOUND', /nowhere/));

  await queue.declareLane('work', { priority: 0, maxConcurrency: 8, groupMaxConcurrency: 1 });
  const handles = [];
  for (let n = 0; n < 3; n++) handles.push(await submit('work', 'g', `g${n}`));
  await waitFor(async () => (await queue.groupStatus('work', 'g')).active === 1, 'one command of g running');
  assert.deepEqual(await queue.groupStatus('work', 'g'), {
    lane: 'work',
    group: 'g',
    pending: 2,
    active: 1,
    paused: false,
    throttled: false,
    maxConcurrency: 1,
  });
  open();
  await Promise.all(handles.map((handle) => handle.result));
});
