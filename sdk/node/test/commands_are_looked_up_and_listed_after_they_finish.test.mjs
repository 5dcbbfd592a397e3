// A command's state and result afterwards: `command(id)` reports a finished command with
// its times (`submittedAt`, `startedAt`, `finishedAt`: milliseconds since the Unix epoch,
// or null) and its `result` or `error` (`{ kind, message, timeoutMs }`); each lane keeps,
// per final state, its last `keepLast` finished commands for at most `keepForMs` (0
// keeps none); `listCommands(lane, state, { offset, limit })` lists a lane's commands in
// one state, a page at a time; bad pages, states and retentions are refused with a clear
// error; and another client (a second RedisQueue on the same prefix, a Lane reopened on
// the same store) reads the result of a command submitted before. (The Python SDK's test
// of the same stem runs the same behaviours.)
//
// Each behaviour is written once and runs on every engine: in process, in process with
// durable storage (and dead letters), Redis and Redis Cluster. The Redis engines need a
// Redis server (A3S_LANE_REDIS_URL) and a Redis Cluster (A3S_LANE_REDIS_CLUSTER_URLS);
// without them those tests fail, never skip.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULTS, Lane, LaneConfigError, LaneInvalidArgumentError, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisClusterUrls, redisUrl, tempDir, uniquePrefix, waitFor } from './support.mjs';

/** `jobs` runs one command at a time; `busy` holds a running command for the listings. */
const LANES = {
  jobs: { priority: 0, maxConcurrency: 1 },
  busy: { priority: 1, maxConcurrency: 1 },
};

/** Clocks of different hosts (Redis' and this one) may differ by a little. */
const SLACK_MS = 1_000;

/**
 * The handlers every engine runs: `echo` returns its payload; `fail` throws; `block`
 * resolves `state.started` with its id and runs until it is cancelled.
 */
function handlers(state) {
  return {
    echo: (payload) => payload,
    fail: (payload) => {
      throw new Error(`out of paper ${JSON.stringify(payload)}`);
    },
    block: (_payload, ctx) => {
      state.started.resolve(ctx.id);
      return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    },
  };
}

/** An in-process engine; with `storage`, durable and with dead letters. */
function inProcess(storage) {
  return async (t, state, lanes) => {
    const path = storage ? join(tempDir(t, 'a3s-lane-kept-'), 'queue') : null;
    const make = () => {
      const lane = path ? new Lane(lanes, { storage: { path, sync: 'normal' }, deadLetterCapacity: 100 }) : new Lane(lanes);
      for (const [type, handler] of Object.entries(handlers(state))) lane.handle(type, handler);
      return lane;
    };
    let lane = make();
    await lane.start();
    return {
      queue: () => lane,
      deadLetters: storage,
      submit: (laneId, type, payload, options) => lane.submitWithHandle(laneId, type, payload, options),
      // Without storage the Lane is the only client an in-process queue has; with it, a
      // new Lane on the same store, once the first one is shut down.
      anotherClient: async () => {
        if (!path) return lane;
        await lane.shutdown();
        lane = make();
        await lane.start();
        return lane;
      },
      close: () => lane.shutdownNow(),
    };
  };
}

function onRedis(connect) {
  return async (_t, state, lanes) => {
    const keyPrefix = uniquePrefix('kept');
    const queue = await connect({ keyPrefix, lanes });
    const worker = await RedisWorker.start(queue, { slots: 4, handlers: handlers(state) });
    return {
      queue: () => queue,
      deadLetters: true,
      submit: (laneId, type, payload, options) => queue.submit(laneId, type, payload, options),
      // A second RedisQueue on the same prefix, declaring no lane.
      anotherClient: () => connect({ keyPrefix }),
      close: async () => {
        await worker.shutdownNow();
        await queue.clear();
      },
    };
  };
}

const ENGINES = {
  'in process': inProcess(false),
  'in process with storage': inProcess(true),
  Redis: onRedis((options) => RedisQueue.connect(redisUrl(), options)),
  'Redis Cluster': onRedis((options) => RedisQueue.connectCluster(redisClusterUrls(), options)),
};

/** A started queue of `engine` with `lanes` and the handlers above, closed after the test. */
async function open(t, engine, lanes = LANES) {
  const state = { started: deferred() };
  const opened = await ENGINES[engine](t, state, lanes);
  t.after(opened.close);
  return { ...opened, state };
}

const ids = (statuses) => statuses.map((status) => status.id);

/** A time of a status: set, a whole number of milliseconds since the Unix epoch. */
function ms(value, what) {
  assert.equal(typeof value, 'number', `${what} is ${value}`);
  assert.ok(Number.isInteger(value) && value > 1.6e12, `${what} is ${value}`);
  return value;
}

const withCode = (code, pattern) => (error) => {
  assert.equal(error.code, code, `${error.code}: ${error.message}`);
  if (pattern) assert.match(error.message, pattern);
  return true;
};

for (const engine of Object.keys(ENGINES)) {
  test(`${engine}: a finished command is looked up with its times and result`, async (t) => {
    const { queue, submit } = await open(t, engine);
    const before = Date.now();
    const payload = { items: [1, 'two', null], ok: true };
    const handle = await submit('jobs', 'echo', payload);
    assert.deepEqual(await handle.result, payload);
    const status = await queue().command(handle.id);
    const { submittedAt, startedAt, finishedAt, ...rest } = status;
    assert.deepEqual(rest, {
      id: handle.id,
      laneId: 'jobs',
      commandType: 'echo',
      state: 'completed',
      attempts: 1,
      result: payload,
      error: null,
    });
    ms(submittedAt, 'submittedAt');
    ms(startedAt, 'startedAt');
    ms(finishedAt, 'finishedAt');
    assert.ok(before - SLACK_MS <= submittedAt && submittedAt <= startedAt + SLACK_MS, JSON.stringify(status));
    assert.ok(startedAt <= finishedAt && finishedAt <= Date.now() + SLACK_MS, JSON.stringify(status));
  });

  test(`${engine}: failed, cancelled and expired commands keep their error`, async (t) => {
    const { queue, submit, deadLetters, state } = await open(t, engine);
    // A failure: the handler threw (no retry policy: the first failure is final).
    const failed = await submit('jobs', 'fail', 7);
    await assert.rejects(failed.result, /out of paper 7/);
    let status = await queue().command(failed.id);
    assert.equal(status.state, deadLetters ? 'dead_lettered' : 'failed');
    assert.equal(status.error?.kind, 'failed', JSON.stringify(status));
    assert.match(status.error.message, /Error: out of paper 7/);
    assert.equal(status.error.timeoutMs, null);
    assert.equal(status.result, null);
    assert.equal(status.attempts, 1);
    ms(status.finishedAt, 'finishedAt');

    // A pending command, cancelled: it never ran.
    await queue().pauseLane('jobs');
    const pending = await submit('jobs', 'echo', 'never');
    assert.equal(await queue().cancel(pending.id), 'cancelled');
    await assert.rejects(pending.result, withCode('CANCELLED'));
    status = await queue().command(pending.id);
    assert.deepEqual([status.state, status.attempts, status.startedAt, status.result], ['cancelled', 0, null, null]);
    assert.equal(status.error?.kind, 'cancelled', JSON.stringify(status));
    assert.ok(ms(status.submittedAt, 'submittedAt') <= ms(status.finishedAt, 'finishedAt') + SLACK_MS);

    // A running command, cancelled: it ran once. Cancelled once it runs (its start seen).
    const running = await submit('busy', 'block');
    assert.equal(await state.started.promise, running.id);
    assert.equal(await queue().cancel(running.id), 'signalled');
    await assert.rejects(running.result, withCode('CANCELLED'));
    status = await queue().command(running.id);
    assert.deepEqual([status.state, status.attempts], ['cancelled', 1], JSON.stringify(status));
    assert.equal(status.error?.kind, 'cancelled');
    assert.ok(ms(status.startedAt, 'startedAt') <= ms(status.finishedAt, 'finishedAt') + SLACK_MS);

    // Not started by its deadline (the lane is still paused): it expired.
    const late = await submit('jobs', 'echo', 'late', { startWithinMs: 200 });
    await assert.rejects(late.result, withCode('EXPIRED'));
    status = await queue().command(late.id);
    assert.deepEqual([status.state, status.attempts, status.startedAt], ['expired', 0, null], JSON.stringify(status));
    assert.equal(status.error?.kind, 'expired');
  });

  test(`${engine}: a lane keeps the last keepLast of each final state`, async (t) => {
    const { queue, submit } = await open(t, engine, { jobs: { priority: 0, keepLast: 2 } });
    const done = [];
    for (const name of ['a', 'b', 'c']) {
      const handle = await submit('jobs', 'echo', name);
      assert.equal(await handle.result, name);
      done.push(handle.id);
    }
    // A cancelled command is kept in a list of its own: it evicts no completed one.
    await queue().pauseLane('jobs');
    const cancelled = await submit('jobs', 'echo', 'd');
    assert.equal(await queue().cancel(cancelled.id), 'cancelled');
    await assert.rejects(cancelled.result, withCode('CANCELLED'));

    const completed = await queue().listCommands('jobs', 'completed');
    assert.deepEqual(ids(completed), [done[2], done[1]], 'the newest two, newest first');
    assert.deepEqual(
      completed.map((status) => [status.state, status.result]),
      [
        ['completed', 'c'],
        ['completed', 'b'],
      ],
    );
    assert.equal(await queue().command(done[0]), null, 'the oldest was let go');
    assert.deepEqual(ids(await queue().listCommands('jobs', 'cancelled')), [cancelled.id]);
    assert.deepEqual(await queue().listCommands('jobs', 'failed'), []);
  });

  test(`${engine}: a lane with keepLast 0 keeps nothing; keepForMs bounds how long`, async (t) => {
    const { queue, submit } = await open(t, engine, {
      jobs: { priority: 0, keepLast: 0 },
      brief: { priority: 1, keepForMs: 400 },
    });
    const handle = await submit('jobs', 'echo', 'a');
    assert.equal(await handle.result, 'a', 'its submitter still gets the result');
    assert.equal(await queue().command(handle.id), null);
    assert.deepEqual(await queue().listCommands('jobs', 'completed'), []);

    // Kept for keepForMs, then gone.
    const brief = await submit('brief', 'echo', 'b');
    assert.equal(await brief.result, 'b');
    const kept = await queue().command(brief.id);
    assert.equal(kept?.result, 'b');
    assert.deepEqual(ids(await queue().listCommands('brief', 'completed')), [brief.id]);
    await waitFor(async () => (await queue().command(brief.id)) === null, 'the command to be let go after keepForMs', 10_000);
    assert.ok(Date.now() - kept.finishedAt >= 400 - SLACK_MS, 'not before keepForMs');
    assert.deepEqual(await queue().listCommands('brief', 'completed'), []);
  });

  test(`${engine}: commands are listed by lane and state, in order, a page at a time`, async (t) => {
    const { queue, submit, state } = await open(t, engine);
    const running = await submit('busy', 'block');
    assert.equal(await state.started.promise, running.id);
    await queue().pauseLane('jobs');
    const pending = [];
    for (let n = 0; n < 5; n++) pending.push((await submit('jobs', 'echo', n)).id);
    const later = await submit('jobs', 'echo', 'later', { delayMs: 60_000 });
    const sooner = await submit('jobs', 'echo', 'sooner', { delayMs: 30_000 });

    // Pending: in the order they will start; a page at a time.
    const list = (laneId, listed, options) => queue().listCommands(laneId, listed, options).then(ids);
    assert.deepEqual(await list('jobs', 'pending'), pending);
    assert.deepEqual(await list('jobs', 'pending', { limit: 2 }), pending.slice(0, 2));
    assert.deepEqual(await list('jobs', 'pending', { offset: 2, limit: 2 }), pending.slice(2, 4));
    assert.deepEqual(await list('jobs', 'pending', { offset: 4, limit: 2 }), pending.slice(4));
    assert.deepEqual(await list('jobs', 'pending', { offset: 10 }), []);
    assert.deepEqual(await list('jobs', 'pending', {}), pending);
    const [first] = await queue().listCommands('jobs', 'pending', { limit: 1 });
    assert.deepEqual(
      [first.laneId, first.commandType, first.state, first.attempts, first.startedAt, first.finishedAt, first.result, first.error],
      ['jobs', 'echo', 'pending', 0, null, null, null, null],
    );
    ms(first.submittedAt, 'submittedAt');
    // Delayed: by due time.
    assert.deepEqual(await list('jobs', 'delayed'), [sooner.id, later.id]);
    // Running: by start, in their own lane only.
    const [busy] = await queue().listCommands('busy', 'running');
    assert.deepEqual([busy.id, busy.state, busy.attempts], [running.id, 'running', 1]);
    ms(busy.startedAt, 'startedAt');
    assert.deepEqual(await list('jobs', 'running'), []);
    assert.deepEqual(await list('busy', 'pending'), []);

    for (const handle of [sooner, later, running]) await handle.cancel();
    await queue().resumeLane('jobs');
    await waitFor(async () => {
      const stats = await queue().stats();
      return stats.totalPending + stats.totalActive + stats.totalDelayed === 0;
    }, 'the lanes to empty');
    assert.deepEqual(await list('jobs', 'completed'), [...pending].reverse(), 'newest first');
    assert.deepEqual(await list('jobs', 'completed', { offset: 1, limit: 3 }), pending.slice(1, 4).reverse());
    assert.deepEqual(await list('jobs', 'cancelled'), [later.id, sooner.id]);
  });

  test(`${engine}: bad pages, states and lanes are refused with a clear error`, async (t) => {
    const { queue } = await open(t, engine);
    const invalid = (ErrorClass, pattern) => (error) => {
      assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
      assert.ok(error instanceof LaneInvalidArgumentError);
      return withCode('INVALID_ARGUMENT', pattern)(error);
    };
    for (const limit of [0, 1001]) {
      await assert.rejects(
        queue().listCommands('jobs', 'pending', { limit }),
        invalid(RangeError, new RegExp(`options\\.limit: a page limit of ${limit} is outside 1\\.\\.=1000`)),
      );
    }
    await assert.rejects(queue().listCommands('jobs', 'pending', { limit: 2.5 }), invalid(RangeError, /options\.limit must be a whole number, got 2\.5/));
    await assert.rejects(queue().listCommands('jobs', 'pending', { limit: NaN }), invalid(RangeError, /options\.limit must be a finite number, got NaN/));
    await assert.rejects(queue().listCommands('jobs', 'pending', { offset: -1 }), invalid(RangeError, /options\.offset must be between 0 and/));
    await assert.rejects(queue().listCommands('jobs', 'pending', { limit: '10' }), invalid(TypeError, /options\.limit must be a number, got the string "10"/));
    await assert.rejects(queue().listCommands('jobs', 'pending', { page: 2 }), invalid(TypeError, /options: unknown option 'page'; known options: offset, limit/));
    await assert.rejects(queue().listCommands('jobs', 'pending', 5), invalid(TypeError, /options must be an object like \{ offset: 0, limit: 100 \}/));
    await assert.rejects(
      queue().listCommands('jobs', 'finished'),
      invalid(RangeError, /state: unknown command state 'finished'; one of: pending, delayed, running, completed, failed/),
    );
    await assert.rejects(queue().listCommands('jobs', 3), invalid(TypeError, /state must be a string, got 3/));
    await assert.rejects(queue().listCommands('', 'pending'), invalid(RangeError, /laneId must not be empty/));
    await assert.rejects(queue().listCommands('nowhere', 'completed'), withCode('LANE_NOT_FOUND', /nowhere/));
    // The largest page is allowed.
    assert.deepEqual(await queue().listCommands('jobs', 'completed', { limit: 1000 }), []);
  });

  test(`${engine}: another client reads the result of a command submitted before`, async (t) => {
    const opened = await open(t, engine);
    const handle = await opened.submit('jobs', 'echo', { report: 'ready' });
    const id = handle.id;
    assert.deepEqual(await handle.result, { report: 'ready' });
    const other = await opened.anotherClient();
    const status = await other.command(id);
    assert.deepEqual([status?.state, status?.result, status?.laneId], ['completed', { report: 'ready' }, 'jobs']);
    ms(status.finishedAt, 'finishedAt');
    assert.deepEqual(ids(await other.listCommands('jobs', 'completed')), [id]);
  });
}

test('Redis: a second RedisQueue reads the result of a command submitted before it connected, never awaited', async (t) => {
  const keyPrefix = uniquePrefix('kept-late');
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix, lanes: LANES });
  let worker = null;
  t.after(async () => {
    await worker?.shutdownNow();
    await queue.clear();
  });
  // Submitted with no worker running: nobody awaits its result here.
  const { id } = await queue.submit('jobs', 'echo', { n: 42 });
  const other = await RedisQueue.connect(redisUrl(), { keyPrefix });
  assert.equal((await other.command(id))?.state, 'pending');
  worker = await RedisWorker.start(queue, { slots: 1, handlers: { echo: (payload) => payload } });
  await waitFor(async () => (await other.command(id))?.state === 'completed', 'the command to complete');
  const status = await other.command(id);
  assert.deepEqual([status.result, status.error, status.attempts], [{ n: 42 }, null, 1]);
});

test('in process: a timed-out command keeps its timeout', async (t) => {
  const lane = new Lane({ jobs: { priority: 0, timeoutMs: 100 } });
  t.after(() => lane.shutdownNow());
  // It stops when its signal aborts at the timeout (so it gives its slot back).
  lane.handle('slow', (_payload, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)));
  await lane.start();
  const handle = await lane.submitWithHandle('jobs', 'slow');
  await assert.rejects(handle.result, withCode('TIMEOUT'));
  const status = await lane.command(handle.id);
  assert.equal(status.state, 'failed');
  assert.deepEqual([status.error.kind, status.error.timeoutMs], ['timeout', 100], JSON.stringify(status));
  assert.equal(typeof status.error.message, 'string');
});

test('retention is a lane option: keepLast and keepForMs, with the core defaults', async (t) => {
  assert.equal(DEFAULTS.lane.keep_last, 1000);
  assert.equal(DEFAULTS.lane.keep_for_ms, 24 * 3600 * 1000);
  // With no option a lane keeps DEFAULTS.lane.keep_last of each final state.
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 4 } });
  t.after(() => lane.shutdownNow());
  lane.handle('echo', (payload) => payload);
  await lane.start();
  const handles = [];
  for (let n = 0; n < DEFAULTS.lane.keep_last + 5; n++) handles.push(await lane.submitWithHandle('jobs', 'echo', n));
  await Promise.all(handles.map((handle) => handle.result));
  const kept = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await lane.listCommands('jobs', 'completed', { offset, limit: 1000 });
    kept.push(...page);
    if (page.length < 1000) break;
  }
  assert.equal(kept.length, DEFAULTS.lane.keep_last);
  assert.equal(await lane.command(handles[4].id), null);
  assert.equal((await lane.command(handles[5].id))?.result, 5);
  // The default page is 100 commands.
  assert.equal((await lane.listCommands('jobs', 'completed')).length, 100);
});

test('bad retentions are refused with a clear error, never clamped', () => {
  const refused = (options, ErrorClass, pattern) =>
    assert.throws(
      () => new Lane({ jobs: { priority: 0, ...options } }),
      (error) => {
        assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
        assert.ok(error instanceof LaneConfigError);
        return withCode('CONFIG', pattern)(error);
      },
      JSON.stringify(options),
    );
  refused({ keepLast: -1 }, RangeError, /lanes\.jobs\.keepLast must be between 0 and 4294967295, got -1/);
  refused({ keepLast: 1.5 }, RangeError, /lanes\.jobs\.keepLast must be a whole number, got 1\.5/);
  refused({ keepLast: NaN }, RangeError, /lanes\.jobs\.keepLast must be a finite number, got NaN/);
  refused({ keepLast: 2 ** 32 }, RangeError, /lanes\.jobs\.keepLast must be between 0 and 4294967295, got 4294967296/);
  refused({ keepLast: 1_000_001 }, RangeError, /lane 'jobs': keepLast 1000001 is more than 1000000/);
  refused({ keepLast: '10' }, TypeError, /lanes\.jobs\.keepLast must be a number, got the string "10"/);
  refused({ keepForMs: -1 }, RangeError, /lanes\.jobs\.keepForMs must be 0 or more, got -1/);
  refused({ keepForMs: NaN }, RangeError, /lanes\.jobs\.keepForMs must be a finite number, got NaN/);
  refused({ keepForMs: Infinity }, RangeError, /lanes\.jobs\.keepForMs must be a finite number, got Infinity/);
  refused({ keepForMs: 0 }, RangeError, /lane 'jobs': keepForMs .* is shorter than 1 ms; use keepLast: 0 to keep nothing/);
  refused({ keepForMs: 366 * 24 * 3600 * 1000 }, RangeError, /lane 'jobs': keepForMs .* is longer than a year/);
  refused({ keepLast: 0, keepForMs: 0 }, RangeError, /keepForMs/);
  refused({ keepFor: 60_000 }, TypeError, /unknown option 'keepFor'; known options: .*keepLast, keepForMs/);
  // The bounds themselves are allowed, as given.
  new Lane({ jobs: { priority: 0, keepLast: 1_000_000, keepForMs: 365 * 24 * 3600 * 1000 } });
  new Lane({ jobs: { priority: 0, keepLast: 0, keepForMs: 1 } });
});

test('Redis: bad retentions are refused when the lane is declared', async () => {
  await assert.rejects(
    RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('kept-bad'), lanes: { jobs: { priority: 0, keepForMs: 0 } } }),
    withCode('CONFIG', /keepForMs/),
  );
  await assert.rejects(
    RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('kept-bad'), lanes: { jobs: { priority: 0, keepLast: -1 } } }),
    withCode('CONFIG', /lanes\.jobs\.keepLast must be between 0/),
  );
});
