// A SharedBudget bounds the commands running at once over lanes of several Lane
// queues: a lane waits for a slot while the budget is full, a lane without a budget (a
// `control` lane) is never held by one, slots come back when runs end, bad input is
// refused with the core's reason, and a RedisQueue refuses a lane with a budget (the
// Redis test needs A3S_LANE_REDIS_URL).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane, LaneConfigError, RedisQueue, SharedBudget } from '@a3s-lab/lane';
import { deferred, redisUrl, uniquePrefix, waitFor } from './support.mjs';

/** One queue with a budgeted `prompt` lane (cap 2) and a `control` lane without. */
async function session(t, budget, started) {
  const lane = new Lane({ prompt: { maxConcurrency: 2, budget }, control: {} });
  const gate = deferred();
  let running = 0;
  lane.handle('hold', async (label) => {
    started.push(label);
    running++;
    try {
      await gate.promise;
    } finally {
      running--;
    }
    return label;
  });
  lane.handle('ping', () => 'pong');
  await lane.start();
  t.after(() => {
    gate.resolve();
    return lane.shutdownNow();
  });
  return { lane, open: () => gate.resolve(), running: () => running };
}

test('two queues share a budget and a control lane is never held', async (t) => {
  const budget = new SharedBudget('llm', 2);
  assert.equal(budget.name, 'llm');
  assert.equal(budget.slots, 2);
  assert.deepEqual(budget.status(), { name: 'llm', slots: 2, inUse: 0, waiting: 0, started: 0 });
  const started = [];
  const a = await session(t, budget, started);
  const b = await session(t, budget, started);

  const aResults = [a.lane.submit('prompt', 'hold', 'a0'), a.lane.submit('prompt', 'hold', 'a1')];
  await waitFor(() => started.length === 2, 'both commands of a to start');
  const bResults = [b.lane.submit('prompt', 'hold', 'b0'), b.lane.submit('prompt', 'hold', 'b1')];
  await waitFor(() => budget.status().waiting === 1, "b's prompt lane to wait for a slot");
  assert.deepEqual(budget.status(), { name: 'llm', slots: 2, inUse: 2, waiting: 1, started: 2 });
  assert.deepEqual(started, ['a0', 'a1']);
  assert.equal(a.running() + b.running(), 2);
  assert.equal((await b.lane.stats()).lanes.prompt.pending, 2);

  // The control lanes have no budget: they run while the budget is saturated.
  assert.equal(await b.lane.submit('control', 'ping', null), 'pong');
  assert.equal(await a.lane.submit('control', 'ping', null), 'pong');
  assert.equal(budget.status().inUse, 2);

  // a's commands end: their slots go to b's lane, never more than 2 at once.
  a.open();
  assert.deepEqual(await Promise.all(aResults), ['a0', 'a1']);
  await waitFor(() => started.length === 4, "b's commands to start");
  assert.ok(a.running() + b.running() <= 2);
  assert.equal(budget.status().inUse, 2);
  assert.equal(budget.status().waiting, 0);
  b.open();
  assert.deepEqual(await Promise.all(bResults), ['b0', 'b1']);
  await waitFor(() => budget.status().inUse === 0, 'the slots to come back');
  assert.deepEqual(budget.status(), { name: 'llm', slots: 2, inUse: 0, waiting: 0, started: 4 });
});

test('a budget with a rate limit starts commands like one without', async (t) => {
  const budget = new SharedBudget('llm', 1, { rateLimit: { perMinute: 500 } });
  const lane = new Lane({ prompt: { budget } });
  lane.handle('echo', (payload) => payload);
  await lane.start();
  t.after(() => lane.shutdownNow());
  assert.equal(await lane.submit('prompt', 'echo', 1), 1);
  assert.equal(budget.status().started, 1);
});

test('bad input is a TypeError or a RangeError with code CONFIG and the reason', () => {
  const refused = (make, Class, message) =>
    assert.throws(make, (error) => {
      assert.ok(error instanceof Class, `${error} is a ${Class.name}`);
      assert.ok(error instanceof LaneConfigError);
      assert.equal(error.code, 'CONFIG');
      assert.match(error.message, message);
      return true;
    });
  refused(() => new SharedBudget('llm', 0), RangeError, /shared budget 'llm': 0 slots would never start a command/);
  refused(() => new SharedBudget('', 1), RangeError, /a shared budget needs a name/);
  refused(
    () => new SharedBudget('llm', 1, { rateLimit: { slidingWindow: { limit: 1, windowMs: 1000 } } }),
    RangeError,
    /shared budget 'llm': the rate limit must be a token bucket/,
  );
  refused(() => new SharedBudget('llm', -1), RangeError, /slots must be between 0 and/);
  refused(() => new SharedBudget(1, 1), TypeError, /name must be a string, got 1/);
  refused(() => new SharedBudget('llm', '2'), TypeError, /slots must be a number/);
  refused(() => new SharedBudget('llm'), TypeError, /slots must be a number, got undefined/);
  refused(() => new SharedBudget('llm', 1, { rate: 1 }), TypeError, /unknown option 'rate'/);
  refused(
    () => new Lane({ prompt: { budget: { slots: 2 } } }),
    TypeError,
    /lanes\.prompt\.budget must be a SharedBudget/,
  );
  refused(() => new Lane({ prompt: { budget: new Lane() } }), TypeError, /lanes\.prompt\.budget must be a SharedBudget/);
  assert.throws(() => SharedBudget('llm', 1), TypeError);
});

test('a RedisQueue refuses a lane with a budget', async () => {
  const budget = new SharedBudget('llm', 2);
  const refusal = (error) => {
    assert.ok(error instanceof RangeError);
    assert.equal(error.code, 'CONFIG');
    assert.match(error.message, /lane 'prompt': a shared budget is not supported by the Redis engine/);
    return true;
  };
  await assert.rejects(
    RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('budget'), lanes: { prompt: { budget } } }),
    refusal,
  );
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('budget') });
  await assert.rejects(queue.declareLane('prompt', { budget }), refusal);
});
