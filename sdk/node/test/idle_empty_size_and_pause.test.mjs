// The everyday helpers p-queue users reach for: onIdle() and onEmpty() promises, the
// `size` (waiting) and `running` counts as plain reads, onSizeLessThan(limit, lane?) for a
// producer that keeps its backlog bounded, and a whole-queue pause()/resume().
// onSizeLessThan is on the shared client surface: the Redis part runs it on a RedisQueue
// with a RedisWorker (A3S_LANE_REDIS_URL), woken by the queue's event stream.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane, LaneNotFoundError, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { deferred, redisUrl, sleep, uniquePrefix, waitFor } from './support.mjs';

test('size and running count waiting and running commands over all lanes', async () => {
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 1 }, b: { priority: 1, maxConcurrency: 2 } });
  const release = deferred();
  let started = 0;
  lane.handle('hold', async () => {
    started += 1;
    await release.promise;
  });
  assert.equal(lane.size, 0);
  assert.equal(lane.running, 0);
  await lane.start();
  const all = [...Array(3)].map(() => lane.submit('a', 'hold')).concat([...Array(4)].map(() => lane.submit('b', 'hold')));
  await waitFor(() => started === 3, 'three handlers to run');
  assert.equal(lane.running, 3);
  assert.equal(lane.size, 4);
  release.resolve();
  await Promise.all(all);
  assert.equal(lane.running, 0);
  assert.equal(lane.size, 0);
  await lane.shutdown();
});

test('onEmpty() resolves when nothing waits, onIdle() when nothing runs either', async () => {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 1 } });
  const gates = [];
  lane.handle('gate', () => {
    const gate = deferred();
    gates.push(gate);
    return gate.promise;
  });
  await lane.start();
  await lane.onIdle(); // at once when idle
  await lane.onEmpty();
  const results = [1, 2, 3].map(() => lane.submit('q', 'gate'));
  let empty = false;
  let idle = false;
  const emptied = lane.onEmpty().then(() => (empty = true));
  const idled = lane.onIdle().then(() => (idle = true));
  await waitFor(() => gates.length === 1, 'the first command to run');
  gates[0].resolve();
  await waitFor(() => gates.length === 2, 'the second command to run');
  assert.equal(empty, false, 'onEmpty resolved while a command still waited');
  gates[1].resolve();
  await waitFor(() => gates.length === 3, 'the last command to run');
  await emptied; // the last one runs: nothing waits
  assert.equal(idle, false, 'onIdle resolved while a command still ran');
  gates[2].resolve();
  await idled;
  await Promise.all(results);
  await lane.shutdown();
});

test('pause() stops every lane from starting commands; resume() starts them all again', async () => {
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 2 }, b: { priority: 1, maxConcurrency: 2 } });
  let ran = 0;
  lane.handle('job', () => {
    ran += 1;
    return ran;
  });
  await lane.start();
  lane.pause();
  const stats = await lane.stats();
  assert.ok(stats.lanes.a.paused && stats.lanes.b.paused);
  const jobs = [lane.submit('a', 'job'), lane.submit('b', 'job'), lane.submit('b', 'job')];
  assert.equal(lane.size, 3, 'submits are accepted while paused');
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(ran, 0, 'a paused queue started a command');
  await lane.pauseLane('a'); // one lane paused on its own is resumed too
  lane.resume();
  assert.equal((await Promise.all(jobs)).length, 3);
  const after = await lane.stats();
  assert.ok(!after.lanes.a.paused && !after.lanes.b.paused);
  await lane.shutdown();
  assert.throws(() => lane.pause(), (error) => error.code === 'SHUTDOWN');
});

test('onSizeLessThan(limit) resolves at once when fewer wait, else once enough started', async () => {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 1 } });
  const gates = [];
  lane.handle('gate', () => {
    const gate = deferred();
    gates.push(gate);
    return gate.promise;
  });
  await lane.start();
  await lane.onSizeLessThan(1); // nothing waits
  const results = [1, 2, 3, 4].map(() => lane.submit('q', 'gate'));
  await waitFor(() => gates.length === 1, 'the first command to run');
  assert.equal(lane.size, 3);
  await lane.onSizeLessThan(4); // 3 wait: at once
  let below = false;
  const waited = lane.onSizeLessThan(2).then(() => (below = true));
  gates[0].resolve();
  await waitFor(() => gates.length === 2, 'the second command to run');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(below, false, 'resolved while 2 still waited');
  gates[1].resolve();
  await waited; // the third started: 1 waits
  assert.equal(lane.size, 1);
  for (const gate of gates.slice(2)) gate.resolve();
  await waitFor(() => gates.length === 4, 'the last command to run');
  gates[3].resolve();
  await Promise.all(results);
  await lane.shutdown();
  await lane.onSizeLessThan(1); // after shutdown: at once
});

test('onSizeLessThan counts one lane or all, delayed commands too, and a cancel wakes it', async () => {
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 1 }, b: { priority: 1, maxConcurrency: 1 } });
  lane.handle('job', (payload) => payload);
  await lane.start();
  lane.pause();
  const a = await lane.submitWithHandle('a', 'job', 'a');
  const b = await lane.submitWithHandle('b', 'job', 'b', { delayMs: 3_600_000 });
  assert.equal(lane.size, 2, 'the delayed one waits too');
  await lane.onSizeLessThan(2, 'a'); // lane a alone: 1 waits
  await lane.onSizeLessThan(3); // all lanes: 2 wait
  let allBelow = false;
  const all = lane.onSizeLessThan(2).then(() => (allBelow = true));
  let bBelow = false;
  const inB = lane.onSizeLessThan(1, 'b').then(() => (bBelow = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual([allBelow, bBelow], [false, false]);
  // Cancelling the delayed command wakes both: nothing starts, paused as the queue is.
  assert.equal(await b.cancel(), 'cancelled');
  await Promise.all([all, inB]);
  await assert.rejects(b.result, (error) => error.code === 'CANCELLED');
  lane.resume();
  assert.equal(await a.result, 'a');
  await lane.shutdown();
});

test('onSizeLessThan refuses a limit that is not a whole number of 1 or more, and an unknown lane', async () => {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 1 } });
  await lane.start();
  const invalid = (ErrorClass, message) => (error) => {
    assert.ok(error instanceof ErrorClass, `${error.name}: ${error.message}`);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, message);
    return true;
  };
  await assert.rejects(lane.onSizeLessThan(0), invalid(RangeError, /limit must be 1 or more/));
  await assert.rejects(lane.onSizeLessThan(-1), invalid(RangeError, /limit must be between 0 and/));
  await assert.rejects(lane.onSizeLessThan(1.5), invalid(RangeError, /limit must be a whole number/));
  await assert.rejects(lane.onSizeLessThan(Number.NaN), invalid(RangeError, /limit/));
  await assert.rejects(lane.onSizeLessThan('5'), invalid(TypeError, /limit/));
  await assert.rejects(lane.onSizeLessThan(), invalid(TypeError, /limit/));
  await assert.rejects(lane.onSizeLessThan(1, 5), invalid(TypeError, /lane/));
  await assert.rejects(lane.onSizeLessThan(1, 'nope'), (error) => {
    assert.ok(error instanceof LaneNotFoundError);
    assert.equal(error.code, 'LANE_NOT_FOUND');
    return true;
  });
  await lane.shutdown();
});

// --- on Redis: the same method of the shared client surface ---------------------------

/**
 * A RedisQueue with lanes "q" (one command at a time) and "other", and a started
 * RedisWorker whose 'hold' handler runs until `gates[i]` (i its payload) resolves.
 */
async function gatedRedis(t) {
  const queue = await RedisQueue.connect(redisUrl(), {
    keyPrefix: uniquePrefix('size-less-than'),
    lanes: { q: { priority: 0, maxConcurrency: 1 }, other: { priority: 1 } },
  });
  const gates = [...Array(4)].map(() => deferred());
  const worker = await RedisWorker.start(queue, {
    slots: 4,
    handlers: {
      hold: async (i) => {
        await gates[i].promise;
        return i;
      },
    },
  });
  t.after(async () => {
    for (const gate of gates) gate.resolve();
    await worker.shutdownNow();
    await queue.clear();
  });
  return { queue, gates };
}

const waitingIn = async (queue, lane) => {
  const stats = (await queue.stats()).lanes[lane];
  return stats.pending + stats.delayed;
};

test('on Redis: onSizeLessThan resolves at once when it holds, else once enough commands started', async (t) => {
  const { queue, gates } = await gatedRedis(t);
  const handles = [];
  for (let i = 0; i < 4; i++) handles.push(await queue.submit('q', 'hold', i));
  await waitFor(async () => (await waitingIn(queue, 'q')) === 3, '3 waiting, 1 running');
  await queue.onSizeLessThan(4); // 3 wait: at once
  await queue.onSizeLessThan(4, 'q');
  await queue.onSizeLessThan(1, 'other');
  let below2 = false;
  let below1 = false;
  const waited2 = queue.onSizeLessThan(2).then(() => (below2 = true));
  const waited1 = queue.onSizeLessThan(1, 'q').then(() => (below1 = true));
  await sleep(200);
  assert.equal(below2 || below1, false, '3 wait to start');
  gates[0].resolve(); // command 1 starts: 2 wait
  await waitFor(async () => (await waitingIn(queue, 'q')) === 2, '2 waiting');
  await sleep(200);
  assert.equal(below2, false, '2 still wait to start');
  gates[1].resolve(); // command 2 starts: 1 waits
  await waited2;
  assert.equal(below1, false, 'one still waits to start');
  gates[2].resolve(); // command 3 starts: none waits
  await waited1;
  assert.equal(await waitingIn(queue, 'q'), 0);
  gates[3].resolve();
  assert.deepEqual(await Promise.all(handles.map((handle) => handle.result)), [0, 1, 2, 3]);
});

test('on Redis: onSizeLessThan wakes when a waiting command is cancelled', async (t) => {
  const { queue, gates } = await gatedRedis(t);
  await queue.pauseLane('q');
  const first = await queue.submit('q', 'hold', 0);
  const second = await queue.submit('q', 'hold', 1);
  let below = false;
  const waited = queue.onSizeLessThan(2, 'q').then(() => (below = true));
  await sleep(200);
  assert.equal(below, false, 'both wait to start');
  assert.equal(await queue.cancel(first.id), 'cancelled');
  await waited;
  assert.equal(await waitingIn(queue, 'q'), 1);
  await assert.rejects(first.result, (error) => error.code === 'CANCELLED');
  gates[1].resolve();
  await queue.resumeLane('q');
  assert.equal(await second.result, 1);
});

test('on Redis: onSizeLessThan refuses what a Lane refuses, and needs the event stream', async (t) => {
  const queue = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('size-less-than'), lanes: { q: { priority: 0 } } });
  t.after(() => queue.clear());
  const invalid = (ErrorClass, message) => (error) => {
    assert.ok(error instanceof ErrorClass, `${error.name}: ${error.message}`);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, message);
    return true;
  };
  await assert.rejects(queue.onSizeLessThan(0), invalid(RangeError, /limit must be 1 or more/));
  await assert.rejects(queue.onSizeLessThan(0, 'q'), invalid(RangeError, /limit must be 1 or more/));
  await assert.rejects(queue.onSizeLessThan(-1), invalid(RangeError, /limit must be between 0 and/));
  await assert.rejects(queue.onSizeLessThan(1.5), invalid(RangeError, /limit must be a whole number/));
  await assert.rejects(queue.onSizeLessThan(Number.NaN), invalid(RangeError, /limit/));
  await assert.rejects(queue.onSizeLessThan('5'), invalid(TypeError, /limit/));
  await assert.rejects(queue.onSizeLessThan(), invalid(TypeError, /limit/));
  await assert.rejects(queue.onSizeLessThan(1, 5), invalid(TypeError, /lane/));
  await assert.rejects(queue.onSizeLessThan(1, 'nope'), (error) => {
    assert.ok(error instanceof LaneNotFoundError);
    assert.equal(error.code, 'LANE_NOT_FOUND');
    return true;
  });
  // Nothing waits: at once, for the queue and for a lane.
  await queue.onSizeLessThan(1);
  await queue.onSizeLessThan(1, 'q');

  const quiet = await RedisQueue.connect(redisUrl(), { keyPrefix: uniquePrefix('size-less-than'), lanes: { q: { priority: 0 } }, events: false });
  t.after(() => quiet.clear());
  await assert.rejects(quiet.onSizeLessThan(1), (error) => {
    assert.equal(error.code, 'QUEUE');
    assert.match(error.message, /event stream/);
    return true;
  });
});
