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

test('group options are checked, with the core message for the rules about values', () => {
  const withGroups = (options) => () => new Lane({ a: { priority: 0, ...options } });
  throwsConfig(withGroups({ groupMaxConcurrency: 0 }), RangeError, /lane 'a' default group limits \(groupMaxConcurrency, groupRateLimit\): a group maxConcurrency of 0 would never start a command; use at least 1, or pauseGroup to hold a group/);
  throwsConfig(withGroups({ groupMaxConcurrency: -1 }), RangeError, /lanes\.a\.groupMaxConcurrency must be between 0 and 4294967295, got -1/);
  throwsConfig(withGroups({ groupMaxConcurrency: '2' }), TypeError, /lanes\.a\.groupMaxConcurrency must be a number, got the string "2"/);
  throwsConfig(withGroups({ groupRateLimit: { slidingWindow: { limit: 5, windowMs: 1000 } } }), RangeError, /lane 'a' default group limits .*: a group rate limit must be a token bucket \(\{ perSecond: n \}, \{ perMinute: n \}, \{ perHour: n \} or \{ tokenBucket: \{ rate, periodMs, burst \} \}\); a sliding window would keep every start of every group/);
  throwsConfig(withGroups({ groupRateLimit: {} }), TypeError, /lanes\.a\.groupRateLimit must name one limit: .* \(leave groupRateLimit out for no limit\)/);
  throwsConfig(withGroups({ groupRateLimit: 5 }), TypeError, /lanes\.a\.groupRateLimit must be an object naming one limit/);
  throwsConfig(withGroups({ groupOverrides: { vip: { maxConcurrency: 0 } } }), RangeError, /lane 'a' group 'vip': a group maxConcurrency of 0 would never start a command/);
  throwsConfig(withGroups({ groupOverrides: { vip: { rateLimit: { slidingWindow: { limit: 1, windowMs: 10 } } } } }), RangeError, /lane 'a' group 'vip': a group rate limit must be a token bucket/);
  throwsConfig(withGroups({ groupOverrides: { '': { maxConcurrency: 1 } } }), RangeError, /lane 'a' groupOverrides: a group key must not be empty$/);
  throwsConfig(withGroups({ groupOverrides: { ['x'.repeat(257)]: { maxConcurrency: 1 } } }), RangeError, /lane 'a' groupOverrides: a group key of 257 bytes is longer than 256/);
  throwsConfig(withGroups({ groupOverrides: { vip: { maxConcurency: 1 } } }), TypeError, /lanes\.a\.groupOverrides\.vip: unknown option 'maxConcurency'; known options: maxConcurrency, rateLimit/);
  throwsConfig(withGroups({ groupOverrides: { vip: 3 } }), TypeError, /lanes\.a\.groupOverrides\.vip must be an object like \{ maxConcurrency: 2/);
  throwsConfig(withGroups({ groupOverrides: [] }), TypeError, /lanes\.a\.groupOverrides must be an object mapping group keys to group limits/);
  throwsConfig(withGroups({ groupMaxConcurency: 1 }), TypeError, /unknown option 'groupMaxConcurency'; known options: .*groupMaxConcurrency, groupRateLimit, groupOverrides/);
});

test('group arguments are checked', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  lane.handle('job', () => null);
  await lane.start();
  const invalid = (ErrorClass, pattern) => (error) => {
    assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, pattern);
    return true;
  };
  await assert.rejects(lane.submit('work', 'job', {}, { group: 5 }), invalid(TypeError, /options\.group must be a string \(a group key, such as a tenant id\), got 5/));
  await assert.rejects(lane.submit('work', 'job', {}, { group: '' }), invalid(RangeError, /submit options: a group key must not be empty; leave options\.group out for a command of no group/));
  await assert.rejects(lane.submit('work', 'job', {}, { group: 'é'.repeat(129) }), invalid(RangeError, /a group key of 258 bytes is longer than 256/));
  await assert.rejects(lane.submit('work', 'job', {}, { group: 'a\nb' }), invalid(RangeError, /a group key must not contain control characters/));
  await assert.rejects(lane.submit('work', 'job', {}, { group: '\ud800' }), invalid(TypeError, /options\.group is a string with a lone surrogate/));
  await assert.rejects(lane.submit('work', 'job', {}, { groups: 'a' }), invalid(TypeError, /unknown submit option 'groups'.*'group' \(a string\)/));
  await assert.rejects(lane.pauseGroup('work', ''), invalid(RangeError, /^group: a group key must not be empty/));
  await assert.rejects(lane.resumeGroup('work', 'x'.repeat(300)), invalid(RangeError, /^group: a group key of 300 bytes is longer than 256/));
  await assert.rejects(lane.cancelGroup('work', 7), invalid(TypeError, /group must be a string, got 7/));
  await assert.rejects(lane.groupStatus('', 'g'), invalid(RangeError, /laneId must not be empty/));
  await assert.rejects(lane.groupStatus('nowhere', 'g'), (error) => error instanceof RangeError && error.code === 'LANE_NOT_FOUND');
  await assert.rejects(lane.pauseGroup('nowhere', 'g'), (error) => error instanceof RangeError && error.code === 'LANE_NOT_FOUND');
  await assert.rejects(lane.groups('nowhere'), (error) => error instanceof RangeError && error.code === 'LANE_NOT_FOUND');
  await assert.rejects(lane.groups('work', { limit: 0 }), invalid(RangeError, /options\.limit/));
  await assert.rejects(lane.groups('work', { page: 2 }), invalid(TypeError, /unknown option 'page'/));
  await lane.shutdown();
});
