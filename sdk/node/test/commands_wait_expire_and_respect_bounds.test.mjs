// Commands can wait before they start, must start by a deadline, and lanes can be
// bounded: every submit takes `delayMs` or `runAt` (a Date), and `startBy` (a Date) or
// `startWithinMs`; a lane takes `maxWaiting`, `whenFull` and `fullWaitTimeoutMs`.
//
// A delayed command shows as delayed, then takes its place at the back of its lane; one
// not started by its deadline never runs and rejects with LaneExpiredError (EXPIRED); a
// full lane rejects with LaneFullError (LANE_FULL, `lane`, `limit`) or waits for room.
// Bad values are refused with a TypeError or RangeError naming the option. The Redis
// part runs the same on a RedisQueue with a RedisWorker (A3S_LANE_REDIS_URL). Real time
// with short delays: lower bounds only, never how fast.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULTS,
  Lane,
  LaneError,
  LaneExpiredError,
  LaneFullError,
  LaneInvalidArgumentError,
  RedisQueue,
  RedisWorker,
} from '@a3s-lab/lane';
import { deferred, redisUrl, sleep, tempDir, uniquePrefix, waitFor } from './support.mjs';

// Timers fire no earlier than asked; this allows for clocks read at slightly different
// instants on either side.
const SLACK_MS = 15;
const inMs = (ms) => new Date(Date.now() + ms);

/** A started lane whose 'record' handler appends its payload to `ran`. */
async function startedLane(t, lanes = { q: { priority: 0 } }, options) {
  const lane = new Lane(lanes, options);
  const ran = [];
  lane.handle('record', (payload) => {
    ran.push(payload);
    return payload;
  });
  await lane.start();
  t.after(() => lane.shutdownNow());
  return { lane, ran };
}

const expired = (error) => {
  assert.ok(error instanceof LaneExpiredError, `${error.code}: ${error.message}`);
  assert.ok(error instanceof LaneError);
  assert.equal(error.code, 'EXPIRED');
  assert.match(error.message, /start-by deadline/);
  return true;
};

const full = (lane, limit) => (error) => {
  assert.ok(error instanceof LaneFullError, `${error.code}: ${error.message}`);
  assert.equal(error.code, 'LANE_FULL');
  assert.equal(error.lane, lane);
  assert.equal(error.limit, limit);
  assert.match(error.message, new RegExp(`lane '${lane}' is full`));
  return true;
};

// --- delays ---------------------------------------------------------------------------

for (const [name, when] of [
  ['delayMs', () => ({ delayMs: 300 })],
  ['runAt', () => ({ runAt: inMs(300) })],
]) {
  test(`${name}: a delayed command shows as delayed, then runs after a later undelayed one`, async (t) => {
    const { lane, ran } = await startedLane(t);
    const submitted = performance.now();
    const delayed = await lane.submitWithHandle('q', 'record', 'delayed', when());
    assert.equal((await lane.command(delayed.id)).state, 'delayed');
    const stats = await lane.stats();
    assert.deepEqual([stats.lanes.q.delayed, stats.lanes.q.pending, stats.totalDelayed], [1, 0, 1]);
    assert.equal(lane.size, 1);

    // Submitted later, without a delay: it runs first.
    assert.equal(await lane.submit('q', 'record', 'now'), 'now');
    assert.equal(await delayed.result, 'delayed');
    const waited = performance.now() - submitted;
    assert.ok(waited >= 300 - SLACK_MS, `ran after ${waited} ms`);
    assert.deepEqual(ran, ['now', 'delayed']);
    assert.equal((await lane.stats()).lanes.q.delayed, 0);
  });
}

test('a runAt up to a second in the past runs now', async (t) => {
  const { lane, ran } = await startedLane(t);
  assert.equal(await lane.submit('q', 'record', 'late', { runAt: inMs(-500) }), 'late');
  assert.deepEqual(ran, ['late']);
});

test('a delayed command takes its place at the back of its lane', async (t) => {
  const { lane, ran } = await startedLane(t);
  await lane.pauseLane('q');
  const all = [lane.submit('q', 'record', 'delayed', { delayMs: 100 }), lane.submit('q', 'record', 'first')];
  await waitFor(async () => (await lane.stats()).lanes.q.delayed === 0, 'the delayed command to fall due');
  all.push(lane.submit('q', 'record', 'after it fell due'));
  await lane.resumeLane('q');
  await Promise.all(all);
  assert.deepEqual(ran, ['first', 'delayed', 'after it fell due']);
});

test('a delayed command can be cancelled (by id or its AbortSignal) and never runs', async (t) => {
  const { lane, ran } = await startedLane(t);
  const handle = await lane.submitWithHandle('q', 'record', 'never', { delayMs: 30_000 });
  assert.equal(await lane.cancel(handle.id), 'cancelled');
  await assert.rejects(handle.result, (error) => error.code === 'CANCELLED');
  const controller = new AbortController();
  const signalled = lane.submit('q', 'record', 'never either', { delayMs: 30_000, signal: controller.signal });
  controller.abort(new Error('no longer needed'));
  await assert.rejects(signalled, (error) => error.code === 'CANCELLED');
  assert.equal((await lane.stats()).lanes.q.delayed, 0);
  assert.equal(lane.size, 0);
  assert.deepEqual(ran, []);
});

test('a durable lane keeps the delay of the commands it accepts', async (t) => {
  const lane = new Lane({ q: { priority: 0 } }, { storage: { path: tempDir(t) } });
  t.after(() => lane.shutdownNow());
  lane.handle('record', (payload) => payload);
  await lane.start();
  const submitted = performance.now();
  const handle = await lane.submitWithHandle('q', 'record', 'stored', { delayMs: 200, startWithinMs: 10_000 });
  assert.equal((await lane.command(handle.id)).state, 'delayed');
  assert.equal(await handle.result, 'stored');
  assert.ok(performance.now() - submitted >= 200 - SLACK_MS);
});

// --- start-by deadlines ---------------------------------------------------------------

for (const [name, deadline] of [
  ['startWithinMs', () => ({ startWithinMs: 100 })],
  ['startBy', () => ({ startBy: inMs(100) })],
]) {
  test(`${name}: a command not started by its deadline expires and never runs`, async (t) => {
    const { lane, ran } = await startedLane(t);
    await lane.pauseLane('q');
    const events = lane.events('queue.command.expired');
    const handle = await lane.submitWithHandle('q', 'record', 'too late', deadline());
    await assert.rejects(handle.result, expired);
    const { value: event } = await events.next();
    await events.return();
    assert.equal(event.key, 'queue.command.expired');
    const { laneId, commandId, commandType, startByMs } = event.payload;
    assert.deepEqual([laneId, commandId, commandType], ['q', handle.id, 'record']);
    assert.ok(Number.isInteger(startByMs) && startByMs > Date.now() - 60_000, `startByMs ${startByMs}`);
    const status = (await lane.stats()).lanes.q;
    assert.deepEqual([status.expired, status.pending], [1, 0]);
    await lane.resumeLane('q');
    await lane.onIdle();
    assert.deepEqual(ran, []);
  });
}

test('a busy lane keeps a command waiting past its deadline: it expires, the submitter hears EXPIRED', async (t) => {
  const { lane, ran } = await startedLane(t, { q: { priority: 0, maxConcurrency: 1 } });
  const release = deferred();
  lane.handle('block', () => release.promise);
  const blocker = lane.submit('q', 'block');
  await waitFor(() => lane.running === 1, 'the blocker to run');
  await assert.rejects(lane.submit('q', 'record', 'waited too long', { startWithinMs: 100 }), expired);
  release.resolve('done');
  assert.equal(await blocker, 'done');
  assert.deepEqual(ran, []);
  assert.equal((await lane.stats()).lanes.q.expired, 1);
});

test('a command started before its deadline runs', async (t) => {
  const { lane } = await startedLane(t);
  assert.equal(await lane.submit('q', 'record', 1, { delayMs: 50, startWithinMs: 5_000 }), 1);
  assert.equal((await lane.stats()).lanes.q.expired, 0);
});

// --- bounded lanes --------------------------------------------------------------------

test('a full lane rejects with LaneFullError (lane, limit), delayed commands count, and room comes back', async (t) => {
  const { lane, ran } = await startedLane(t, { q: { priority: 0, maxWaiting: 1 } });
  await lane.pauseLane('q');
  const first = lane.submit('q', 'record', 1);
  await assert.rejects(lane.submit('q', 'record', 2), full('q', 1));
  // Delayed commands wait in the lane too.
  await assert.rejects(lane.submit('q', 'record', 3, { delayMs: 1_000 }), full('q', 1));
  await assert.rejects(lane.submitWithHandle('q', 'record', 4), full('q', 1));
  const status = (await lane.stats()).lanes.q;
  assert.deepEqual([status.maxWaiting, status.rejectedFull, status.pending], [1, 3, 1]);
  await lane.resumeLane('q');
  assert.equal(await first, 1);
  // Room again once it started.
  assert.equal(await lane.submit('q', 'record', 5), 5);
  assert.deepEqual(ran, [1, 5]);
});

test("whenFull: 'wait' waits for room and then succeeds; the event loop goes on meanwhile", async (t) => {
  const { lane, ran } = await startedLane(t, { q: { priority: 0, maxWaiting: 1, whenFull: 'wait' } });
  await lane.pauseLane('q');
  const first = lane.submit('q', 'record', 1);
  const began = performance.now();
  let accepted = false;
  const second = lane.submitWithHandle('q', 'record', 2).then((handle) => {
    accepted = true;
    return handle;
  });
  const plain = lane.submit('q', 'record', 3); // the plain path waits too
  await sleep(300);
  assert.equal(accepted, false, 'accepted while the lane was full');
  await lane.resumeLane('q');
  const handle = await second;
  assert.ok(performance.now() - began >= 300 - SLACK_MS);
  assert.deepEqual(await Promise.all([first, handle.result, plain]), [1, 2, 3]);
  // The first ran first; the two that waited for room got in one after the other, in
  // no promised order.
  assert.deepEqual([ran[0], [...ran.slice(1)].sort()], [1, [2, 3]]);
  assert.equal((await lane.stats()).lanes.q.rejectedFull, 0);
});

test('fullWaitTimeoutMs: a submit that waited that long for room rejects with LaneFullError', async (t) => {
  const { lane } = await startedLane(t, { q: { priority: 0, maxWaiting: 1, whenFull: 'wait', fullWaitTimeoutMs: 200 } });
  await lane.pauseLane('q');
  const first = lane.submit('q', 'record', 1);
  const began = performance.now();
  await assert.rejects(lane.submit('q', 'record', 2), full('q', 1));
  assert.ok(performance.now() - began >= 200 - SLACK_MS);
  assert.equal((await lane.stats()).lanes.q.rejectedFull, 1);
  await lane.resumeLane('q');
  assert.equal(await first, 1);
});

test('lane bounds are checked, with the option named', () => {
  assert.deepEqual([DEFAULTS.lane.max_waiting, DEFAULTS.lane.when_full], [null, 'reject']);
  const config = (expected, message, lane) => (error) => {
    assert.ok(error instanceof expected, `${error.name}: ${error.message}`);
    assert.equal(error.code, 'CONFIG');
    assert.match(error.message, message);
    return true;
  };
  const cases = [
    [{ maxWaiting: 0 }, RangeError, /maxWaiting must be at least 1/],
    [{ maxWaiting: -1 }, RangeError, /lanes\.q\.maxWaiting must be between 0 and/],
    [{ maxWaiting: 1.5 }, RangeError, /lanes\.q\.maxWaiting must be a whole number/],
    [{ maxWaiting: '5' }, TypeError, /lanes\.q\.maxWaiting must be a number/],
    [{ whenFull: 'block' }, RangeError, /lanes\.q\.whenFull must be 'reject' or 'wait', got "block"/],
    [{ whenFull: true }, TypeError, /lanes\.q\.whenFull must be a string/],
    [{ fullWaitTimeoutMs: 1_000 }, RangeError, /fullWaitTimeoutMs applies only with whenFull: 'wait'/],
    [{ whenFull: 'reject', fullWaitTimeoutMs: 1_000 }, RangeError, /fullWaitTimeoutMs applies only with whenFull: 'wait'/],
    [{ whenFull: 'wait', fullWaitTimeoutMs: 0 }, RangeError, /fullWaitTimeoutMs must be greater than zero/],
    [{ whenFull: 'wait', fullWaitTimeoutMs: NaN }, RangeError, /lanes\.q\.fullWaitTimeoutMs must be a finite number/],
    [{ whenFull: 'wait', fullWaitTimeoutMs: -5 }, RangeError, /lanes\.q\.fullWaitTimeoutMs must be 0 or more/],
  ];
  for (const [options, expected, message] of cases) {
    assert.throws(() => new Lane({ q: { priority: 0, ...options } }), config(expected, message), JSON.stringify(options));
  }
  // Good ones build.
  new Lane({ q: { priority: 0, maxWaiting: 10, whenFull: 'wait', fullWaitTimeoutMs: 1_500 } });
  new Lane({ q: { priority: 0, maxWaiting: 10, whenFull: 'reject' } });
});

// --- bad input ------------------------------------------------------------------------

/** [name, options (made when used), class, message] */
const BAD_OPTIONS = [
  ['negative delayMs', () => ({ delayMs: -1 }), RangeError, /options\.delayMs must be 0 or more, got -1/],
  ['NaN delayMs', () => ({ delayMs: NaN }), RangeError, /options\.delayMs must be a finite number, got NaN/],
  ['infinite delayMs', () => ({ delayMs: Infinity }), RangeError, /options\.delayMs must be a finite number/],
  ['huge delayMs', () => ({ delayMs: 1e15 }), RangeError, /delayMs .* is longer than 100 years/],
  ['string delayMs', () => ({ delayMs: '5' }), TypeError, /options\.delayMs must be a number of milliseconds, got the string "5"/],
  ['invalid Date runAt', () => ({ runAt: new Date('not a date') }), RangeError, /options\.runAt is an invalid Date/],
  ['number runAt', () => ({ runAt: Date.now() + 5_000 }), TypeError, /options\.runAt must be a Date/],
  ['runAt in the past', () => ({ runAt: inMs(-30_000) }), RangeError, /runAt lies .* in the past/],
  ['runAt too far ahead', () => ({ runAt: new Date(8.64e15) }), RangeError, /runAt is .* ahead, more than 100 years/],
  ['delayMs with runAt', () => ({ delayMs: 1, runAt: inMs(5_000) }), RangeError, /give delayMs or runAt, not both/],
  ['string startBy', () => ({ startBy: 'tomorrow' }), TypeError, /options\.startBy must be a Date/],
  ['startBy in the past', () => ({ startBy: inMs(-30_000) }), RangeError, /startBy lies .* in the past/],
  ['negative startWithinMs', () => ({ startWithinMs: -0.5 }), RangeError, /options\.startWithinMs must be 0 or more/],
  ['NaN startWithinMs', () => ({ startWithinMs: NaN }), RangeError, /options\.startWithinMs must be a finite number/],
  ['startBy with startWithinMs', () => ({ startBy: inMs(5_000), startWithinMs: 5_000 }), RangeError, /give startBy or startWithinMs, not both/],
  ['deadline before the start', () => ({ delayMs: 10_000, startWithinMs: 5_000 }), RangeError, /could never run/],
  ['unknown option', () => ({ delay: 5 }), TypeError, /unknown submit option 'delay'/],
];

const invalid = (expected, message) => (error) => {
  assert.ok(error instanceof expected, `${error.name}: ${error.message}`);
  assert.ok(error instanceof LaneInvalidArgumentError);
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.match(error.message, message);
  return true;
};

test('bad timing options are refused with a TypeError or RangeError that says what to do', async (t) => {
  const { lane, ran } = await startedLane(t);
  const durable = new Lane({ q: { priority: 0 } }, { storage: { path: tempDir(t) } });
  t.after(() => durable.shutdownNow());
  durable.handle('record', (payload) => payload);
  await durable.start();
  for (const [name, options, expected, message] of BAD_OPTIONS) {
    await t.test(name, async () => {
      await assert.rejects(lane.submit('q', 'record', 1, options()), invalid(expected, message));
      await assert.rejects(lane.submitWithHandle('q', 'record', 1, options()), invalid(expected, message));
      await assert.rejects(durable.submit('q', 'record', 1, options()), invalid(expected, message));
    });
  }
  assert.equal(lane.size, 0);
  assert.equal(durable.size, 0);
  assert.deepEqual(ran, []);
});

// --- on Redis -------------------------------------------------------------------------

/**
 * A RedisQueue with `lanes` (lane "q" by default) and, unless `worker` is false, a
 * started RedisWorker whose 'record' handler appends its payload to `ran`.
 */
async function redisPair(t, lanes = { q: { priority: 0 } }, { worker = true } = {}) {
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('timing'), lanes });
  const ran = [];
  let started = null;
  if (worker) {
    started = await RedisWorker.start(queue, {
      slots: 4,
      handlers: {
        record: (payload) => {
          ran.push(payload);
          return payload;
        },
      },
    });
  }
  t.after(async () => {
    if (started !== null) await started.shutdownNow();
    await queue.clear();
  });
  return { queue, ran };
}

test('on Redis: a delayed command shows as delayed, then runs after a later undelayed one', async (t) => {
  const { queue, ran } = await redisPair(t);
  const submitted = performance.now();
  const delayed = await queue.submit('q', 'record', 'delayed', { delayMs: 500 });
  assert.equal((await queue.command(delayed.id)).state, 'delayed');
  assert.equal((await queue.stats()).lanes.q.delayed, 1);
  assert.equal(await (await queue.submit('q', 'record', 'now')).result, 'now');
  assert.equal(await delayed.result, 'delayed');
  assert.ok(performance.now() - submitted >= 500 - SLACK_MS);
  assert.deepEqual(ran, ['now', 'delayed']);
  assert.equal((await queue.stats()).lanes.q.delayed, 0);
});

test('on Redis: runAt holds a command back, and a delayed command can be cancelled', async (t) => {
  const { queue, ran } = await redisPair(t);
  const submitted = performance.now();
  const soon = await queue.submit('q', 'record', 'soon', { runAt: inMs(300) });
  const never = await queue.submit('q', 'record', 'never', { runAt: inMs(30_000) });
  assert.equal(await queue.cancel(never.id), 'cancelled');
  await assert.rejects(never.result, (error) => error.code === 'CANCELLED');
  assert.equal(await soon.result, 'soon');
  assert.ok(performance.now() - submitted >= 300 - SLACK_MS);
  assert.equal((await queue.stats()).lanes.q.delayed, 0);
  assert.deepEqual(ran, ['soon']);
});

test('on Redis: a command not started by its deadline expires (EXPIRED, the event, the state, the count)', async (t) => {
  const { queue, ran } = await redisPair(t);
  await queue.pauseLane('q');
  const events = queue.events('queue.command.expired');
  const handle = await queue.submit('q', 'record', 'too late', { startWithinMs: 200 });
  await assert.rejects(handle.result, expired);
  const { value: event } = await events.next();
  await events.return();
  assert.deepEqual([event.payload.laneId, event.payload.commandId], ['q', handle.id]);
  assert.equal((await queue.command(handle.id)).state, 'expired');
  assert.equal((await queue.stats()).lanes.q.expired, 1);
  await queue.resumeLane('q');
  assert.equal(await (await queue.submit('q', 'record', 'after', { startBy: inMs(30_000) })).result, 'after');
  assert.deepEqual(ran, ['after']);
});

test('on Redis: a full lane rejects with LaneFullError, or waits for room up to fullWaitTimeoutMs', async (t) => {
  const { queue } = await redisPair(
    t,
    {
      q: { priority: 0, maxWaiting: 1 },
      w: { priority: 1, maxWaiting: 1, whenFull: 'wait' },
      g: { priority: 2, maxWaiting: 1, whenFull: 'wait', fullWaitTimeoutMs: 200 },
    },
    { worker: false },
  );
  // No worker: what is submitted waits (and is cancelled at the end, so that no result
  // promise is left to hold the process).
  const waiting = [await queue.submit('q', 'record', 1)];
  await assert.rejects(queue.submit('q', 'record', 2), full('q', 1));
  const status = (await queue.stats()).lanes.q;
  assert.deepEqual([status.maxWaiting, status.rejectedFull, status.pending], [1, 1, 1]);

  waiting.push(await queue.submit('g', 'record', 1));
  const began = performance.now();
  await assert.rejects(queue.submit('g', 'record', 2), full('g', 1));
  assert.ok(performance.now() - began >= 200 - SLACK_MS);

  const first = await queue.submit('w', 'record', 1);
  let accepted = false;
  const second = queue.submit('w', 'record', 2).then((handle) => {
    accepted = true;
    return handle;
  });
  await sleep(300);
  assert.equal(accepted, false, 'accepted while the lane was full');
  assert.equal(await queue.cancel(first.id), 'cancelled'); // room
  const handle = await second;
  assert.equal((await queue.command(handle.id)).state, 'pending');
  for (const held of [...waiting, handle]) {
    assert.equal(await queue.cancel(held.id), 'cancelled');
    await assert.rejects(held.result, (error) => error.code === 'CANCELLED');
  }
});

test('on Redis: bad timing options are refused like on a Lane', async (t) => {
  const { queue } = await redisPair(t, undefined, { worker: false });
  for (const [name, options, expected, message] of BAD_OPTIONS) {
    await t.test(name, async () => {
      await assert.rejects(queue.submit('q', 'record', 1, options()), invalid(expected, message));
    });
  }
  const stats = await queue.stats();
  assert.equal(stats.totalPending + stats.totalDelayed, 0);
});
