// Every default an options object really applies is the core's, as DEFAULTS lists it
// (a3s_lane::defaults(), durations in milliseconds): each options object is built with no
// optional field, and what the queue then does is compared with the table. Needs Redis
// (A3S_LANE_REDIS_URL) for the Redis queue and worker.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULTS, Lane, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisUrl, uniquePrefix, waitFor } from './support.mjs';

/**
 * A handler that ignores its aborted signal: it returns only when the test calls
 * `unstick()` (until then it keeps its lane slot).
 */
function stubborn() {
  const done = deferred();
  return { stuck: () => done.promise, unstick: () => done.resolve(null) };
}

/** Milliseconds since an arbitrary origin, for lower bounds on delays. */
const now = () => performance.now();
// Timers fire no earlier than asked; this allows for clocks read at slightly different
// instants on either side.
const SLACK_MS = 5;

test('DEFAULTS is the core table, with its keys, frozen', () => {
  assert.deepEqual(Object.keys(DEFAULTS).sort(), ['lane', 'queue', 'redis_queue', 'redis_worker', 'retry_policy']);
  assert.deepEqual(Object.keys(DEFAULTS.lane).sort(), [
    'budget',
    'cancel_grace_ms',
    'group_max_concurrency',
    'group_rate_limit',
    'keep_for_ms',
    'keep_last',
    'max_concurrency',
    'max_waiting',
    'min_concurrency',
    'pressure_threshold',
    'priority_boost',
    'rate_limit',
    'retry_policy',
    'timeout_ms',
    'when_full',
  ]);
  for (const value of [DEFAULTS, DEFAULTS.lane, DEFAULTS.retry_policy, DEFAULTS.queue, DEFAULTS.queue.default_lanes[0]]) {
    assert.ok(Object.isFrozen(value));
  }
  assert.throws(() => {
    DEFAULTS.lane.cancel_grace_ms = 1;
  }, TypeError);
});

test('new Lane() has the default lanes of the table; a default lane named with {} keeps them', async () => {
  const lane = new Lane();
  assert.deepEqual(lane.laneIds, DEFAULTS.queue.default_lanes.map((l) => l.id));
  const named = new Lane({ prompt: {} });
  for (const [queue, defaults] of [
    [lane, DEFAULTS.queue.default_lanes],
    [named, DEFAULTS.queue.default_lanes.filter((l) => l.id === 'prompt')],
  ]) {
    const { lanes } = await queue.stats();
    for (const expected of defaults) {
      const { priority, maxConcurrency, minConcurrency } = lanes[expected.id];
      assert.deepEqual(
        { priority, maxConcurrency, minConcurrency },
        { priority: expected.priority, maxConcurrency: expected.max_concurrency, minConcurrency: expected.min_concurrency },
        expected.id,
      );
    }
  }
  await lane.shutdown();
  await named.shutdown();
});

test('a lane with no optional option: the core concurrency, cancel grace, and no retry, boost, rate limit or pressure events', async (t) => {
  assert.equal(DEFAULTS.lane.retry_policy, null);
  assert.equal(DEFAULTS.lane.rate_limit, null);
  assert.equal(DEFAULTS.lane.priority_boost, null);
  assert.equal(DEFAULTS.lane.pressure_threshold, null);
  assert.equal(DEFAULTS.lane.timeout_ms, null);
  assert.equal(DEFAULTS.lane.max_waiting, null);
  assert.equal(DEFAULTS.lane.when_full, 'reject');
  const lane = new Lane({ a: { priority: 3 } });
  t.after(() => lane.shutdownNow());
  const status = (await lane.stats()).lanes.a;
  assert.equal(status.minConcurrency, DEFAULTS.lane.min_concurrency);
  assert.equal(status.maxConcurrency, DEFAULTS.lane.max_concurrency);
  assert.equal(status.maxWaiting, DEFAULTS.lane.max_waiting);
  // No group limits and no shared budget unless given.
  assert.equal(DEFAULTS.lane.group_rate_limit, null);
  assert.equal(DEFAULTS.lane.budget, null);
  const group = await lane.groupStatus('a', 'anyone');
  assert.equal(group.maxConcurrency, DEFAULTS.lane.group_max_concurrency);
  assert.equal(group.throttled, false);

  let attempts = 0;
  const started = deferred();
  const { stuck, unstick } = stubborn();
  lane.handle('fail', () => {
    attempts += 1;
    throw new Error('no retry');
  });
  lane.handle('stuck', () => {
    started.resolve();
    return stuck();
  });
  lane.handle('job', () => null);
  const pressure = [];
  lane.on('queue.lane.pressure', (event) => pressure.push(event));
  await lane.start();

  // No retry policy: a failure is final after one attempt.
  await assert.rejects(lane.submit('a', 'fail'), /no retry/);
  assert.equal(attempts, 1);

  // The cancel grace: a running handler that ignores its aborted signal is abandoned
  // after DEFAULTS.lane.cancel_grace_ms, and only then does its submitter hear of it.
  const handle = await lane.submitWithHandle('a', 'stuck');
  await started.promise;
  // Meanwhile many commands wait (the cap is 1): no boost, no limit, no pressure event.
  const waiting = Array.from({ length: 50 }, () => lane.submit('a', 'job'));
  const { effectivePriority, throttled } = (await lane.stats()).lanes.a;
  assert.equal(effectivePriority, 3);
  assert.equal(throttled, false);
  const cancelledAt = now();
  assert.equal(await lane.cancel(handle.id), 'signalled');
  await assert.rejects(handle.result, (error) => error.code === 'CANCELLED');
  const waited = now() - cancelledAt;
  assert.ok(waited >= DEFAULTS.lane.cancel_grace_ms - SLACK_MS, `abandoned after ${waited} ms`);
  assert.ok(waited < DEFAULTS.lane.cancel_grace_ms * 10, `abandoned after ${waited} ms`);
  // It keeps its slot until it returns; then the waiting commands run.
  // No max_waiting: the 50 waiting commands were all taken, none refused as full.
  assert.equal((await lane.stats()).lanes.a.rejectedFull, 0);
  unstick();
  await Promise.all(waiting);
  assert.deepEqual(pressure, []);
});

test('a bounded lane with no whenFull rejects as the table says (when_full: reject)', async (t) => {
  assert.equal(DEFAULTS.lane.when_full, 'reject');
  const lane = new Lane({ a: { priority: 0, maxWaiting: 1 } });
  t.after(() => lane.shutdownNow());
  lane.handle('job', () => null);
  await lane.submitWithHandle('a', 'job'); // not started: it waits in the lane
  await assert.rejects(lane.submit('a', 'job'), (error) => error.code === 'LANE_FULL');
});

test('a lane with no group option: a group has no cap and no rate limit of its own', async (t) => {
  // The core's defaults (GroupLimits::default(): none); the table has no row for them:
  // DEFAULTS.lane lists no group key (see the first test).
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 5 } });
  t.after(() => lane.shutdownNow());
  const release = deferred();
  let running = 0;
  lane.handle('hold', async () => {
    running += 1;
    await release.promise;
  });
  await lane.start();
  const held = Array.from({ length: 6 }, () => lane.submit('a', 'hold', null, { group: 'g' }));
  await waitFor(() => running === 5, 'the lane cap (5) of one group to run');
  assert.deepEqual(await lane.groupStatus('a', 'g'), {
    lane: 'a',
    group: 'g',
    pending: 1,
    active: 5,
    paused: false,
    throttled: false,
    maxConcurrency: null,
  });
  release.resolve();
  await Promise.all(held);
});

test('a retry policy with no optional option: the core retries, delays and jitter', async () => {
  const lane = new Lane({ a: { priority: 0, retry: {} } });
  const at = [];
  lane.handle('fail', () => {
    at.push(now());
    throw new Error(`attempt ${at.length} failed`);
  });
  await lane.start();
  await assert.rejects(lane.submit('a', 'fail'));
  const { max_retries, initial_delay_ms, multiplier, max_delay_ms, jitter } = DEFAULTS.retry_policy;
  assert.equal(at.length, 1 + max_retries);
  // Without jitter no retry comes early: each waits at least its delay.
  assert.equal(jitter, 'none');
  for (let n = 1; n < at.length; n++) {
    const delay = Math.min(initial_delay_ms * multiplier ** (n - 1), max_delay_ms);
    assert.ok(at[n] - at[n - 1] >= delay - SLACK_MS, `retry ${n} after ${at[n] - at[n - 1]} ms, expected ${delay}`);
  }
  await lane.shutdown();
});

test('queue options with no optional field: each iterator holds DEFAULTS.queue.event_capacity events', async () => {
  const lane = new Lane({ a: { priority: 0 } }, {});
  lane.handle('job', () => null);
  lane.handle('last', () => null);
  await lane.pauseLane('a');
  await lane.start();
  const events = lane.events('queue.command.submitted');
  const capacity = DEFAULTS.queue.event_capacity;
  // Submitted in one go, so nothing is read meanwhile: the iterator keeps the newest
  // `capacity` of them and says it missed the others.
  const results = [];
  for (let n = 0; n < capacity + 100; n++) results.push(lane.submit('a', 'job').catch(() => {}));
  results.push(lane.submit('a', 'last').catch(() => {}));
  let kept = 0;
  let lagged = false;
  for await (const event of events) {
    if (event.key === 'queue.events.lagged') {
      lagged = true;
      continue;
    }
    kept += 1;
    if (event.payload.commandType === 'last') break;
  }
  assert.ok(lagged);
  assert.equal(kept, capacity);
  await lane.shutdownNow();
  await Promise.all(results);
});

test('a Redis queue and lanes with no optional option: the core prefix, lanes, retries and cancel grace', async (t) => {
  // The default prefix: connecting writes nothing, so nothing is cleared.
  const plain = await RedisQueue.connect(redisUrl());
  assert.equal(plain.keyPrefix, `{${DEFAULTS.redis_queue.key_prefix}}`);

  const queue = await RedisQueue.connect(redisUrl(), {
    keyPrefix: uniquePrefix('defaults'),
    lanes: { prompt: {}, a: { priority: 3 }, retried: { priority: 4, retry: {} } },
  });
  const workers = [];
  t.after(async () => {
    for (const worker of workers) await worker.shutdownNow();
    await queue.clear();
  });
  const { lanes } = await queue.stats();
  const prompt = DEFAULTS.queue.default_lanes.find((lane) => lane.id === 'prompt');
  assert.equal(lanes.prompt.priority, prompt.priority);
  assert.equal(lanes.prompt.maxConcurrency, prompt.max_concurrency);
  assert.equal(lanes.a.maxConcurrency, DEFAULTS.lane.max_concurrency);

  const started = deferred();
  const { stuck, unstick } = stubborn();
  const at = [];
  workers.push(
    await RedisWorker.start(queue, {
      handlers: {
        stuck: () => {
          started.resolve();
          return stuck();
        },
        fail: () => {
          at.push(now());
          throw new Error('failed');
        },
      },
    }),
  );
  const failing = await queue.submit('retried', 'fail');
  await assert.rejects(failing.result, (error) => error.code === 'COMMAND_FAILED');
  assert.equal(at.length, 1 + DEFAULTS.retry_policy.max_retries);
  for (let n = 1; n < at.length; n++) {
    const delay = Math.min(DEFAULTS.retry_policy.initial_delay_ms * DEFAULTS.retry_policy.multiplier ** (n - 1), DEFAULTS.retry_policy.max_delay_ms);
    assert.ok(at[n] - at[n - 1] >= delay - SLACK_MS, `retry ${n} after ${at[n] - at[n - 1]} ms, expected ${delay}`);
  }

  const handle = await queue.submit('a', 'stuck');
  await started.promise;
  const cancelledAt = now();
  assert.equal(await handle.cancel(), 'signalled');
  await assert.rejects(handle.result, (error) => error.code === 'CANCELLED');
  const waited = now() - cancelledAt;
  assert.ok(waited >= DEFAULTS.lane.cancel_grace_ms - SLACK_MS, `abandoned after ${waited} ms`);
  unstick();
});

test('a Redis worker with no optional option runs DEFAULTS.redis_worker.slots commands at once', async (t) => {
  const queue = await RedisQueue.connect(redisUrl(), {
    keyPrefix: uniquePrefix('slots'),
    lanes: { wide: { priority: 0, maxConcurrency: 1000 } },
  });
  const release = deferred();
  const worker = await RedisWorker.start(queue, { handlers: { hold: () => release.promise } });
  t.after(async () => {
    release.resolve();
    await worker.shutdown(10_000);
    await queue.clear();
  });
  const slots = DEFAULTS.redis_worker.slots;
  const handles = [];
  for (let n = 0; n < slots + 4; n++) handles.push(await queue.submit('wide', 'hold'));
  await waitFor(async () => (await queue.stats()).lanes.wide.active === slots, `${slots} running`);
  // Full: the worker claims nothing more until a slot frees.
  const { lanes } = await queue.stats();
  assert.equal(lanes.wide.pending, 4);
  assert.equal(worker.running, slots);
  release.resolve();
  await Promise.all(handles.map((handle) => handle.result));
});
