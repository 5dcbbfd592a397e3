// Recurring schedules: `putSchedule({ name, lane, commandType, payload, everyMs | cron,
// timeZone, missed, jitterMs })` makes a schedule that submits its command at each of its
// instants, each instant once however many processes run the queue (a
// `queue.schedule.fired` event names the instant and the command); `schedules()` lists
// them with their next instant and counts (`ScheduleInfo`); `pauseSchedule`,
// `resumeSchedule` and `removeSchedule` change them, and the instants missed while
// paused are reported by a `queue.schedule.skipped` event; a bad schedule (both or
// neither of everyMs and cron, a number that is not a whole number of 0 or more, a cron
// expression that does not parse, an unknown time zone, ...) is refused with a clear
// error and nothing is put; another client (a second RedisQueue on the same prefix, a
// Lane reopened on the same store) sees the schedules, which go on firing.
//
// Each behaviour is written once and runs on every engine: in process, in process with
// durable storage, Redis and Redis Cluster. The Redis engines need a Redis server
// (A3S_LANE_REDIS_URL) and a Redis Cluster (A3S_LANE_REDIS_CLUSTER_URLS); without them
// those tests fail, never skip.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { EVENT_KEYS, Lane, LaneInvalidArgumentError, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { redisClusterUrls, redisUrl, sleep, tempDir, uniquePrefix, waitFor } from './support.mjs';

const LANES = { jobs: { priority: 0, maxConcurrency: 4 } };

/** Clocks of different hosts (Redis' and this one) may differ by a little. */
const SLACK_MS = 1_000;

/** `tick` records each run (its command id and payload) in `state.runs`. */
function handlers(state) {
  return {
    tick: (payload, ctx) => {
      state.runs.push({ id: ctx.id, payload });
      return payload;
    },
  };
}

/** An in-process engine; with `storage`, durable. */
function inProcess(storage) {
  return async (t, state) => {
    const path = storage ? join(tempDir(t, 'a3s-lane-schedules-'), 'queue') : null;
    const make = () => {
      const lane = path ? new Lane(LANES, { storage: { path, sync: 'normal' } }) : new Lane(LANES);
      for (const [type, handler] of Object.entries(handlers(state))) lane.handle(type, handler);
      return lane;
    };
    let lane = make();
    await lane.start();
    return {
      queue: () => lane,
      // A Lane knows its handlers: a schedule of a command type without one is refused.
      knowsHandlers: true,
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
  return async (_t, state) => {
    const keyPrefix = uniquePrefix('schedules');
    const queue = await connect({ keyPrefix, lanes: LANES });
    // Two workers on two connections: every process looks for due instants, and each
    // instant still fires once.
    const second = await connect({ keyPrefix });
    const workers = [
      await RedisWorker.start(queue, { slots: 2, handlers: handlers(state) }),
      await RedisWorker.start(second, { slots: 2, handlers: handlers(state) }),
    ];
    return {
      queue: () => queue,
      knowsHandlers: false,
      // A second RedisQueue on the same prefix, declaring no lane.
      anotherClient: () => connect({ keyPrefix }),
      close: async () => {
        for (const schedule of await queue.schedules().catch(() => [])) {
          await queue.removeSchedule(schedule.name).catch(() => false);
        }
        for (const worker of workers) await worker.shutdownNow();
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

/** A started queue of `engine` with LANES and the handlers above, closed after the test. */
async function open(t, engine) {
  const state = { runs: [] };
  const opened = await ENGINES[engine](t, state);
  t.after(opened.close);
  return { ...opened, state };
}

/** The schedule `name` of `queue`, as `schedules()` lists it. */
async function find(queue, name) {
  const found = (await queue.schedules()).find((schedule) => schedule.name === name);
  assert.ok(found, `no schedule ${name}`);
  return found;
}

/** A time: a whole number of milliseconds since the Unix epoch. */
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

/** A schedule of `tick` in `jobs` with `fields`. */
const tick = (fields) => ({ name: 'tick', lane: 'jobs', commandType: 'tick', ...fields });

for (const engine of Object.keys(ENGINES)) {
  test(`${engine}: an interval schedule fires each instant once, again and again`, async (t) => {
    const { queue, state } = await open(t, engine);
    const fired = [];
    queue().on('queue.schedule.fired', (event) => fired.push(event.payload));
    const before = Date.now();
    const info = await queue().putSchedule(tick({ payload: { n: 1 }, everyMs: 300 }));
    const { nextFireAt, ...rest } = info;
    assert.deepEqual(rest, {
      name: 'tick',
      lane: 'jobs',
      commandType: 'tick',
      payload: { n: 1 },
      everyMs: 300,
      cron: null,
      timeZone: null,
      missed: 'skip',
      jitterMs: 0,
      paused: false,
      lastFiredAt: null,
      lastCommandId: null,
      fired: 0,
      skipped: 0,
    });
    // The next multiple of 300 ms since the Unix epoch.
    ms(nextFireAt, 'nextFireAt');
    assert.equal(nextFireAt % 300, 0);
    assert.ok(nextFireAt > before - SLACK_MS && nextFireAt <= Date.now() + 300 + SLACK_MS, `nextFireAt ${nextFireAt}`);

    await waitFor(() => fired.length >= 5, 'five instants fired');
    const seen = fired.slice();
    const instants = seen.map((payload) => payload.instantMs);
    for (const payload of seen) {
      assert.deepEqual(Object.keys(payload).sort(), ['commandId', 'instantMs', 'laneId', 'schedule']);
      assert.equal(payload.schedule, 'tick');
      assert.equal(payload.laneId, 'jobs');
      ms(payload.instantMs, 'instantMs');
      assert.equal(payload.instantMs % 300, 0, `instant ${payload.instantMs} is a multiple of the interval`);
    }
    // Each instant once: distinct, in order (two processes firing one instant would
    // repeat it here).
    for (let i = 1; i < instants.length; i++) {
      assert.ok(instants[i] > instants[i - 1], `instants strictly increase: ${instants.join(', ')}`);
    }
    assert.equal(new Set(seen.map((payload) => payload.commandId)).size, seen.length, 'one command per instant');
    // Each instant's command ran, once, with the schedule's payload.
    await waitFor(
      () => seen.every((payload) => state.runs.some((run) => run.id === payload.commandId)),
      'the command of each instant ran',
    );
    const ran = state.runs.map((run) => run.id);
    assert.equal(new Set(ran).size, ran.length, `each command ran once: ${ran.join(', ')}`);
    for (const run of state.runs) assert.deepEqual(run.payload, { n: 1 });
    const status = await queue().command(seen[0].commandId);
    assert.equal(status.laneId, 'jobs');
    assert.equal(status.commandType, 'tick');

    const now = await find(queue(), 'tick');
    assert.ok(now.fired >= seen.length, `fired ${now.fired} >= ${seen.length}`);
    assert.ok(now.lastFiredAt >= instants.at(-1), `lastFiredAt ${now.lastFiredAt}`);
    assert.equal(typeof now.lastCommandId, 'number');
    assert.ok(now.nextFireAt > now.lastFiredAt, 'the next instant is after the last fired');
    assert.equal(now.paused, false);
  });

  test(`${engine}: schedules are listed, paused, resumed, replaced and removed`, async (t) => {
    const { queue } = await open(t, engine);
    const q = queue();
    const fired = [];
    const skipped = [];
    q.on('queue.schedule.fired', (event) => fired.push(event.payload));
    q.on('queue.schedule.skipped', (event) => skipped.push(event.payload));
    assert.deepEqual(await q.schedules(), []);

    await q.putSchedule(tick({ everyMs: 200 }));
    const daily = await q.putSchedule({
      name: 'daily',
      lane: 'jobs',
      commandType: 'tick',
      payload: ['report'],
      cron: '0 9 * * *',
      timeZone: 'Europe/Berlin',
      missed: 'runOnce',
      jitterMs: 60_000,
    });
    assert.deepEqual(
      { ...daily, nextFireAt: 'checked below' },
      {
        name: 'daily',
        lane: 'jobs',
        commandType: 'tick',
        payload: ['report'],
        everyMs: null,
        cron: '0 9 * * *',
        timeZone: 'Europe/Berlin',
        missed: 'runOnce',
        jitterMs: 60_000,
        paused: false,
        nextFireAt: 'checked below',
        lastFiredAt: null,
        lastCommandId: null,
        fired: 0,
        skipped: 0,
      },
    );
    // 09:00 in Berlin is 08:00 UTC in winter, 07:00 in summer; within a day from now.
    const next = new Date(ms(daily.nextFireAt, 'nextFireAt'));
    assert.ok([7, 8].includes(next.getUTCHours()) && next.getUTCMinutes() === 0 && next.getUTCSeconds() === 0, next.toISOString());
    assert.ok(daily.nextFireAt > Date.now() - SLACK_MS && daily.nextFireAt <= Date.now() + 86_400_000 + SLACK_MS);
    // A cron expression without a zone is read in UTC; nicknames are cron expressions.
    const hourly = await q.putSchedule({ name: 'hourly', lane: 'jobs', commandType: 'tick', cron: '@hourly' });
    assert.equal(hourly.timeZone, 'UTC');
    assert.equal(hourly.nextFireAt % 3_600_000, 0);
    assert.deepEqual(
      (await q.schedules()).map((schedule) => schedule.name),
      ['daily', 'hourly', 'tick'],
      'listed by name',
    );

    // Paused: nothing fires, replaced or not.
    await waitFor(async () => (await find(q, 'tick')).fired >= 1, 'tick fired once');
    await q.pauseSchedule('tick');
    await q.pauseSchedule('tick'); // pausing a paused schedule changes nothing
    const paused = await find(q, 'tick');
    assert.equal(paused.paused, true);
    // Replaced while paused, it keeps its counts and stays paused.
    const replaced = await q.putSchedule(tick({ payload: 'v2', everyMs: 250 }));
    assert.equal(replaced.paused, true);
    assert.equal(replaced.fired, paused.fired);
    assert.equal(replaced.lastFiredAt, paused.lastFiredAt);
    assert.equal(replaced.everyMs, 250);
    assert.equal(replaced.payload, 'v2');
    await sleep(1_000); // four instants of the interval
    const still = await find(q, 'tick');
    assert.equal(still.fired, paused.fired, 'a paused schedule fires nothing');
    assert.equal(still.paused, true);

    // Resumed: the instants missed meanwhile are skipped (and said so), then it fires.
    await q.resumeSchedule('tick');
    await q.resumeSchedule('tick'); // resuming a running schedule changes nothing
    const resumed = await find(q, 'tick');
    assert.equal(resumed.paused, false);
    assert.ok(resumed.skipped >= 1, `skipped ${resumed.skipped}`);
    await waitFor(
      () => skipped.some((payload) => payload.schedule === 'tick' && payload.reason === 'paused'),
      'a queue.schedule.skipped event for the instants missed while paused',
    );
    const skip = skipped.find((payload) => payload.schedule === 'tick' && payload.reason === 'paused');
    assert.deepEqual(Object.keys(skip).sort(), ['fromMs', 'reason', 'schedule', 'untilMs']);
    assert.ok(ms(skip.fromMs, 'fromMs') <= ms(skip.untilMs, 'untilMs'));
    await waitFor(async () => (await find(q, 'tick')).fired > resumed.fired, 'tick fires again once resumed');

    // Removed: gone from the list, and fires no more.
    assert.equal(await q.removeSchedule('tick'), true);
    const removedAt = Date.now();
    assert.equal(await q.removeSchedule('tick'), false);
    assert.deepEqual(
      (await q.schedules()).map((schedule) => schedule.name),
      ['daily', 'hourly'],
    );
    await sleep(SLACK_MS + 500);
    const late = fired.filter((payload) => payload.schedule === 'tick' && payload.instantMs > removedAt + SLACK_MS);
    assert.deepEqual(late, [], 'a removed schedule fires no more');
    for (const op of ['pauseSchedule', 'resumeSchedule']) {
      await assert.rejects(q[op]('tick'), (error) => {
        assert.ok(error instanceof RangeError && error instanceof LaneInvalidArgumentError, String(error));
        return withCode('INVALID_ARGUMENT', /tick/)(error);
      });
    }
  });

  test(`${engine}: bad schedules are refused, and nothing is put`, async (t) => {
    const { queue, knowsHandlers } = await open(t, engine);
    const q = queue();
    const refused = [
      // [what, options, error class, code, message]
      ['neither everyMs nor cron', tick({}), TypeError, 'INVALID_ARGUMENT', /everyMs or options\.cron is required/],
      ['both everyMs and cron', tick({ everyMs: 1_000, cron: '* * * * *' }), TypeError, 'INVALID_ARGUMENT', /not both/],
      ['a zone for an interval', tick({ everyMs: 1_000, timeZone: 'UTC' }), TypeError, 'INVALID_ARGUMENT', /timeZone is for a cron/],
      ['a negative interval', tick({ everyMs: -300 }), RangeError, 'INVALID_ARGUMENT', /options\.everyMs must be between 0 and/],
      ['NaN', tick({ everyMs: NaN }), RangeError, 'INVALID_ARGUMENT', /options\.everyMs must be a finite number, got NaN/],
      ['Infinity', tick({ everyMs: Infinity }), RangeError, 'INVALID_ARGUMENT', /options\.everyMs must be a finite number, got Infinity/],
      ['a fraction of a millisecond', tick({ everyMs: 300.5 }), RangeError, 'INVALID_ARGUMENT', /options\.everyMs must be a whole number, got 300\.5/],
      ['an interval of 0', tick({ everyMs: 0 }), RangeError, 'INVALID_ARGUMENT', /interval of 0/],
      ['an interval of over 100 years', tick({ everyMs: 2 ** 52 }), RangeError, 'INVALID_ARGUMENT', /100 years/],
      ['an interval as a string', tick({ everyMs: '300' }), TypeError, 'INVALID_ARGUMENT', /options\.everyMs must be a number, got the string "300"/],
      ['a cron expression that does not parse', tick({ cron: '61 * * * *' }), RangeError, 'INVALID_ARGUMENT', /cron expression "61 \* \* \* \*" does not parse/],
      ['a cron expression of words', tick({ cron: 'every day' }), RangeError, 'INVALID_ARGUMENT', /does not parse/],
      ['an unknown time zone', tick({ cron: '0 9 * * *', timeZone: 'Mars/Olympus' }), RangeError, 'INVALID_ARGUMENT', /unknown time zone "Mars\/Olympus"/],
      ['a negative jitter', tick({ everyMs: 1_000, jitterMs: -1 }), RangeError, 'INVALID_ARGUMENT', /options\.jitterMs must be between 0 and/],
      ['a jitter not less than the interval', tick({ everyMs: 1_000, jitterMs: 1_000 }), RangeError, 'INVALID_ARGUMENT', /not less than its interval/],
      ['a jitter over an hour', tick({ cron: '0 9 * * *', jitterMs: 3_600_001 }), RangeError, 'INVALID_ARGUMENT', /more than an hour/],
      ['an unknown missed policy', tick({ everyMs: 1_000, missed: 'run_once' }), RangeError, 'INVALID_ARGUMENT', /options\.missed must be 'skip' or 'runOnce', got "run_once"/],
      ['an empty name', tick({ name: '', everyMs: 1_000 }), RangeError, 'INVALID_ARGUMENT', /options\.name must not be empty/],
      ['a name with a control character', tick({ name: 'a\nb', everyMs: 1_000 }), RangeError, 'INVALID_ARGUMENT', /control character/],
      ['a name of 201 bytes', tick({ name: 'x'.repeat(201), everyMs: 1_000 }), RangeError, 'INVALID_ARGUMENT', /1 to 200 bytes/],
      ['no lane', { name: 'tick', commandType: 'tick', everyMs: 1_000 }, TypeError, 'INVALID_ARGUMENT', /options\.lane is required/],
      ['a misspelt option', tick({ every: 1_000 }), TypeError, 'INVALID_ARGUMENT', /unknown option 'every'/],
      ['a payload JSON cannot hold', tick({ everyMs: 1_000, payload: { at: NaN } }), TypeError, 'NOT_JSON', /^payload\.at is not JSON/],
      ['no options', undefined, TypeError, 'INVALID_ARGUMENT', /options must be an object/],
      ['an unknown lane', tick({ lane: 'nowhere', everyMs: 1_000 }), RangeError, 'LANE_NOT_FOUND', /nowhere/],
    ];
    if (knowsHandlers) {
      refused.push(['a command type without a handler', tick({ commandType: 'nobody', everyMs: 1_000 }), RangeError, 'HANDLER_NOT_FOUND', /nobody/]);
    }
    for (const [what, options, type, code, message] of refused) {
      // A promise that rejects (never a throw), with the SDK's error of `code`.
      const put = q.putSchedule(options);
      await assert.rejects(put, (error) => {
        assert.ok(error instanceof type, `${what}: ${error.name}: ${error.message}`);
        assert.equal(error.code, code, `${what}: ${error.code}: ${error.message}`);
        assert.match(error.message, message, what);
        return true;
      });
    }
    assert.deepEqual(await q.schedules(), [], 'nothing was put');
    // A name argument is a non-empty string of at most 200 bytes, without control characters.
    for (const op of ['removeSchedule', 'pauseSchedule', 'resumeSchedule']) {
      await assert.rejects(q[op](''), withCode('INVALID_ARGUMENT', /name must not be empty/));
      await assert.rejects(q[op](7), (error) => error instanceof TypeError && withCode('INVALID_ARGUMENT', /name must be a string, got 7/)(error));
      await assert.rejects(q[op]('a\u0000b'), (error) => error instanceof RangeError && withCode('INVALID_ARGUMENT', /control character/)(error));
    }
    // A good one after all that is put.
    const good = await q.putSchedule(tick({ everyMs: 60_000, jitterMs: 59_999, missed: 'runOnce' }));
    assert.equal(good.jitterMs, 59_999);
    assert.equal(good.missed, 'runOnce');
    assert.deepEqual((await q.schedules()).map((schedule) => schedule.name), ['tick']);
  });

  test(`${engine}: another client sees the schedules, which go on firing`, async (t) => {
    const opened = await open(t, engine);
    const first = opened.queue();
    await first.putSchedule(tick({ payload: { n: 2 }, everyMs: 200 }));
    await waitFor(async () => (await find(first, 'tick')).fired >= 2, 'two instants fired');
    // With storage, a Lane reopened on the same store; on Redis, a second RedisQueue.
    const other = await opened.anotherClient();
    const seen = await find(other, 'tick');
    assert.equal(seen.everyMs, 200);
    assert.deepEqual(seen.payload, { n: 2 });
    assert.ok(seen.fired >= 2, `fired ${seen.fired}`);
    await waitFor(async () => (await find(other, 'tick')).fired > seen.fired, 'it goes on firing');
    await waitFor(
      () => opened.state.runs.length >= 3,
      'the commands it submitted ran',
    );
  });
}

test('EVENT_KEYS has queue.schedule.fired and queue.schedule.skipped, after queue.command.deduplicated', () => {
  const at = EVENT_KEYS.indexOf('queue.command.deduplicated');
  assert.deepEqual(EVENT_KEYS.slice(at + 1, at + 3), ['queue.schedule.fired', 'queue.schedule.skipped']);
  const lane = new Lane(LANES);
  const listener = () => {};
  lane.on('queue.schedule.fired', listener);
  lane.off('queue.schedule.fired', listener);
  const events = lane.events(['queue.schedule.fired', 'queue.schedule.skipped']);
  void events.return();
  assert.throws(() => lane.on('queue.schedule.done', listener), withCode('INVALID_ARGUMENT', /queue\.schedule\.skipped/));
});
