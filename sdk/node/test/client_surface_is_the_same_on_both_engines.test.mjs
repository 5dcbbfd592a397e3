// `Lane` and `RedisQueue` are one client surface: the same methods, with the same
// signatures and results, doing the same thing. Each behaviour is written once and runs
// on every engine — in process, in process with durable storage, Redis (with a
// RedisWorker) and Redis Cluster: cancel outcomes, a command's state by id, dead letters
// (list, redrive, purge), pause and resume, stats and events. (The Python SDK's test of
// the same stem runs the same behaviours.)
//
// The Redis engines need a Redis server (A3S_LANE_REDIS_URL) and a Redis Cluster
// (A3S_LANE_REDIS_CLUSTER_URLS); without them those tests fail, never skip.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EVENT_KEYS, Lane, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisClusterUrls, redisUrl, uniquePrefix, waitFor } from './support.mjs';

/** The methods both classes get from the client surface. */
const SHARED = [
  'cancel',
  'command',
  'listCommands',
  'stats',
  'pauseLane',
  'resumeLane',
  'pauseGroup',
  'resumeGroup',
  'cancelGroup',
  'groupStatus',
  'groups',
  'deadLetters',
  'redrive',
  'purgeDeadLetters',
  'onSizeLessThan',
  'putSchedule',
  'removeSchedule',
  'schedules',
  'pauseSchedule',
  'resumeSchedule',
  'events',
  'on',
  'off',
];

/** One lane, one command at a time: a second command waits while the first runs. */
const LANES = { jobs: { priority: 0, maxConcurrency: 1 } };

/** An id no engine has given out. */
const UNKNOWN_ID = 2 ** 52;

/**
 * The handlers every engine runs: `echo` returns its payload; `block` runs until it is
 * cancelled (resolving `running` with its id first); `fail` throws until `fixed`.
 */
function handlers(state) {
  return {
    echo: (payload) => payload,
    block: (_payload, ctx) => {
      state.running.resolve(ctx.id);
      return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    },
    fail: ({ n }) => {
      if (!state.fixed) throw new Error(`failed ${n}`);
      return `fixed ${n}`;
    },
  };
}

async function inProcess(t, state, options = {}) {
  const lane = new Lane(LANES, { deadLetterCapacity: 10, ...options });
  for (const [type, handler] of Object.entries(handlers(state))) lane.handle(type, handler);
  await lane.start();
  return { queue: lane, submit: (type, payload) => lane.submitWithHandle('jobs', type, payload), close: () => lane.shutdownNow() };
}

async function onRedis(t, state, connect) {
  const queue = await connect({ keyPrefix: uniquePrefix('surface'), lanes: LANES });
  const worker = await RedisWorker.start(queue, { slots: 1, handlers: handlers(state) });
  const close = async () => {
    await worker.shutdownNow();
    await queue.clear();
  };
  return { queue, submit: (type, payload) => queue.submit('jobs', type, payload), close };
}

const ENGINES = {
  'in process': (t, state) => inProcess(t, state),
  'in process with storage': async (t, state) => {
    const dir = mkdtempSync(join(tmpdir(), 'a3s-lane-surface-'));
    const engine = await inProcess(t, state, { storage: { path: join(dir, 'queue'), sync: 'normal' } });
    return { ...engine, close: async () => (await engine.close(), rmSync(dir, { recursive: true, force: true })) };
  },
  Redis: (t, state) => onRedis(t, state, (options) => RedisQueue.connect(redisUrl(), options)),
  'Redis Cluster': (t, state) => onRedis(t, state, (options) => RedisQueue.connectCluster(redisClusterUrls(), options)),
};

/** A queue of `engine` with the lane `jobs` and the handlers above, closed after the test. */
async function open(t, engine) {
  const state = { running: deferred(), fixed: false };
  const opened = await ENGINES[engine](t, state);
  t.after(opened.close);
  return { ...opened, state };
}

const withCode = (code) => (error) => {
  assert.equal(error.code, code, `${error.code}: ${error.message}`);
  return true;
};

test('Lane and RedisQueue have the same client surface', () => {
  for (const name of SHARED) {
    assert.equal(typeof Lane.prototype[name], 'function', `Lane.${name}`);
    assert.equal(typeof RedisQueue.prototype[name], 'function', `RedisQueue.${name}`);
  }
});

for (const engine of Object.keys(ENGINES)) {
  test(`${engine}: cancel says what it did — cancelled, signalled, already_finished, unknown`, async (t) => {
    const { queue, submit, state } = await open(t, engine);
    const blocker = await submit('block');
    assert.equal(await state.running.promise, blocker.id);
    const waiting = await submit('echo', { n: 1 });

    assert.equal(await queue.cancel(waiting.id), 'cancelled');
    await assert.rejects(waiting.result, withCode('CANCELLED'));
    assert.equal(await blocker.cancel(), 'signalled');
    await assert.rejects(blocker.result, withCode('CANCELLED'));
    assert.equal(await queue.cancel(blocker.id), 'already_finished');
    assert.equal(await waiting.cancel(), 'already_finished');
    assert.equal(await queue.cancel(UNKNOWN_ID), 'unknown');
    await assert.rejects(queue.cancel(-1), withCode('INVALID_ARGUMENT'));
  });

  test(`${engine}: command(id) says where a command is — pending, running, dead_lettered`, async (t) => {
    const { queue, submit, state } = await open(t, engine);
    const blocker = await submit('block');
    await state.running.promise;
    const waiting = await submit('echo', { n: 1 });
    const live = async (id) => {
      const { submittedAt, startedAt, ...status } = await queue.command(id);
      assert.equal(typeof submittedAt, 'number');
      return { ...status, started: startedAt !== null };
    };
    const alive = { finishedAt: null, result: null, error: null };
    assert.deepEqual(await live(blocker.id), { id: blocker.id, laneId: 'jobs', commandType: 'block', state: 'running', attempts: 1, started: true, ...alive });
    assert.deepEqual(await live(waiting.id), { id: waiting.id, laneId: 'jobs', commandType: 'echo', state: 'pending', attempts: 0, started: false, ...alive });
    assert.equal(await queue.command(UNKNOWN_ID), null);
    assert.equal(await blocker.cancel(), 'signalled');
    await assert.rejects(blocker.result, withCode('CANCELLED'));
    assert.deepEqual(await waiting.result, { n: 1 });

    const failed = await submit('fail', { n: 2 });
    await assert.rejects(failed.result, /failed 2/);
    const { finishedAt, error, ...letter } = await queue.command(failed.id);
    assert.deepEqual(letter, { id: failed.id, laneId: 'jobs', commandType: 'fail', state: 'dead_lettered', attempts: 1, submittedAt: letter.submittedAt, startedAt: letter.startedAt, result: null });
    assert.equal(typeof finishedAt, 'number');
    assert.equal(error.kind, 'failed');
    assert.match(error.message, /failed 2/);
  });

  test(`${engine}: dead letters are listed, redriven and purged`, async (t) => {
    const { queue, submit, state } = await open(t, engine);
    assert.deepEqual(await queue.deadLetters(), []);
    const first = await submit('fail', { n: 1 });
    await assert.rejects(first.result, /failed 1/);
    const second = await submit('fail', { n: 2 });
    await assert.rejects(second.result, /failed 2/);

    const letters = await queue.deadLetters();
    assert.deepEqual(
      letters.map(({ commandId, commandType, laneId, attempts, payload }) => ({ commandId, commandType, laneId, attempts, payload })),
      [
        { commandId: first.id, commandType: 'fail', laneId: 'jobs', attempts: 1, payload: { n: 1 } },
        { commandId: second.id, commandType: 'fail', laneId: 'jobs', attempts: 1, payload: { n: 2 } },
      ],
    );
    assert.match(letters[0].error, /failed 1/);
    assert.ok(Math.abs(letters[0].failedAt - Date.now()) < 60_000, `failedAt ${letters[0].failedAt}`);
    assert.deepEqual((await queue.deadLetters(1)).map((letter) => letter.commandId), [first.id]);
    assert.deepEqual(await queue.deadLetters(0), []);

    state.fixed = true;
    const redriven = await queue.redrive(first.id);
    assert.equal(typeof redriven.id, 'number');
    assert.equal(await redriven.result, 'fixed 1');
    assert.deepEqual((await queue.deadLetters()).map((letter) => letter.commandId), [second.id]);
    await assert.rejects(queue.redrive(first.id), withCode('QUEUE'));

    assert.equal(await queue.purgeDeadLetters(), 1);
    assert.deepEqual(await queue.deadLetters(), []);
    assert.equal(await queue.purgeDeadLetters(), 0);
  });

  test(`${engine}: a paused lane starts nothing until resumed, by hand or after durationMs`, async (t) => {
    const { queue, submit } = await open(t, engine);
    await queue.pauseLane('jobs');
    const held = await submit('echo', { n: 1 });
    const stats = await queue.stats();
    assert.equal(stats.totalPending, 1);
    assert.equal(stats.totalActive, 0);
    assert.equal(stats.lanes.jobs.paused, true);
    assert.equal(stats.lanes.jobs.pending, 1);
    assert.equal(stats.lanes.jobs.maxConcurrency, 1);
    assert.equal((await queue.command(held.id)).state, 'pending');
    await queue.resumeLane('jobs');
    assert.deepEqual(await held.result, { n: 1 });
    assert.equal((await queue.stats()).lanes.jobs.paused, false);

    await queue.pauseLane('jobs', 30); // as after an HTTP 429
    const later = await submit('echo', { n: 2 });
    assert.deepEqual(await later.result, { n: 2 }, 'the lane resumed by itself');

    await assert.rejects(queue.pauseLane('nowhere'), withCode('LANE_NOT_FOUND'));
    await assert.rejects(queue.resumeLane('nowhere'), withCode('LANE_NOT_FOUND'));
    await assert.rejects(queue.pauseLane('jobs', 0), withCode('INVALID_ARGUMENT'));
  });

  test(`${engine}: events reach iterators and listeners`, async (t) => {
    const { queue, submit } = await open(t, engine);
    const events = queue.events(['queue.command.submitted', 'queue.command.completed']);
    const completed = deferred();
    const listener = (event) => completed.resolve(event);
    queue.on('queue.command.completed', listener);

    const handle = await submit('echo', { n: 1 });
    assert.deepEqual(await handle.result, { n: 1 });
    const { value: submitted } = await events.next();
    assert.equal(submitted.key, 'queue.command.submitted');
    assert.equal(submitted.payload.commandId, handle.id);
    assert.equal(submitted.payload.laneId, 'jobs');
    const { value: done } = await events.next();
    assert.equal(done.key, 'queue.command.completed');
    assert.equal(done.payload.commandId, handle.id);
    assert.equal((await completed.promise).payload.commandId, handle.id);

    queue.off('queue.command.completed', listener);
    assert.deepEqual(await events.return(), { value: undefined, done: true });
    assert.ok(EVENT_KEYS.includes(submitted.key) && EVENT_KEYS.includes(done.key));
    await waitFor(async () => (await queue.stats()).totalActive === 0, 'the queue to be idle');
  });
}
