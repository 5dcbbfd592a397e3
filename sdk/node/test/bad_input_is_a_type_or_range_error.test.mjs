// Invalid arguments are rejected with a TypeError (wrong type) or a RangeError (value out
// of range) that says what is wrong; nothing is clamped, wrapped or ignored. Types and
// the range of the Rust type a number becomes are checked by the binding, naming the
// option's path; rules about values are the core's, whose message names the lane and
// the field.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULTS, Lane } from '@a3s-lab/lane';

function throwsConfig(build, ErrorClass, pattern) {
  assert.throws(build, (error) => {
    assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
    assert.equal(error.code, 'CONFIG');
    assert.match(error.message, pattern);
    return true;
  });
}

test('lane options are checked', async () => {
  throwsConfig(() => new Lane({ a: { priority: 256, maxConcurrency: 1 } }), RangeError, /lanes\.a\.priority must be between 0 and 255, got 256/);
  throwsConfig(() => new Lane({ a: { priority: -1, maxConcurrency: 1 } }), RangeError, /priority must be between 0 and 255, got -1/);
  throwsConfig(() => new Lane({ a: { priority: 1.5, maxConcurrency: 1 } }), RangeError, /priority must be a whole number, got 1\.5/);
  throwsConfig(() => new Lane({ a: { priority: '1', maxConcurrency: 1 } }), TypeError, /priority must be a number, got the string "1"/);
  throwsConfig(() => new Lane({ a: { priority: NaN, maxConcurrency: 1 } }), RangeError, /priority must be a finite number, got NaN/);
  throwsConfig(() => new Lane({ a: { priority: 0, maxConcurrency: -1 } }), RangeError, /lanes\.a\.maxConcurrency must be between 0 and 4294967295, got -1/);
  throwsConfig(() => new Lane({ a: { priority: 0, maxConcurrency: 0 } }), RangeError, /lane 'a': max_concurrency must be at least 1/);
  throwsConfig(() => new Lane({ a: { priority: 0, maxConcurrency: 2, minConcurrency: -3 } }), RangeError, /minConcurrency must be between 0/);
  throwsConfig(() => new Lane({ a: { priority: 0, maxConcurrency: 2, minConcurrency: 3 } }), RangeError, /min_concurrency \(3\) is greater than max_concurrency \(2\)/);
  throwsConfig(() => new Lane({ a: { priority: 0, maxConcurrency: 1, timeoutMs: 0 } }), RangeError, /lane 'a': timeout must be greater than zero/);
  throwsConfig(() => new Lane({ a: { priority: 0, timeoutMs: -5 } }), RangeError, /lanes\.a\.timeoutMs must be 0 or more, got -5/);
  throwsConfig(() => new Lane({ a: { priority: 0, timeoutMs: Infinity } }), RangeError, /lanes\.a\.timeoutMs must be a finite number, got Infinity/);
  throwsConfig(() => new Lane({ a: { priority: 0, cancelGraceMs: NaN } }), RangeError, /lanes\.a\.cancelGraceMs must be a finite number, got NaN/);
  throwsConfig(() => new Lane({ a: { priority: 0, timeoutMs: 1e300 } }), RangeError, /lanes\.a\.timeoutMs is too large/);
  throwsConfig(() => new Lane({ a: { maxConcurrency: 1 } }), TypeError, /lanes\.a\.priority is required/);
  // maxConcurrency is not required: like minConcurrency it defaults to the core's
  // LaneConfig::default(), as in Rust and Python.
  const defaulted = new Lane({ a: { priority: 0 } });
  assert.equal((await defaulted.stats()).lanes.a.maxConcurrency, DEFAULTS.lane.max_concurrency);
  throwsConfig(() => new Lane({ a: { priority: 0, maxConcurency: 1 } }), TypeError, /unknown option 'maxConcurency'; known options: priority, minConcurrency, maxConcurrency/);
  throwsConfig(() => new Lane({ a: 5 }), TypeError, /lanes\.a must be an object of lane options, got 5/);
  throwsConfig(() => new Lane({}), RangeError, /at least one lane/);
  throwsConfig(() => new Lane([]), TypeError, /lanes must be an object mapping lane ids to lane options, got an array/);
});

test('retry options are checked', () => {
  const withRetry = (retry) => () => new Lane({ a: { priority: 0, maxConcurrency: 1, retry } });
  throwsConfig(withRetry(5), TypeError, /lanes\.a\.retry must be an object like \{ maxRetries: 3 \}, got 5/);
  throwsConfig(withRetry({ maxRetries: 1.5 }), RangeError, /retry\.maxRetries must be a whole number, got 1\.5/);
  throwsConfig(withRetry({ maxRetries: 1, initialDelayMs: '1s' }), TypeError, /retry\.initialDelayMs must be a number, got the string "1s"/);
  throwsConfig(withRetry({ maxRetries: -1 }), RangeError, /maxRetries must be between 0/);
  throwsConfig(withRetry({ maxRetries: 1, multiplier: 0.5 }), RangeError, /lanes\.a\.retry: .*multiplier must be a finite number of at least 1\.0 \(got 0\.5\)/);
  throwsConfig(withRetry({ maxRetries: 1, initialDelayMs: 500, maxDelayMs: 100 }), RangeError, /max_delay .* is shorter than initial_delay/);
  throwsConfig(withRetry({ maxRetries: 1, jitter: 'some' }), RangeError, /lanes\.a\.retry\.jitter: .*retry jitter 'some' is not one of none, full, equal/);
});

test('queue options are checked', () => {
  const lanes = { a: { priority: 0, minConcurrency: 1, maxConcurrency: 2 }, b: { priority: 1, minConcurrency: 1, maxConcurrency: 2 } };
  throwsConfig(() => new Lane(lanes, { maxConcurrency: 0 }), RangeError, /global max_concurrency must be at least 1/);
  throwsConfig(() => new Lane(lanes, { maxConcurrency: -2 }), RangeError, /options\.maxConcurrency must be between 0 and 4294967295, got -2/);
  throwsConfig(() => new Lane(lanes, { maxConcurrency: 'all' }), TypeError, /options\.maxConcurrency must be a number or null, got the string "all"/);
  throwsConfig(() => new Lane(lanes, { deadLetterCapacity: 0 }), RangeError, /a dead-letter queue of size 0 keeps nothing/);
  throwsConfig(() => new Lane(lanes, { maxConcurrency: 1 }), RangeError, /min_concurrency would add up to 2, more than the global max_concurrency of 1/);
  throwsConfig(() => new Lane(lanes, { eventCapacity: 0 }), RangeError, /event_capacity must be from 1 to 16777216/);
  throwsConfig(() => new Lane(lanes, { eventCapacity: 2 ** 25 }), RangeError, /event_capacity must be from 1 to 16777216/);
  throwsConfig(() => new Lane(lanes, { storage: './somewhere' }), TypeError, /options\.storage must be an object like \{ path/);
  throwsConfig(() => new Lane(lanes, { storage: { path: '' } }), RangeError, /storage\.path must not be empty/);
  throwsConfig(() => new Lane(lanes, { storage: { path: '/tmp/x', sync: 'sometimes' } }), RangeError, /sync must be one of 'full', 'normal'/);
  throwsConfig(() => new Lane(lanes, { budget: 3 }), TypeError, /unknown option 'budget'/);
  throwsConfig(() => new Lane(lanes, { metrics: 'yes' }), TypeError, /options\.metrics must be true or false, got the string "yes"/);
  throwsConfig(() => new Lane(lanes, 7), TypeError, /options must be an object of queue options, got 7/);
});

test('method arguments are checked', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  const invalid = (ErrorClass, pattern) => (error) => {
    assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, pattern);
    return true;
  };
  assert.throws(() => lane.handle(42, () => {}), invalid(TypeError, /commandType must be a string, got 42/));
  assert.throws(() => lane.handle('', () => {}), invalid(RangeError, /commandType must not be empty/));
  assert.throws(() => lane.handle('job', 'not a function'), invalid(TypeError, /handler of 'job' must be a function, got the string "not a function"/));
  lane.handle('job', () => null);
  await lane.start();

  await assert.rejects(lane.submit(7, 'job'), invalid(TypeError, /lane must be a string, got 7/));
  await assert.rejects(lane.submit('work', null), invalid(TypeError, /commandType must be a string, got null/));
  const notJson = (pattern) => (error) => {
    assert.ok(error instanceof TypeError, `expected a TypeError, got ${error.name}: ${error.message}`);
    assert.equal(error.code, 'NOT_JSON');
    assert.match(error.message, pattern);
    return true;
  };
  await assert.rejects(lane.submit('work', 'job', { big: 1n }), notJson(/^payload\.big is not JSON: the bigint 1n/));
  await assert.rejects(lane.submit('work', 'job', () => {}), notJson(/^payload is not JSON: a function/));
  await assert.rejects(lane.submit('work', 'job', {}, { signal: 'abort' }), invalid(TypeError, /options\.signal must be an AbortSignal, got string/));
  await assert.rejects(lane.submit('work', 'job', {}, { timeout: 5 }), invalid(TypeError, /unknown submit option 'timeout'/));
  await assert.rejects(lane.submitWithHandle('nowhere', 'job'), (error) => error.code === 'LANE_NOT_FOUND');

  await assert.rejects(lane.cancel(-1), invalid(RangeError, /commandId must be a whole number of 0 or more, got -1/));
  await assert.rejects(lane.cancel('1'), invalid(TypeError, /commandId must be a number/));
  await assert.rejects(lane.command(1.5), invalid(RangeError, /commandId must be a whole number of 0 or more, got 1\.5/));
  assert.equal(await lane.cancel(999_999), 'unknown');
  assert.throws(() => lane.cancelLane('nowhere'), (error) => error instanceof RangeError && error.code === 'LANE_NOT_FOUND');
  await assert.rejects(lane.pauseLane('nowhere'), (error) => error instanceof RangeError && error.code === 'LANE_NOT_FOUND');
  await assert.rejects(lane.resumeLane(''), invalid(RangeError, /laneId must not be empty/));
  await assert.rejects(lane.pauseLane('work', -5), invalid(RangeError, /durationMs must be 0 or more, got -5/));
  await assert.rejects(lane.pauseLane('work', 0), invalid(RangeError, /durationMs: .*a timed pause must be longer than zero/));
  await assert.rejects(lane.pauseLane('work', 1e22), invalid(RangeError, /durationMs: .*longer than a year/));
  await assert.rejects(lane.pauseLane('work', '5s'), invalid(TypeError, /durationMs must be a number, got the string "5s"/));
  await assert.rejects(lane.deadLetters(-1), invalid(RangeError, /limit must be between 0 and 9007199254740991, got -1/));
  await assert.rejects(lane.deadLetters(1.5), invalid(RangeError, /limit must be a whole number, got 1\.5/));
  await assert.rejects(lane.drain(-1), invalid(RangeError, /timeoutMs must be 0 or more, got -1/));
  await assert.rejects(lane.drain('soon'), invalid(TypeError, /timeoutMs must be a number, got the string "soon"/));
  await assert.rejects(lane.redrive(-2), invalid(RangeError, /commandId must be a whole number of 0 or more, got -2/));
  assert.throws(() => lane.on('queue.command.complete', () => {}), invalid(RangeError, /unknown event key 'queue\.command\.complete'; use '\*' or one of: queue\.command\.submitted/));
  assert.throws(() => lane.on('*', 'listener'), invalid(TypeError, /listener must be a function/));
  assert.throws(() => lane.events(['queue.command.completed', 5]), invalid(TypeError, /event keys must be strings, got 5/));
  assert.throws(() => lane.events('*'), invalid(RangeError, /unknown event key '\*'/));
  // Without deadLetterCapacity the lane keeps no dead letters: there are none to list.
  assert.deepEqual(await lane.deadLetters(), []);
  await lane.shutdown();
});
