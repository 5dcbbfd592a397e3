// The JSON rule (docs/SDK_RULES.md), the same in both SDKs: a payload, result or progress
// JSON cannot hold is refused — never copied lossily — with code NOT_JSON (a
// LaneNotJsonError, also a TypeError) whose `path` and message say where. A string is a
// string. A thrown value reaches the submitter unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane, LaneError, LaneNotJsonError } from '@a3s-lab/lane';

async function echoLane() {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 4 } });
  lane.handle('echo', (payload) => payload);
  await lane.start();
  return lane;
}

function refused(path, what) {
  return (error) => {
    assert.ok(error instanceof LaneNotJsonError, `expected a LaneNotJsonError, got ${error}`);
    assert.ok(error instanceof TypeError);
    assert.ok(error instanceof LaneError);
    assert.equal(error.code, 'NOT_JSON');
    assert.equal(error.path, path);
    assert.ok(error.message.startsWith(`${path} is not JSON: `), error.message);
    assert.match(error.message, what);
    return true;
  };
}

test('payloads JSON cannot hold are refused at submit, naming where', async () => {
  const lane = await echoLane();
  const cycle = { a: {} };
  cycle.a.back = cycle;
  let deep = 1;
  for (let i = 0; i < 130; i++) deep = [deep];
  class Point {
    constructor() {
      this.x = 1;
    }
  }
  const cases = [
    [{ items: [0, 1, 2, { x: NaN }] }, 'payload.items[3].x', /the number NaN/],
    [Infinity, 'payload', /the number Infinity/],
    [{ n: -Infinity }, 'payload.n', /the number -Infinity/],
    [{ big: 10n }, 'payload.big', /the bigint 10n/],
    [new Map([['a', 1]]), 'payload', /an instance of Map/],
    [{ s: new Set() }, 'payload.s', /an instance of Set/],
    [{ at: new Date(0) }, 'payload.at', /an instance of Date/],
    [{ bytes: Buffer.from('x') }, 'payload.bytes', /an instance of Buffer/],
    [{ f: () => 1 }, 'payload.f', /a function/],
    [{ s: Symbol('x') }, 'payload.s', /a symbol/],
    [[1, undefined], 'payload[1]', /undefined/],
    [{ 'user id': [new Point()] }, 'payload["user id"][0]', /an instance of Point/],
    [cycle, 'payload.a.back', /a cycle/],
    ['\ud800', 'payload', /a string with a lone surrogate/],
    [{ text: ['ok', 'half \udc00'] }, 'payload.text[1]', /a string with a lone surrogate/],
    [deep, `payload${'[0]'.repeat(128)}`, /nesting deeper than 128 levels/],
  ];
  for (const [payload, path, what] of cases) {
    await assert.rejects(lane.submit('q', 'echo', payload), refused(path, what));
  }
  assert.equal((await lane.stats()).lanes.q.pending + lane.running, 0, 'nothing refused was queued');
  await lane.shutdown();
});

test('what JSON holds arrives as it was; a string is a string; undefined keys are absent', async () => {
  const lane = await echoLane();
  const payload = { z: 1, a: [1, 'two', { three: 3 }, null, true], nested: { ok: -0.5 }, none: null, proto: Object.create(null) };
  assert.deepEqual(await lane.submit('q', 'echo', payload), { ...payload, proto: {} });
  assert.equal(await lane.submit('q', 'echo', '42'), '42');
  assert.equal(await lane.submit('q', 'echo', 'hello'), 'hello');
  assert.equal(await lane.submit('q', 'echo', '{"a":1}'), '{"a":1}');
  assert.deepEqual(await lane.submit('q', 'echo', { kept: 1, gone: undefined }), { kept: 1 });
  assert.equal(await lane.submit('q', 'echo'), null);
  assert.equal(await lane.submit('q', 'echo', 1e300), 1e300);
  for (const n of [0, -0, 42, -7, 2 ** 53 - 1, 2 ** 60, 0.1, -1.5e-300, true, false, null]) {
    assert.equal(await lane.submit('q', 'echo', n), n === -0 ? 0 : n, `${n} arrives as it was`);
  }
  assert.equal(await lane.submit('q', 'echo', 'snow ☃ 𝄞'), 'snow ☃ 𝄞');
  await lane.shutdown();
});

test('a result JSON cannot hold fails its command with NOT_JSON, without a retry', async () => {
  const lane = new Lane({ q: { priority: 0, retry: { maxRetries: 3, initialDelayMs: 1 } } });
  let runs = 0;
  lane.handle('nan', () => {
    runs += 1;
    return { ok: true, ratio: NaN };
  });
  lane.handle('map', async () => new Map());
  lane.handle('key', () => ({ 'user id': [() => 1] }));
  await lane.start();
  await assert.rejects(lane.submit('q', 'nan'), refused('result.ratio', /the number NaN/));
  assert.equal(runs, 1, 'a result that is not JSON is not retried');
  await assert.rejects(lane.submit('q', 'map'), refused('result', /an instance of Map/));
  await assert.rejects(lane.submit('q', 'key'), refused('result["user id"][0]', /a function/));
  await lane.shutdown();
});

test('progress JSON cannot hold throws NOT_JSON in the handler', async () => {
  const lane = new Lane({ q: { priority: 0 } });
  lane.handle('report', (_payload, ctx) => {
    try {
      ctx.reportProgress({ done: 0.5, eta: Infinity });
    } catch (error) {
      return { path: error.path, code: error.code };
    }
    return 'not refused';
  });
  await lane.start();
  assert.deepEqual(await lane.submit('q', 'report'), { path: 'progress.eta', code: 'NOT_JSON' });
  await lane.shutdown();
});

test('a thrown value reaches the submitter unchanged', async () => {
  const lane = new Lane({ q: { priority: 0 } });
  const custom = { reason: 'not an Error' };
  const error = new RangeError('as thrown');
  lane.handle('string', () => {
    throw 'plain string';
  });
  lane.handle('object', async () => {
    throw custom;
  });
  lane.handle('error', () => Promise.reject(error));
  await lane.start();
  const thrown = async (type) => {
    try {
      await lane.submit('q', type);
    } catch (value) {
      return value;
    }
    assert.fail('expected a rejection');
  };
  assert.equal(await thrown('string'), 'plain string');
  assert.equal(await thrown('object'), custom);
  assert.equal(await thrown('error'), error);
  await lane.shutdown();
});
