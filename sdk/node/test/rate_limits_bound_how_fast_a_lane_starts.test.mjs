// A lane's rateLimit bounds how many of its commands start within a window: once the
// permits are spent the lane is throttled (stats say so) and starts nothing more until a
// permit is due. The windows here are an hour long, so the upper bounds hold however
// slow the machine is; nothing asserts how long anything took.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { waitFor } from './support.mjs';

/** A lane `a` with `rateLimit`, `n` submitted commands, and how many of them started. */
async function limited(rateLimit, n) {
  const lane = new Lane({ a: { priority: 0, maxConcurrency: 10, rateLimit } });
  let started = 0;
  lane.handle('job', () => {
    started += 1;
    return started;
  });
  await lane.start();
  const results = Array.from({ length: n }, () => lane.submit('a', 'job').catch((error) => error.code));
  return { lane, results, started: () => started };
}

/** Waits until the limiter refused a start, then checks the bound and cleans up. */
async function expectBound(setup, allowed, n) {
  const { lane, results, started } = setup;
  // Throttled: the limiter refused a start. The handlers of the admitted commands run
  // on this thread a moment later.
  await waitFor(async () => (await lane.stats()).lanes.a.throttled && started() >= allowed, 'the lane to be throttled');
  // The queue's own count: the commands beyond the limit never started.
  assert.equal((await lane.stats()).lanes.a.pending, n - allowed);
  assert.equal(started(), allowed, `${started()} commands started, the limit allows ${allowed}`);
  // A later look sees no more starts: the next permit is far away.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(started(), allowed);
  assert.equal((await lane.stats()).lanes.a.pending, n - allowed);
  // The admitted commands (the first ones, FIFO) finish; only those held back are left
  // to cancel. (Until its result is booked a finished handler's command still runs.)
  await Promise.all(results.slice(0, allowed));
  assert.equal(lane.cancelLane('a'), n - allowed);
  const outcomes = await Promise.all(results);
  assert.deepEqual(
    outcomes.filter((outcome) => outcome === 'CANCELLED').length,
    n - allowed,
    'the commands held back by the limit were still pending when cancelled',
  );
  await lane.shutdown();
}

test('{ perHour: 3 } starts at most 3 of 6 commands', async () => {
  await expectBound(await limited({ perHour: 3 }, 6), 3, 6);
});

test('{ perMinute: n } and { perSecond: n } hold n permits at once', async () => {
  // A full bucket admits `n` at once; refills come one every period / n.
  await expectBound(await limited({ perMinute: 2 }, 4), 2, 4);
  const fast = await limited({ perSecond: 1000 }, 50);
  assert.equal((await Promise.all(fast.results)).length, 50);
  assert.equal(fast.started(), 50);
  await fast.lane.shutdown();
});

test('{ tokenBucket } admits its burst, then waits for refills', async () => {
  await expectBound(await limited({ tokenBucket: { rate: 1, periodMs: 3_600_000, burst: 2 } }, 5), 2, 5);
  // Without burst, the bucket holds `rate` permits.
  await expectBound(await limited({ tokenBucket: { rate: 3, periodMs: 3_600_000 } }, 5), 3, 5);
});

test('{ slidingWindow } allows `limit` starts per window', async () => {
  await expectBound(await limited({ slidingWindow: { limit: 2, windowMs: 3_600_000 } }, 4), 2, 4);
});

test('a throttled lane starts again when its next permit is due, without polling', async () => {
  // One permit every 20 ms, no burst: every command runs eventually.
  const { lane, results, started } = await limited({ tokenBucket: { rate: 1, periodMs: 20, burst: 1 } }, 5);
  assert.deepEqual((await Promise.all(results)).sort(), [1, 2, 3, 4, 5]);
  assert.equal(started(), 5);
  assert.equal((await lane.stats()).lanes.a.throttled, false);
  await lane.shutdown();
});

test('lanes without a rate limit are never throttled', async () => {
  const lane = new Lane({ free: { priority: 0, maxConcurrency: 4 } });
  lane.handle('job', () => 1);
  await lane.start();
  await Promise.all(Array.from({ length: 20 }, () => lane.submit('free', 'job')));
  assert.equal((await lane.stats()).lanes.free.throttled, false);
  await lane.shutdown();
});

function throwsConfig(rateLimit, ErrorClass, pattern) {
  assert.throws(
    () => new Lane({ a: { priority: 0, maxConcurrency: 1, rateLimit } }),
    (error) => {
      assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error.name}: ${error.message}`);
      assert.equal(error.code, 'CONFIG');
      assert.match(error.message, pattern);
      return true;
    },
  );
}

test('invalid rate limits are a TypeError or RangeError saying what is wrong', () => {
  throwsConfig(5, TypeError, /lanes\.a\.rateLimit must be an object naming one limit: \{ perSecond: n \}/);
  throwsConfig(null, TypeError, /lanes\.a\.rateLimit must be an object naming one limit/);
  throwsConfig({}, TypeError, /lanes\.a\.rateLimit must name one limit: .* \(leave rateLimit out for no limit\)/);
  throwsConfig({ perSecond: 1, perMinute: 2 }, TypeError, /names both 'perSecond' and 'perMinute'; give exactly one limit/);
  throwsConfig({ perDay: 1 }, TypeError, /unknown option 'perDay'; known options: perSecond, perMinute, perHour, tokenBucket, slidingWindow/);
  throwsConfig({ perSecond: 0 }, RangeError, /lane 'a': rate limit: a rate of 0 commands per 1s would never start a command/);
  throwsConfig({ perSecond: -1 }, RangeError, /rateLimit\.perSecond must be between 0 and 4294967295, got -1/);
  throwsConfig({ perMinute: 1.5 }, RangeError, /perMinute must be a whole number, got 1\.5/);
  throwsConfig({ perHour: '10' }, TypeError, /perHour must be a number, got the string "10"/);
  throwsConfig({ tokenBucket: { periodMs: 1000 } }, TypeError, /tokenBucket\.rate is required/);
  throwsConfig({ tokenBucket: { rate: 1 } }, TypeError, /tokenBucket\.periodMs is required/);
  throwsConfig({ tokenBucket: { rate: 1, periodMs: 0 } }, RangeError, /lane 'a': rate limit: the token bucket's period must be longer than zero/);
  throwsConfig({ tokenBucket: { rate: 1, periodMs: -1 } }, RangeError, /tokenBucket\.periodMs must be 0 or more, got -1/);
  throwsConfig({ tokenBucket: { rate: 1, periodMs: 1000, burst: 0 } }, RangeError, /lane 'a': rate limit: a burst of 0 would never hold a permit/);
  throwsConfig({ tokenBucket: { rate: 1, periodMs: 1000, burst: -1 } }, RangeError, /tokenBucket\.burst must be between 0 and 4294967295, got -1/);
  throwsConfig({ tokenBucket: { rate: 1, periodMs: 1000, size: 3 } }, TypeError, /unknown option 'size'; known options: rate, periodMs, burst/);
  throwsConfig({ slidingWindow: { limit: 0, windowMs: 1000 } }, RangeError, /lane 'a': rate limit: a limit of 0 commands per 1s would never start a command/);
  throwsConfig({ slidingWindow: { limit: 2 } }, TypeError, /slidingWindow\.windowMs is required/);
  throwsConfig({ slidingWindow: 3 }, TypeError, /slidingWindow must be an object like \{ limit: 10, windowMs: 1000 \}, got 3/);
});
