// What a handler throws (or rejects with) reaches its submitter unchanged: the same
// Error object, message and stack. Queue errors carry a stable `code`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';

async function startedLane(options) {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 4 } }, options);
  await lane.start();
  return lane;
}

test('a plain handler that throws rejects the submit with that very error', async () => {
  const lane = await startedLane();
  let thrown;
  lane.handle('explode', function explodeHandler(payload) {
    thrown = new TypeError(`cannot handle ${payload.what}`);
    throw thrown;
  });
  await assert.rejects(lane.submit('work', 'explode', { what: 'this' }), (error) => {
    assert.equal(error, thrown);
    assert.equal(error.name, 'TypeError');
    assert.equal(error.message, 'cannot handle this');
    assert.match(error.stack, /explodeHandler/);
    return true;
  });
  await lane.shutdown();
});

test('an async handler that rejects rejects the submit with its error', async () => {
  const lane = await startedLane();
  class PaymentDeclined extends Error {
    constructor() {
      super('card declined');
      this.name = 'PaymentDeclined';
      this.code = 'CARD_DECLINED';
    }
  }
  lane.handle('charge', async function chargeCard() {
    await new Promise((resolve) => setImmediate(resolve));
    throw new PaymentDeclined();
  });
  await assert.rejects(lane.submit('work', 'charge'), (error) => {
    assert.ok(error instanceof PaymentDeclined);
    assert.equal(error.code, 'CARD_DECLINED');
    assert.match(error.stack, /chargeCard/);
    return true;
  });
  await lane.shutdown();
});

test('a thrown non-Error reaches the submitter unchanged', async () => {
  const lane = await startedLane();
  lane.handle('string', () => {
    throw 'plain string failure';
  });
  lane.handle('rejected-number', () => Promise.reject(42));
  lane.handle('undefined', () => Promise.reject(undefined));
  const caught = async (promise) => {
    try {
      await promise;
    } catch (thrown) {
      return { thrown };
    }
    assert.fail('expected the submit to reject');
  };
  assert.deepEqual(await caught(lane.submit('work', 'string')), { thrown: 'plain string failure' });
  assert.deepEqual(await caught(lane.submit('work', 'rejected-number')), { thrown: 42 });
  assert.deepEqual(await caught(lane.submit('work', 'undefined')), { thrown: undefined });
  await lane.shutdown();
});

test('results and payloads travel as JSON', async () => {
  const lane = await startedLane();
  lane.handle('echo', (payload) => payload);
  lane.handle('nothing', () => undefined);
  lane.handle('date', () => ({ at: new Date(0) }));
  lane.handle('bigint', () => 10n);
  const payload = { z: 1, a: [1, 'two', { three: 3 }], nested: { ok: true }, none: null };
  assert.deepEqual(await lane.submit('work', 'echo', payload), payload);
  assert.deepEqual(Object.keys(await lane.submit('work', 'echo', payload)), ['z', 'a', 'nested', 'none'], 'key order is kept');
  // A string is a string (not JSON text to parse): '42' stays '42'.
  assert.equal(await lane.submit('work', 'echo', '{"from":"a JSON string"}'), '{"from":"a JSON string"}');
  assert.equal(await lane.submit('work', 'echo', '42'), '42');
  assert.equal(await lane.submit('work', 'echo', 'hello'), 'hello');
  assert.equal(await lane.submit('work', 'echo'), null);
  assert.equal(await lane.submit('work', 'nothing'), null);
  await assert.rejects(lane.submit('work', 'date'), (error) => {
    assert.equal(error.name, 'TypeError');
    assert.equal(error.code, 'NOT_JSON');
    assert.equal(error.path, 'result.at');
    return true;
  });
  await assert.rejects(lane.submit('work', 'bigint'), (error) => {
    assert.equal(error.code, 'NOT_JSON');
    assert.equal(error.path, 'result');
    return true;
  });
  await lane.shutdown();
});

test('queue errors carry stable codes', async () => {
  const lane = await startedLane();
  lane.handle('ok', () => 'ok');
  await assert.rejects(lane.submit('missing', 'ok'), (error) => {
    assert.ok(error instanceof RangeError);
    assert.equal(error.code, 'LANE_NOT_FOUND');
    assert.match(error.message, /lane 'missing' not found; known lanes: work/);
    return true;
  });
  await assert.rejects(lane.submit('work', 'unregistered'), (error) => {
    assert.ok(error instanceof RangeError);
    assert.equal(error.code, 'HANDLER_NOT_FOUND');
    assert.match(error.message, /registered: ok/);
    return true;
  });
  await lane.shutdown();
  await assert.rejects(lane.submit('work', 'ok'), (error) => {
    assert.equal(error.code, 'SHUTDOWN');
    return true;
  });
});

test('drain rejects with TIMEOUT when work outlasts it', async () => {
  const lane = await startedLane();
  let release;
  lane.handle('slow', () => new Promise((resolve) => (release = resolve)));
  const slow = lane.submit('work', 'slow');
  await assert.rejects(lane.drain(20), (error) => error.code === 'TIMEOUT');
  release('done');
  assert.equal(await slow, 'done');
  await lane.drain(1000);
  await lane.shutdown();
});

test('handlers run on the JavaScript thread and may submit more work', async () => {
  const lane = await startedLane();
  lane.handle('leaf', ({ n }) => n * 2);
  lane.handle('parent', async ({ n }) => {
    const children = await Promise.all([lane.submit('work', 'leaf', { n }), lane.submit('work', 'leaf', { n: n + 1 })]);
    return children.reduce((a, b) => a + b, 0);
  });
  assert.equal(await lane.submit('work', 'parent', { n: 1 }), 6);
  await lane.shutdown();
});

test('a lane that was shut down says so', async () => {
  const lane = await startedLane();
  lane.handle('ok', () => 'ok');
  await lane.shutdown();
  assert.equal(lane.isShuttingDown, true);
  await lane.shutdown(); // a second shutdown resolves too
  assert.equal(await lane.shutdownNow(), 0);
  await assert.rejects(lane.start(), (error) => error.code === 'SHUTDOWN');
  await assert.rejects(lane.submitWithHandle('work', 'ok'), (error) => error.code === 'SHUTDOWN');
  const shutDown = (error) => error.code === 'SHUTDOWN' && /create a new Lane/.test(error.message);
  await assert.rejects(lane.stats(), shutDown);
  await assert.rejects(lane.cancel(1), shutDown);
  await assert.rejects(lane.command(1), shutDown);
  await assert.rejects(lane.deadLetters(), shutDown);
  const iterator = lane.events();
  assert.deepEqual(await iterator.next(), { value: undefined, done: true });
});

test('redrive without dead letters is refused', async () => {
  const lane = await startedLane();
  await assert.rejects(lane.redrive(1), (error) => error.code === 'QUEUE' && /keeps no dead letters/.test(error.message));
  await lane.shutdown();
});
