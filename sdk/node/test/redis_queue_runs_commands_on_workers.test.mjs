// A RedisQueue submits commands into Redis; a RedisWorker (here in the same process)
// runs them with JavaScript handlers, with a Lane's semantics: results and thrown errors
// reach the submitter, ctx.signal aborts on cancel and timeout, lanes keep priority and
// FIFO order, caps and rate limits hold. Lanes take a Lane's lane options: their
// timeout, cancel grace and retry policy are kept in Redis and every worker runs them.
// Needs Redis (A3S_LANE_REDIS_URL); each test uses its own key prefix and clears it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisUrl, sleep, uniquePrefix, waitFor } from './support.mjs';

/** A queue with its own prefix, cleared (and its workers stopped) after the test. */
async function connect(t, lanes, options = {}) {
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('queue'), lanes, ...options });
  const workers = [];
  t.after(async () => {
    for (const worker of workers) await worker.shutdownNow();
    await queue.clear();
  });
  const start = async (workerOptions) => {
    const worker = await RedisWorker.start(queue, workerOptions);
    workers.push(worker);
    return worker;
  };
  return { queue, start };
}

const code = (expected) => (error) => {
  assert.equal(error.code, expected, `${error.code}: ${error.message}`);
  return true;
};

test('a submitted command runs on a worker and its result comes back', async (t) => {
  const { queue, start } = await connect(t, { api: { priority: 0, maxConcurrency: 4 } });
  assert.match(queue.keyPrefix, /^\{node-queue-/);
  const worker = await start({
    slots: 2,
    handlers: {
      echo: (payload, ctx) => ({ payload, lane: ctx.lane, attempt: ctx.attempt, id: ctx.id }),
      later: async ({ n }) => {
        await sleep(1);
        return n * 2;
      },
    },
  });
  assert.equal(typeof worker.id, 'string');
  assert.equal(worker.isRunning, true);

  const handle = await queue.submit('api', 'echo', { url: 'https://example.com' });
  assert.equal(typeof handle.id, 'number');
  assert.deepEqual(await handle.result, { payload: { url: 'https://example.com' }, lane: 'api', attempt: 1, id: handle.id });
  const doubled = await Promise.all([1, 2, 3].map(async (n) => (await queue.submit('api', 'later', { n })).result));
  assert.deepEqual(doubled, [2, 4, 6]);
  // A string is a string, not JSON text to parse.
  assert.equal(await (await queue.submit('api', 'echo', '"quoted"')).result.then((r) => r.payload), '"quoted"');

  const stats = await queue.stats();
  assert.equal(stats.counters.submitted, 5);
  assert.equal(stats.counters.completed, 5);
  assert.equal(stats.workers, 1);
  // A Lane's LaneStatus: a Redis lane reserves no slots (minConcurrency 0).
  assert.deepEqual(stats.lanes.api, { id: 'api', priority: 0, effectivePriority: 0, pending: 0, active: 0, minConcurrency: 0, maxConcurrency: 4, paused: false, throttled: false, delayed: 0, expired: 0, rejectedFull: 0, maxWaiting: null, abandoned: 0, abandonedRunning: 0 });
  await worker.shutdown(10_000);
  assert.equal(worker.isRunning, false);
  assert.equal(worker.running, 0);
  assert.equal((await queue.stats()).workers, 0, 'a worker that shut down left the queue');
  await worker.shutdown(10_000); // again: already done
  assert.equal(await worker.shutdownNow(), 0);
});

test('workers take commands by lane priority, FIFO within a lane', async (t) => {
  const { queue, start } = await connect(t, {
    high: { priority: 0, maxConcurrency: 8 },
    low: { priority: 5, maxConcurrency: 8 },
  });
  const handles = [];
  for (const n of [1, 2, 3]) handles.push(await queue.submit('low', 'record', { name: `low-${n}` }));
  for (const n of [1, 2, 3]) handles.push(await queue.submit('high', 'record', { name: `high-${n}` }));
  assert.equal((await queue.stats()).totalPending, 6);
  const order = [];
  // One slot: the worker claims one command at a time, always the most urgent.
  await start({ slots: 1, handlers: { record: ({ name }) => order.push(name) } });
  await Promise.all(handles.map((handle) => handle.result));
  assert.deepEqual(order, ['high-1', 'high-2', 'high-3', 'low-1', 'low-2', 'low-3']);
});

test('a lane with a priorityBoost overtakes a busier, more urgent lane once its head has waited', async (t) => {
  const { queue, start } = await connect(t, {
    urgent: { priority: 1, maxConcurrency: 1 },
    // Priority 0 once its oldest command has waited 300 ms, ahead of urgent's 1.
    batch: { priority: 5, maxConcurrency: 1, priorityBoost: { deadlineMs: 300 } },
    // Boosted by 4 from the start (for an hour): 5 - 4 = 1 only ties urgent, which keeps
    // its turns as the lane configured more urgent.
    tied: { priority: 5, maxConcurrency: 1, priorityBoost: { deadlineMs: 3_600_000, steps: [{ beforeDeadlineMs: 3_600_000, boost: 4 }] } },
  });
  assert.equal((await queue.stats()).lanes.batch.effectivePriority, 5, 'nothing waits yet');
  const handles = [];
  for (let n = 0; n < 40; n++) handles.push(await queue.submit('urgent', 'record', { name: 'urgent', ms: 20 }));
  handles.push(await queue.submit('tied', 'record', { name: 'tied', ms: 0 }));
  handles.push(await queue.submit('batch', 'record', { name: 'batch', ms: 0 }));
  assert.equal((await queue.stats()).lanes.tied.effectivePriority, 1);
  await waitFor(async () => (await queue.stats()).lanes.batch.effectivePriority === 0, 'the batch lane past its deadline', 60_000);
  const order = [];
  await start({
    slots: 1,
    handlers: {
      record: async ({ name, ms }) => {
        order.push(name);
        await sleep(ms);
      },
    },
  });
  await Promise.all(handles.map((handle) => handle.result));
  assert.equal(order[0], 'batch', order.join(' '));
  assert.equal(order.at(-1), 'tied', order.join(' '));
  await assert.rejects(
    queue.declareLane('bad', { priority: 1, maxConcurrency: 1, priorityBoost: { deadlineMs: 0.0001 } }),
    (error) => error instanceof RangeError && error.code === 'CONFIG' && /resolution of 1µs/.test(error.message),
  );
  await assert.rejects(
    queue.declareLane('bad', { priority: 1, maxConcurrency: 1, priorityBoost: { standard: 'soon' } }),
    (error) => error instanceof TypeError && error.code === 'CONFIG' && /options\.priorityBoost\.standard/.test(error.message),
  );
});

test('cancelling a running command aborts its ctx.signal on the worker', async (t) => {
  const { queue, start } = await connect(t, { work: { priority: 0, maxConcurrency: 2 } });
  const running = deferred();
  let reason;
  await start({
    handlers: {
      wait: (_payload, ctx) => {
        running.resolve();
        return new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            reason = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        });
      },
    },
  });
  const handle = await queue.submit('work', 'wait');
  await running.promise;
  assert.equal(await handle.cancel(), 'signalled');
  await assert.rejects(handle.result, code('CANCELLED'));
  assert.equal(reason.code, 'CANCELLED');
  assert.equal(await handle.cancel(), 'already_finished');
  assert.equal(await queue.cancel(987_654_321), 'unknown');
  assert.equal((await queue.stats()).counters.cancelled, 1);
});

test('cancelling a pending command, or aborting its signal, ends it before it runs', async (t) => {
  const { queue } = await connect(t, { work: { priority: 0, maxConcurrency: 1 } });
  const handle = await queue.submit('work', 'never');
  assert.equal(await queue.cancel(handle.id), 'cancelled');
  await assert.rejects(handle.result, code('CANCELLED'));

  const controller = new AbortController();
  const watched = await queue.submit('work', 'never', null, { signal: controller.signal });
  controller.abort(new Error('user left'));
  await assert.rejects(watched.result, (error) => {
    assert.equal(error.code, 'CANCELLED');
    assert.equal(error.cause.message, 'user left');
    return true;
  });
  const aborted = AbortSignal.abort();
  await assert.rejects(queue.submit('work', 'never', null, { signal: aborted }), code('CANCELLED'));
  assert.equal((await queue.stats()).totalPending, 0);
});

test('a thrown error reaches the submitter; retries and dead letters follow the lane options', async (t) => {
  const { queue, start } = await connect(t, { work: { priority: 0, maxConcurrency: 2, retry: { maxRetries: 2, initialDelayMs: 1 } } });
  let flakyCalls = 0;
  await start({
    handlers: {
      boom: () => {
        throw new Error('boom from the worker');
      },
      final: async () => {
        const error = new Error('do not retry me');
        error.retryable = false;
        throw error;
      },
      flaky: (_payload, ctx) => {
        flakyCalls += 1;
        if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
        return `ok on attempt ${ctx.attempt}`;
      },
    },
  });
  const boom = await queue.submit('work', 'boom', { n: 1 });
  await assert.rejects(boom.result, (error) => {
    assert.equal(error.code, 'COMMAND_FAILED');
    assert.match(error.message, /boom from the worker/);
    return true;
  });
  const final = await queue.submit('work', 'final');
  await assert.rejects(final.result, (error) => {
    assert.equal(error.code, 'COMMAND_FAILED');
    assert.match(error.message, /not retryable.*do not retry me/s);
    return true;
  });
  assert.equal(await (await queue.submit('work', 'flaky')).result, 'ok on attempt 3');
  assert.equal(flakyCalls, 3);

  const letters = await queue.deadLetters();
  assert.deepEqual(
    letters.map((letter) => [letter.commandId, letter.commandType, letter.laneId, letter.attempts]),
    [
      [boom.id, 'boom', 'work', 3],
      [final.id, 'final', 'work', 1],
    ],
  );
  assert.deepEqual(letters[0].payload, { n: 1 });
  assert.match(letters[0].error, /boom from the worker/);
  assert.equal((await queue.deadLetters(1)).length, 1);

  const redriven = await queue.redrive(final.id);
  await assert.rejects(redriven.result, code('COMMAND_FAILED'));
  await assert.rejects(queue.submit('work', 'unknown_type').then((handle) => handle.result), code('HANDLER_NOT_FOUND'));
});

test("a run past its lane's timeout rejects with TIMEOUT and aborts its signal", async (t) => {
  const { queue, start } = await connect(t, { slow: { priority: 0, maxConcurrency: 1, timeoutMs: 30 }, other: { priority: 0, maxConcurrency: 1 } });
  let reason;
  const hang = (_payload, ctx) =>
    new Promise((_resolve, reject) =>
      ctx.signal.addEventListener('abort', () => {
        reason = ctx.signal.reason;
        reject(ctx.signal.reason);
      }),
    );
  await start({ handlers: { hang } });
  const handle = await queue.submit('slow', 'hang');
  await assert.rejects(handle.result, code('TIMEOUT'));
  await waitFor(() => reason !== undefined, 'the handler to see its signal abort');
  assert.equal(reason.code, 'TIMEOUT');
  assert.match(reason.message, /timed out after 30ms/);
});

test('a lane rate limit holds over the workers: at most 2 of 4 start within the hour', async (t) => {
  const { queue, start } = await connect(t, { limited: { priority: 0, maxConcurrency: 10, rateLimit: { perHour: 2 } } });
  let started = 0;
  const handles = [];
  for (let n = 0; n < 4; n++) handles.push(await queue.submit('limited', 'job'));
  const handlers = {
    job: () => {
      started += 1;
    },
  };
  await start({ slots: 4, handlers });
  await start({ slots: 4, handlers });
  await Promise.all(handles.slice(0, 2).map((handle) => handle.result));
  await waitFor(async () => (await queue.stats()).lanes.limited.throttled, 'the lane to be throttled');
  assert.equal(started, 2);
  const stats = await queue.stats();
  assert.equal(stats.lanes.limited.pending, 2);
  assert.equal(stats.counters.completed, 2);
  assert.equal(stats.workers, 2);
  // The two held back never ran: cancel them (a pending result keeps the process alive).
  for (const handle of handles.slice(2)) assert.equal(await handle.cancel(), 'cancelled');
  await Promise.all(handles.slice(2).map((handle) => assert.rejects(handle.result, code('CANCELLED'))));
  assert.equal(started, 2);
});

test('pausing a lane stops claims until it resumes, by hand or after durationMs', async (t) => {
  const { queue, start } = await connect(t, { work: { priority: 0, maxConcurrency: 4 } });
  await start({ handlers: { job: () => 'ran' } });
  await queue.pauseLane('work');
  const handle = await queue.submit('work', 'job');
  const stats = await queue.stats();
  assert.equal(stats.lanes.work.paused, true);
  assert.equal(stats.lanes.work.pending, 1);
  await queue.resumeLane('work');
  assert.equal(await handle.result, 'ran');

  await queue.pauseLane('work', 50); // as after an HTTP 429
  const later = await queue.submit('work', 'job');
  assert.equal(await later.result, 'ran', 'the lane resumed by itself');
  await assert.rejects(queue.pauseLane('nowhere'), code('LANE_NOT_FOUND'));
});

test('lanes can be declared after connecting, and unknown lanes are refused', async (t) => {
  const { queue, start } = await connect(t, undefined);
  await assert.rejects(queue.submit('late', 'job'), (error) => {
    assert.equal(error.code, 'LANE_NOT_FOUND');
    assert.ok(error instanceof RangeError);
    return true;
  });
  await queue.declareLane('late', { priority: 3, maxConcurrency: 1, rateLimit: { perSecond: 100 } });
  await start({ handlers: { job: () => 'declared' } });
  assert.equal(await (await queue.submit('late', 'job')).result, 'declared');
  assert.equal((await queue.stats()).lanes.late.priority, 3);
});

test('options and arguments are checked; async methods reject instead of throwing', async (t) => {
  const invalid = (ErrorClass, errorCode, pattern) => (error) => {
    assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
    assert.equal(error.code, errorCode);
    assert.match(error.message, pattern);
    return true;
  };
  const url = redisUrl();
  await assert.rejects(RedisQueue.connect(42), invalid(TypeError, 'CONFIG', /url must be a string like 'redis:\/\/127\.0\.0\.1:6379', got 42/));
  await assert.rejects(RedisQueue.connect('not a url'), invalid(RangeError, 'CONFIG', /invalid Redis URL/));
  await assert.rejects(RedisQueue.connect(url, { keyPrefix: 'a{b' }), invalid(RangeError, 'CONFIG', /key prefix 'a\{b' must be non-empty and without braces/));
  await assert.rejects(RedisQueue.connect(url, { lanes: { x: { maxConcurrency: 1 } } }), invalid(TypeError, 'CONFIG', /options\.lanes\.x\.priority is required/));
  await assert.rejects(RedisQueue.connect(url, { lanes: { x: { priority: 1, maxConcurrency: 1, rateLimit: { perSecond: 0 } } } }), invalid(RangeError, 'CONFIG', /lane 'x': rate limit: a rate of 0 commands per 1s would never start a command/));
  await assert.rejects(RedisQueue.connect(url, { lanes: { x: { priority: 1, retry: { maxRetries: 1, jitter: 'x' } } } }), invalid(RangeError, 'CONFIG', /options\.lanes\.x\.retry\.jitter: .*retry jitter 'x' is not one of none, full, equal/));
  await assert.rejects(RedisQueue.connect(url, { lanes: { x: { priority: 1, pressureThreshold: 5 } } }), invalid(RangeError, 'CONFIG', /lane 'x': pressure_threshold is not supported by the Redis engine/));
  await assert.rejects(RedisQueue.connect(url, { lane: {} }), invalid(TypeError, 'CONFIG', /unknown option 'lane'; known options: lanes, keyPrefix, resultTtlMs, responseTimeoutMs/));
  await assert.rejects(RedisQueue.connect('redis://127.0.0.1:1', { responseTimeoutMs: 2000 }), code('STORAGE'));

  const { queue } = await connect(t, { work: { priority: 0, maxConcurrency: 1 } });
  await assert.rejects(RedisWorker.start({}, {}), invalid(TypeError, 'INVALID_ARGUMENT', /queue must be a RedisQueue/));
  await assert.rejects(RedisWorker.start(queue, { slots: 0 }), invalid(RangeError, 'CONFIG', /slots must be at least 1/));
  await assert.rejects(RedisWorker.start(queue, { slots: 1.5 }), invalid(RangeError, 'CONFIG', /options\.slots must be a whole number, got 1\.5/));
  await assert.rejects(RedisWorker.start(queue, { handlers: { job: 'nope' } }), invalid(TypeError, 'CONFIG', /options\.handlers\.job must be a function, got the string "nope"/));
  await assert.rejects(RedisWorker.start(queue, { leaseTtlMs: 50 }), invalid(RangeError, 'CONFIG', /lease_ttl 50ms is too short/));
  // How a lane runs is the lane's (declared with the queue), not the worker's: the
  // worker options that said it are refused, not ignored.
  await assert.rejects(RedisWorker.start(queue, { lanes: { work: { timeoutMs: 5 } } }), invalid(TypeError, 'CONFIG', /unknown option 'lanes'; known options: handlers, slots, workerId, leaseTtlMs, heartbeatIntervalMs, blockTimeoutMs/));
  await assert.rejects(RedisWorker.start(queue, { retry: { maxRetries: 1 } }), invalid(TypeError, 'CONFIG', /unknown option 'retry'/));
  await assert.rejects(RedisWorker.start(queue, { timeoutMs: 5 }), invalid(TypeError, 'CONFIG', /unknown option 'timeoutMs'/));
  await assert.rejects(RedisWorker.start(queue, { cancelGraceMs: 5 }), invalid(TypeError, 'CONFIG', /unknown option 'cancelGraceMs'/));

  await assert.rejects(queue.submit(7, 'job'), invalid(TypeError, 'INVALID_ARGUMENT', /lane must be a string, got 7/));
  await assert.rejects(queue.submit('work', ''), invalid(RangeError, 'INVALID_ARGUMENT', /commandType must not be empty/));
  await assert.rejects(queue.submit('work', 'job', () => {}), invalid(TypeError, 'NOT_JSON', /^payload is not JSON: a function/));
  await assert.rejects(queue.submit('work', 'job', { at: [NaN] }), invalid(TypeError, 'NOT_JSON', /^payload\.at\[0\] is not JSON: the number NaN/));
  await assert.rejects(queue.submit('work', 'job', {}, { signal: 1 }), invalid(TypeError, 'INVALID_ARGUMENT', /options\.signal must be an AbortSignal/));
  await assert.rejects(queue.cancel(-1), invalid(RangeError, 'INVALID_ARGUMENT', /commandId must be a whole number/));
  await assert.rejects(queue.deadLetters(-1), invalid(RangeError, 'INVALID_ARGUMENT', /limit must be between 0 and 9007199254740991, got -1/));
  assert.deepEqual(await queue.deadLetters(0), []);
  await assert.rejects(queue.pauseLane('work', 0), invalid(RangeError, 'INVALID_ARGUMENT', /durationMs: .*a timed pause must be longer than zero/));
  await assert.rejects(queue.pauseLane('work', -1), invalid(RangeError, 'INVALID_ARGUMENT', /durationMs must be 0 or more, got -1/));
  await assert.rejects(queue.declareLane('x', { maxConcurrency: 1 }), invalid(TypeError, 'CONFIG', /options\.priority is required/));

  const worker = await RedisWorker.start(queue, {});
  assert.throws(() => worker.handle('job', 5), invalid(TypeError, 'INVALID_ARGUMENT', /the handler of 'job' must be a function, got 5/));
  await assert.rejects(worker.shutdown(-1), invalid(RangeError, 'INVALID_ARGUMENT', /timeoutMs must be 0 or more, got -1/));
  worker.handle('job', () => 'registered later');
  assert.equal(await (await queue.submit('work', 'job')).result, 'registered later');
  await worker.shutdown();
});

test('shutdown(timeoutMs) hands back what did not finish and rejects with TIMEOUT', async (t) => {
  const { queue, start } = await connect(t, { work: { priority: 0, maxConcurrency: 2, cancelGraceMs: 10 } });
  const running = deferred();
  let aborted = false;
  const stuck = await start({
    handlers: {
      hang: (_payload, ctx) => {
        running.resolve();
        return new Promise((_resolve, reject) =>
          ctx.signal.addEventListener('abort', () => {
            aborted = true;
            reject(ctx.signal.reason);
          }),
        );
      },
    },
  });
  const handle = await queue.submit('work', 'hang');
  await running.promise;
  await assert.rejects(stuck.shutdown(20), (error) => {
    assert.equal(error.code, 'TIMEOUT');
    assert.match(error.message, /did not finish within 20ms; they were cancelled and handed back to the queue/);
    return true;
  });
  assert.equal(aborted, true);
  // Handed back: another worker runs it.
  await start({ handlers: { hang: () => 'second worker' } });
  assert.equal(await handle.result, 'second worker');
});

test('progress a handler reports on a worker reaches queue.events() in order', async (t) => {
  const { queue, start } = await connect(t, { jobs: { priority: 0, maxConcurrency: 2 } });
  const steps = [deferred(), deferred(), deferred()];
  await start({
    slots: 2,
    handlers: {
      steps: async (_payload, ctx) => {
        for (const [i, step] of steps.entries()) {
          await step.promise;
          ctx.reportProgress({ step: i + 1 });
        }
        return 'done';
      },
    },
  });
  const events = queue.events('queue.command.progress');
  const handle = await queue.submit('jobs', 'steps', null);
  for (const [i, step] of steps.entries()) {
    step.resolve();
    const { value, done } = await events.next();
    assert.equal(done, false);
    assert.equal(value.key, 'queue.command.progress');
    assert.deepEqual(value.payload, { laneId: 'jobs', commandId: handle.id, progress: { step: i + 1 } });
  }
  assert.equal(await handle.result, 'done');
  await events.return();
  assert.throws(() => queue.events(['queue.command.progress', 7]), (error) => error instanceof TypeError && error.code === 'INVALID_ARGUMENT' && /event keys must be strings, got 7/.test(error.message));
  assert.throws(() => queue.events('queue.command.complete'), (error) => error instanceof RangeError && error.code === 'INVALID_ARGUMENT' && /unknown event key/.test(error.message));
});

test('queue.events() sees the lifecycle of every command of the queue, whoever submitted it', async (t) => {
  const { queue, start } = await connect(t, { jobs: { priority: 0, maxConcurrency: 2 } });
  await start({ handlers: { echo: (payload) => payload } });
  // Another producer of the same queue (as another process would be).
  const other = await RedisQueue.connect(redisUrl(), { keyPrefix: queue.keyPrefix.slice(1, -1) });
  const events = queue.events(['queue.command.submitted', 'queue.command.started', 'queue.command.completed']);
  /** The keys of `id`'s events, up to its completion. */
  const lifecycle = async (id) => {
    const seen = [];
    while (!seen.includes('queue.command.completed')) {
      const { value } = await events.next();
      if (value.payload.commandId === id) seen.push(value.key);
    }
    return seen;
  };
  // A first command shows the queue's event reader running (what happens in the very
  // instant of subscribing may fall before it).
  const first = await other.submit('jobs', 'echo', { n: 0 });
  await first.result;
  await lifecycle(first.id);
  const handle = await other.submit('jobs', 'echo', { n: 1 });
  assert.deepEqual(await handle.result, { n: 1 });
  assert.deepEqual(await lifecycle(handle.id), ['queue.command.submitted', 'queue.command.started', 'queue.command.completed']);
  await events.return();
});

test('the event stream can be turned off for the whole queue, and on again', async (t) => {
  const { queue, start } = await connect(t, { jobs: { priority: 0, maxConcurrency: 2 } });
  await start({ handlers: { echo: (payload) => payload } });
  const prefix = queue.keyPrefix.slice(1, -1);
  const quiet = await RedisQueue.connect(redisUrl(), { keyPrefix: prefix, events: false });
  const events = queue.events();
  const quietHandle = await quiet.submit('jobs', 'echo', { say: 'quiet' });
  assert.deepEqual(await quietHandle.result, { say: 'quiet' });
  // Another process turns it on again: the first event seen is the loud command's.
  const loud = await RedisQueue.connect(redisUrl(), { keyPrefix: prefix, events: true });
  const loudHandle = await loud.submit('jobs', 'echo', { say: 'loud' });
  assert.deepEqual(await loudHandle.result, { say: 'loud' });
  const { value } = await events.next();
  assert.equal(value.key, 'queue.command.submitted');
  assert.equal(value.payload.commandId, loudHandle.id);
  await events.return();
  await assert.rejects(RedisQueue.connect(redisUrl(), { keyPrefix: prefix, events: 'no' }), (error) => error instanceof TypeError && error.code === 'CONFIG');
});
