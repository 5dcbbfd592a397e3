// An idempotency key runs a command once: every submit takes `options.key` (a non-empty
// string of at most 512 bytes of UTF-8), and a submit whose key a command of the same
// queue (any lane) holds while it is delayed, pending or running queues nothing and gets
// that command — the same id, `isDuplicate: true` on its handle, and the one run's result
// (or error). Once the command ended (completed, cancelled, expired) the key is free; a
// durable Lane keeps it across a restart. A duplicate publishes
// `queue.command.deduplicated` and counts in `lane.commands.deduplicated`.
//
// The Redis part runs the same on a RedisQueue with a RedisWorker (A3S_LANE_REDIS_URL),
// with a second RedisQueue on the same prefix as another producer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EVENT_KEYS, Lane, LaneInvalidArgumentError, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisUrl, tempDir, uniquePrefix, waitFor } from './support.mjs';

const LANES = { jobs: { priority: 0, maxConcurrency: 4 }, other: { priority: 1, maxConcurrency: 4 } };

/**
 * A "job" handler that records its payload, then waits for `release()`; the payload
 * "boom" throws `new Error('boom')`.
 */
function gate() {
  const released = deferred();
  const ran = [];
  const job = async (payload) => {
    ran.push(payload);
    await released.promise;
    if (payload === 'boom') throw new Error('boom');
    return payload;
  };
  return { ran, job, release: () => released.resolve() };
}

async function startedLane(t, options) {
  const lane = new Lane(LANES, options);
  const g = gate();
  lane.handle('job', g.job);
  await lane.start();
  t.after(() => {
    g.release();
    return lane.shutdownNow();
  });
  return { lane, ...g };
}

/** [name, key, error class, code, message] of keys every submit refuses. */
const BAD_KEYS = [
  ['empty', '', RangeError, /the idempotency key is empty/],
  ['513 bytes', 'k'.repeat(513), RangeError, /the idempotency key is 513 bytes long, more than 512/],
  ['257 two-byte characters', 'é'.repeat(257), RangeError, /the idempotency key is 514 bytes long/],
  ['a number', 5, TypeError, /options\.key must be a string \(an idempotency key\), got 5/],
  ['null', null, TypeError, /options\.key must be a string \(an idempotency key\), got null/],
  ['a lone surrogate', 'k\uD800', TypeError, /options\.key is a string with a lone surrogate/],
];

const refused = (ErrorClass, message) => (error) => {
  assert.ok(error instanceof ErrorClass, `${error.name}: ${error.message}`);
  assert.ok(error instanceof LaneInvalidArgumentError);
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.match(error.message, message);
  return true;
};

// --- in process -----------------------------------------------------------------------

test('a submit with a live key gets the command holding it: same id, one run, the same result', async (t) => {
  const { lane, ran, release } = await startedLane(t);
  const first = await lane.submitWithHandle('jobs', 'job', 'first', { key: 'report-4' });
  assert.equal(first.isDuplicate, false);
  await waitFor(() => ran.length === 1, 'the first command to run');
  // While it runs, the same key gives it: same id, nothing queued, even to another lane
  // and with another payload (keys are per queue).
  const second = await lane.submitWithHandle('other', 'job', 'second', { key: 'report-4' });
  assert.equal(second.isDuplicate, true);
  assert.equal(second.id, first.id);
  assert.equal(lane.size, 0, 'a duplicate queued a command');
  // Another key is another command.
  const other = await lane.submitWithHandle('jobs', 'job', 'other key', { key: 'report-5' });
  assert.equal(other.isDuplicate, false);
  assert.notEqual(other.id, first.id);
  // A plain submit of the live key settles with the same run's result (the gate opens
  // once it was taken as a duplicate: its event says so).
  const taken = lane.events('queue.command.deduplicated');
  const plain = lane.submit('jobs', 'job', 'third', { key: 'report-4' });
  await taken.next();
  await taken.return();
  release();
  assert.deepEqual(await Promise.all([first.result, second.result, plain, other.result]), ['first', 'first', 'first', 'other key']);
  await lane.onIdle();
  assert.deepEqual(ran, ['first', 'other key']);
  // A duplicate's handle is like any other: frozen, with a cancel().
  assert.ok(Object.isFrozen(second));
  assert.equal(await second.cancel(), 'already_finished');
});

test('every submitter of a key gets the handler’s own thrown error', async (t) => {
  const { lane, ran, release } = await startedLane(t);
  const first = await lane.submitWithHandle('jobs', 'job', 'boom', { key: 'k' });
  await waitFor(() => ran.length === 1, 'the command to run');
  const second = await lane.submitWithHandle('jobs', 'job', 'boom', { key: 'k' });
  const plain = lane.submit('other', 'job', 'boom', { key: 'k' });
  assert.equal(second.isDuplicate, true);
  release();
  for (const result of [first.result, second.result, plain]) {
    await assert.rejects(result, (error) => {
      assert.equal(error.message, 'boom');
      assert.equal(error.code, undefined, 'not the queue’s summary of it');
      return true;
    });
  }
  assert.deepEqual(ran, ['boom']);
});

test('a key is free again once its command completed, was cancelled or expired', async (t) => {
  const { lane, ran, release } = await startedLane(t);
  release();
  const done = await lane.submitWithHandle('jobs', 'job', 'done', { key: 'k' });
  assert.equal(await done.result, 'done');
  // Completed: the key is free; this one is delayed, then cancelled.
  const delayed = await lane.submitWithHandle('jobs', 'job', 'delayed', { key: 'k', delayMs: 3_600_000 });
  assert.equal(delayed.isDuplicate, false);
  assert.notEqual(delayed.id, done.id);
  assert.equal((await lane.command(delayed.id)).state, 'delayed');
  // A delayed command holds its key too.
  const again = await lane.submitWithHandle('jobs', 'job', 'again', { key: 'k' });
  assert.deepEqual([again.id, again.isDuplicate], [delayed.id, true]);
  assert.equal(await lane.cancel(delayed.id), 'cancelled');
  await assert.rejects(delayed.result, (error) => error.code === 'CANCELLED');
  await assert.rejects(again.result, (error) => error.code === 'CANCELLED');
  // Cancelled: free; this one expires in a paused lane.
  await lane.pauseLane('jobs');
  const expiring = await lane.submitWithHandle('jobs', 'job', 'expiring', { key: 'k', startWithinMs: 200 });
  assert.equal(expiring.isDuplicate, false);
  await assert.rejects(expiring.result, (error) => error.code === 'EXPIRED');
  await lane.resumeLane('jobs');
  // Expired: free.
  const last = await lane.submitWithHandle('jobs', 'job', 'last', { key: 'k' });
  assert.equal(last.isDuplicate, false);
  assert.ok(![done.id, delayed.id, expiring.id].includes(last.id));
  assert.equal(await last.result, 'last');
  assert.deepEqual(ran, ['done', 'last']);
});

test('bad keys are refused at the call; the longest key is taken', async (t) => {
  const { lane, ran, release } = await startedLane(t);
  release();
  for (const [name, key, ErrorClass, message] of BAD_KEYS) {
    await t.test(name, async () => {
      await assert.rejects(lane.submit('jobs', 'job', 1, { key }), refused(ErrorClass, message));
      await assert.rejects(lane.submitWithHandle('jobs', 'job', 1, { key }), refused(ErrorClass, message));
    });
  }
  assert.equal(lane.size, 0);
  assert.deepEqual(ran, []);
  assert.equal(await lane.submit('jobs', 'job', 'longest', { key: 'k'.repeat(512) }), 'longest');
  assert.equal(await lane.submit('jobs', 'job', 'multibyte', { key: 'é'.repeat(256) }), 'multibyte');
  // No key (undefined) is no key: two commands.
  const first = await lane.submitWithHandle('jobs', 'job', 1, { key: undefined });
  const second = await lane.submitWithHandle('jobs', 'job', 2, {});
  assert.notEqual(first.id, second.id);
  assert.equal(second.isDuplicate, false);
  await lane.onIdle();
});

test('a durable Lane keeps a delayed command’s key across a restart', async (t) => {
  const dir = tempDir(t);
  const lanes = { jobs: { priority: 0, maxConcurrency: 1 } };
  const before = new Lane(lanes, { storage: { path: dir } });
  before.handle('job', (payload) => payload);
  await before.start();
  const held = await before.submitWithHandle('jobs', 'job', 'held', { key: 'nightly', delayMs: 3_600_000 });
  assert.equal(held.isDuplicate, false);
  held.result.catch(() => {});
  await before.shutdownNow();

  const lane = new Lane(lanes, { storage: { path: dir } });
  const ran = [];
  lane.handle('job', (payload) => {
    ran.push(payload);
    return payload;
  });
  await lane.start();
  t.after(() => lane.shutdownNow());
  const again = await lane.submitWithHandle('jobs', 'job', 'again', { key: 'nightly' });
  assert.equal(again.isDuplicate, true, 'the key was lost in the restart');
  assert.equal(again.id, held.id);
  const stats = await lane.stats();
  assert.deepEqual([stats.lanes.jobs.delayed, stats.lanes.jobs.pending], [1, 0]);
  // Ended (cancelled), the key is free, in the store too.
  assert.equal(await lane.cancel(held.id), 'cancelled');
  await assert.rejects(again.result, (error) => error.code === 'CANCELLED');
  const fresh = await lane.submitWithHandle('jobs', 'job', 'fresh', { key: 'nightly' });
  assert.equal(fresh.isDuplicate, false);
  assert.equal(await fresh.result, 'fresh');
  assert.deepEqual(ran, ['fresh']);
});

test('a duplicate publishes queue.command.deduplicated and counts in lane.commands.deduplicated', async (t) => {
  const { lane, ran, release } = await startedLane(t, { metrics: true });
  const events = lane.events('queue.command.deduplicated');
  const seen = [];
  const listener = (event) => seen.push(event);
  lane.on('queue.command.deduplicated', listener);
  const first = await lane.submitWithHandle('jobs', 'job', 'first', { key: 'report-4' });
  await waitFor(() => ran.length === 1, 'the first command to run');
  const duplicate = await lane.submitWithHandle('other', 'job', 'second', { key: 'report-4' });
  const { value: event } = await events.next();
  await events.return();
  assert.equal(event.key, 'queue.command.deduplicated');
  assert.deepEqual(event.payload, { laneId: 'jobs', commandId: first.id, commandType: 'job', key: 'report-4' });
  assert.equal(duplicate.id, event.payload.commandId);
  assert.equal(typeof event.timestamp, 'number');
  await waitFor(() => seen.length === 1, 'the listener to get the event');
  lane.off('queue.command.deduplicated', listener);
  release();
  await lane.onIdle();
  const metrics = lane.metrics();
  assert.equal(metrics.counters['lane.commands.deduplicated'], 1);
  assert.equal(metrics.counters['lane.commands.submitted'], 1);
  assert.equal(metrics.lanes.jobs.counters['lane.commands.deduplicated'], 1);
  assert.equal(metrics.lanes.other.counters['lane.commands.deduplicated'], 0);
  assert.match(lane.metricsPrometheus(), /\nlane_commands_deduplicated_total\{lane="jobs"\} 1\n/);
});

test('EVENT_KEYS has queue.command.deduplicated', () => {
  assert.equal(EVENT_KEYS.length, 21);
  assert.equal(EVENT_KEYS[EVENT_KEYS.indexOf('queue.command.expired') + 1], 'queue.command.deduplicated');
});

// --- on Redis -------------------------------------------------------------------------

/** A RedisQueue with LANES and a started RedisWorker running a gate's "job". */
async function redisPair(t) {
  const keyPrefix = uniquePrefix('keys');
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix, lanes: LANES });
  const g = gate();
  const worker = await RedisWorker.start(queue, { slots: 4, handlers: { job: g.job } });
  t.after(async () => {
    g.release();
    await worker.shutdownNow();
    await queue.clear();
  });
  return { queue, keyPrefix, ...g };
}

test('on Redis: a submit with a live key gets the command holding it, from any producer', async (t) => {
  const { queue, keyPrefix, ran, release } = await redisPair(t);
  const first = await queue.submit('jobs', 'job', 'first', { key: 'report-4' });
  assert.equal(first.isDuplicate, false);
  await waitFor(() => ran.length === 1, 'the first command to run');
  const second = await queue.submit('other', 'job', 'second', { key: 'report-4' });
  assert.deepEqual([second.id, second.isDuplicate], [first.id, true]);
  // Another producer on the same queue gets it too.
  const producer = await RedisQueue.connect(redisUrl(), { keyPrefix, lanes: LANES });
  const another = await producer.submit('jobs', 'job', 'third', { key: 'report-4' });
  assert.deepEqual([another.id, another.isDuplicate], [first.id, true]);
  const stats = await queue.stats();
  assert.deepEqual([stats.lanes.jobs.pending, stats.lanes.other.pending], [0, 0]);
  const other = await queue.submit('jobs', 'job', 'other key', { key: 'report-5' });
  assert.equal(other.isDuplicate, false);
  assert.notEqual(other.id, first.id);
  release();
  assert.deepEqual(await Promise.all([first.result, second.result, another.result, other.result]), ['first', 'first', 'first', 'other key']);
  assert.deepEqual(ran.toSorted(), ['first', 'other key']);
});

test('on Redis: a key is free again once its command completed, was cancelled or expired', async (t) => {
  const { queue, ran, release } = await redisPair(t);
  release();
  const done = await queue.submit('jobs', 'job', 'done', { key: 'k' });
  assert.equal(await done.result, 'done');
  const delayed = await queue.submit('jobs', 'job', 'delayed', { key: 'k', delayMs: 3_600_000 });
  assert.equal(delayed.isDuplicate, false);
  assert.notEqual(delayed.id, done.id);
  const again = await queue.submit('jobs', 'job', 'again', { key: 'k' });
  assert.deepEqual([again.id, again.isDuplicate], [delayed.id, true]);
  assert.equal(await queue.cancel(delayed.id), 'cancelled');
  await assert.rejects(delayed.result, (error) => error.code === 'CANCELLED');
  await queue.pauseLane('jobs');
  const expiring = await queue.submit('jobs', 'job', 'expiring', { key: 'k', startWithinMs: 200 });
  assert.equal(expiring.isDuplicate, false);
  await assert.rejects(expiring.result, (error) => error.code === 'EXPIRED');
  await queue.resumeLane('jobs');
  const last = await queue.submit('jobs', 'job', 'last', { key: 'k' });
  assert.equal(last.isDuplicate, false);
  assert.ok(![done.id, delayed.id, expiring.id].includes(last.id));
  assert.equal(await last.result, 'last');
  assert.deepEqual(ran, ['done', 'last']);
});

test('on Redis: bad keys are refused like on a Lane', async (t) => {
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('keys'), lanes: LANES });
  t.after(() => queue.clear());
  for (const [name, key, ErrorClass, message] of BAD_KEYS) {
    await t.test(name, async () => {
      await assert.rejects(queue.submit('jobs', 'job', 1, { key }), refused(ErrorClass, message));
    });
  }
  const stats = await queue.stats();
  assert.equal(stats.totalPending + stats.totalDelayed, 0);
});

test('on Redis: a duplicate publishes queue.command.deduplicated', async (t) => {
  const { queue, ran, release } = await redisPair(t);
  const events = queue.events('queue.command.deduplicated');
  const first = await queue.submit('jobs', 'job', 'first', { key: 'report-4' });
  await waitFor(() => ran.length === 1, 'the first command to run');
  const duplicate = await queue.submit('other', 'job', 'second', { key: 'report-4' });
  const { value: event } = await events.next();
  await events.return();
  assert.equal(event.key, 'queue.command.deduplicated');
  assert.deepEqual(event.payload, { laneId: 'jobs', commandId: first.id, commandType: 'job', key: 'report-4' });
  assert.equal(duplicate.id, first.id);
  release();
  assert.equal(await duplicate.result, 'first');
});
