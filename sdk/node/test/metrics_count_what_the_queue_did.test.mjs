// With { metrics: true } the queue records counters, gauges and latency histograms per
// lane and in total; lane.metrics() reads them and lane.metricsPrometheus() renders them.
// A known workload gives exactly its counts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, waitFor } from './support.mjs';

const COUNTERS = [
  'lane.commands.cancelled',
  'lane.commands.completed',
  'lane.commands.dead_lettered',
  'lane.commands.deduplicated',
  'lane.commands.delayed',
  'lane.commands.expired',
  'lane.commands.failed',
  'lane.commands.promoted',
  'lane.commands.rejected_full',
  'lane.commands.retried',
  'lane.commands.started',
  'lane.commands.submitted',
  'lane.commands.timed_out',
  'lane.schedules.fired',
  'lane.schedules.skipped',
  'lane.throttled',
];

test('10 commands, 3 of them throwing, give exactly those counters', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 4 }, idle: { priority: 1, maxConcurrency: 1 } }, { metrics: true });
  lane.handle('job', ({ n }) => {
    if (n % 4 === 1) throw new Error(`job ${n} failed`);
    return n;
  });
  await lane.start();
  const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, n) => lane.submit('work', 'job', { n })));
  assert.equal(outcomes.filter((outcome) => outcome.status === 'rejected').length, 3);
  // Gauges are reported after the queue's lock is released; drain waits for them.
  await lane.drain(10_000);

  const metrics = lane.metrics();
  assert.deepEqual(Object.keys(metrics.counters), COUNTERS);
  assert.deepEqual(metrics.counters, {
    'lane.commands.cancelled': 0,
    'lane.commands.completed': 7,
    'lane.commands.dead_lettered': 0,
    'lane.commands.deduplicated': 0,
    'lane.commands.delayed': 0,
    'lane.commands.expired': 0,
    'lane.commands.failed': 3,
    'lane.commands.promoted': 0,
    'lane.commands.rejected_full': 0,
    'lane.commands.retried': 0,
    'lane.commands.started': 10,
    'lane.commands.submitted': 10,
    'lane.commands.timed_out': 0,
    'lane.schedules.fired': 0,
    'lane.schedules.skipped': 0,
    'lane.throttled': 0,
  });
  assert.deepEqual(metrics.lanes.work.counters, metrics.counters);
  // Every lane of the queue has its gauges (read from the queue); an idle one counts nothing.
  assert.deepEqual(metrics.lanes.idle.gauges, { 'lane.commands.active': 0, 'lane.queue.depth': 0 });
  assert.ok(Object.values(metrics.lanes.idle.counters).every((n) => n === 0));
  assert.deepEqual(metrics.gauges, { 'lane.commands.active': 0, 'lane.queue.depth': 0 });
  assert.deepEqual(metrics.lanes.work.gauges, { 'lane.commands.active': 0, 'lane.queue.depth': 0 });

  const latency = metrics.histograms['lane.command.latency_ms'];
  assert.equal(latency.count, 10, 'completed and failed runs both have a latency');
  assert.ok(latency.min >= 0 && latency.min <= latency.p50 && latency.p50 <= latency.p90);
  assert.ok(latency.p90 <= latency.p95 && latency.p95 <= latency.p99 && latency.p99 <= latency.max);
  assert.ok(Math.abs(latency.mean * latency.count - latency.sum) < 1e-6 * Math.max(1, latency.sum));
  assert.equal(metrics.histograms['lane.command.wait_ms'].count, 10);
  assert.equal(typeof metrics.timestamp, 'number');

  const text = lane.metricsPrometheus();
  assert.match(text, /^# HELP lane_commands_cancelled_total /);
  assert.match(text, /\n# TYPE lane_commands_failed_total counter\n/);
  assert.match(text, /\nlane_commands_submitted_total\{lane="work"\} 10\n/);
  assert.match(text, /\nlane_commands_completed_total\{lane="work"\} 7\n/);
  assert.match(text, /\nlane_commands_failed_total\{lane="work"\} 3\n/);
  assert.match(text, /\n# TYPE lane_command_latency_ms summary\n/);
  assert.match(text, /\nlane_command_latency_ms_count\{lane="work"\} 10\n/);
  assert.match(text, /\nlane_command_latency_ms\{lane="work",quantile="0\.99"\} [0-9.e+-]+\n/);
  assert.match(text, /\nlane_queue_depth\{lane="work"\} 0\n/);

  await lane.shutdown();
  assert.equal(lane.metrics().counters['lane.commands.submitted'], 10, 'metrics stay readable after shutdown');
});

test('retries, timeouts, cancels and dead letters are counted too', async () => {
  const lane = new Lane(
    {
      flaky: { priority: 0, maxConcurrency: 1, retry: { maxRetries: 1, initialDelayMs: 1 } },
      slow: { priority: 0, maxConcurrency: 1, timeoutMs: 20 },
      held: { priority: 0, maxConcurrency: 1 },
    },
    { metrics: true, deadLetterCapacity: 10 },
  );
  let calls = 0;
  lane.handle('flaky', () => {
    calls += 1;
    if (calls === 1) throw new Error('first attempt fails');
    return 'ok';
  });
  lane.handle('hang', (_payload, ctx) => new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))));
  const blockerStarted = deferred();
  const release = deferred();
  lane.handle('block', async () => {
    blockerStarted.resolve();
    await release.promise;
  });
  await lane.start();

  assert.equal(await lane.submit('flaky', 'flaky'), 'ok');
  await assert.rejects(lane.submit('slow', 'hang'), (error) => error.code === 'TIMEOUT');
  const blocker = lane.submit('held', 'block');
  await blockerStarted.promise;
  const pending = await lane.submitWithHandle('held', 'block');
  assert.equal(await pending.cancel(), 'cancelled');
  await assert.rejects(pending.result, (error) => error.code === 'CANCELLED');
  release.resolve();
  await blocker;
  await lane.drain(10_000);

  const { counters, lanes } = lane.metrics();
  assert.equal(counters['lane.commands.submitted'], 4);
  assert.equal(counters['lane.commands.started'], 4, 'flaky twice, hang once, the blocker once');
  assert.equal(counters['lane.commands.retried'], 1);
  assert.equal(counters['lane.commands.completed'], 2);
  assert.equal(counters['lane.commands.timed_out'], 1);
  assert.equal(counters['lane.commands.dead_lettered'], 1, 'the timed-out command');
  assert.equal(counters['lane.commands.cancelled'], 1);
  assert.equal(counters['lane.commands.failed'], 0);
  assert.equal(lanes.flaky.counters['lane.commands.retried'], 1);
  assert.equal(lanes.slow.counters['lane.commands.timed_out'], 1);
  assert.equal(lanes.held.counters['lane.commands.cancelled'], 1);
  await lane.shutdown();
});

test('delayed, promoted, expired and refused-full submits are counted', async () => {
  const lane = new Lane(
    {
      later: { priority: 0, maxConcurrency: 1 },
      paused: { priority: 0, maxConcurrency: 1 },
      small: { priority: 0, maxConcurrency: 1, maxWaiting: 1 },
    },
    { metrics: true },
  );
  lane.handle('job', (payload) => payload);
  await lane.start();
  // Delayed, then promoted when its time comes, then run.
  assert.equal(await lane.submit('later', 'job', 'delayed', { delayMs: 20 }), 'delayed');
  // Not started by its deadline in a paused lane: expired.
  await lane.pauseLane('paused');
  await assert.rejects(lane.submit('paused', 'job', 'late', { startWithinMs: 20 }), (error) => error.code === 'EXPIRED');
  // One waits in a paused lane of maxWaiting 1: the next is refused.
  await lane.pauseLane('small');
  const waiting = await lane.submitWithHandle('small', 'job', 'waits');
  await assert.rejects(lane.submit('small', 'job', 'refused'), (error) => error.code === 'LANE_FULL');
  assert.equal(await waiting.cancel(), 'cancelled');
  await assert.rejects(waiting.result, (error) => error.code === 'CANCELLED');
  await lane.drain(10_000);

  const { counters, lanes } = lane.metrics();
  assert.equal(counters['lane.commands.delayed'], 1);
  assert.equal(counters['lane.commands.promoted'], 1);
  assert.equal(counters['lane.commands.expired'], 1);
  assert.equal(counters['lane.commands.rejected_full'], 1);
  assert.equal(counters['lane.commands.deduplicated'], 0);
  assert.equal(lanes.later.counters['lane.commands.delayed'], 1);
  assert.equal(lanes.later.counters['lane.commands.promoted'], 1);
  assert.equal(lanes.paused.counters['lane.commands.expired'], 1);
  assert.equal(lanes.small.counters['lane.commands.rejected_full'], 1);
  const text = lane.metricsPrometheus();
  assert.match(text, /\nlane_commands_delayed_total\{lane="later"\} 1\n/);
  assert.match(text, /\nlane_commands_rejected_full_total\{lane="small"\} 1\n/);
  await lane.shutdown();
});

test("a schedule's instants count in its lane's lane.schedules.fired and lane.schedules.skipped", async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 2 }, other: { priority: 1 } }, { metrics: true });
  lane.handle('job', (payload) => payload);
  await lane.start();
  await lane.putSchedule({ name: 'tick', lane: 'work', commandType: 'job', everyMs: 100 });
  await waitFor(async () => (await lane.schedules())[0].fired >= 2, 'two instants fired');
  await lane.pauseSchedule('tick');
  const { fired } = (await lane.schedules())[0];
  // Paused for more than an instant: resuming skips the instants missed meanwhile.
  await waitFor(async () => Date.now() > (await lane.schedules())[0].nextFireAt + 150, 'an instant missed while paused');
  await lane.resumeSchedule('tick');
  const { skipped } = (await lane.schedules())[0];
  assert.ok(skipped >= 1, `skipped ${skipped}`);
  const { counters, lanes } = lane.metrics();
  assert.equal(counters['lane.schedules.fired'], fired);
  assert.equal(counters['lane.schedules.skipped'], skipped);
  assert.equal(lanes.work.counters['lane.schedules.fired'], fired);
  assert.equal(lanes.other.counters['lane.schedules.fired'], 0);
  assert.match(lane.metricsPrometheus(), new RegExp(`\\nlane_schedules_fired_total\\{lane="work"\\} ${fired}\\n`));
  await lane.removeSchedule('tick');
  await lane.shutdown();
});

test('a lane created without { metrics: true } says how to get them', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  for (const read of [() => lane.metrics(), () => lane.metricsPrometheus()]) {
    assert.throws(read, (error) => {
      assert.equal(error.code, 'CONFIG');
      assert.match(error.message, /this lane records no metrics; create it with new Lane\(lanes, \{ metrics: true \}\)/);
      return true;
    });
  }
  const off = new Lane({ work: { priority: 0, maxConcurrency: 1 } }, { metrics: false });
  assert.throws(() => off.metrics(), (error) => error.code === 'CONFIG');
  await lane.shutdown();
  await off.shutdown();
});

test('groupMetrics counts per group within its bound; later groups share the lane\'s other bucket', async (t) => {
  const lane = new Lane(
    { tenants: { priority: 0, maxConcurrency: 4 } },
    { metrics: true, groupMetrics: 2, groupMetricsAlways: ['vip'] },
  );
  t.after(() => lane.shutdownNow());
  lane.handle('job', (group) => group);
  await lane.start();
  const groups = ['a', 'a', 'b', 'c', 'd', 'd', 'vip'];
  assert.deepEqual(await Promise.all(groups.map((group) => lane.submit('tenants', 'job', group, { group }))), groups);
  const metrics = lane.metrics();
  assert.deepEqual(Object.keys(metrics.groups.tenants).sort(), ['a', 'b', 'vip']);
  const a = metrics.groups.tenants.a;
  assert.equal(a.counters['group.commands.started'], 2);
  assert.equal(a.counters['group.commands.completed'], 2);
  assert.equal(a.histograms['group.command.wait_ms'].count, 2);
  assert.equal(metrics.otherGroups.tenants.counters['group.commands.completed'], 3, 'c and d together');
  const text = lane.metricsPrometheus();
  assert.ok(text.includes('group_commands_completed_total{lane="tenants",group="a"} 2\n'), text);
  assert.ok(text.includes('group_commands_completed_total{lane="tenants",group_other="true"} 3\n'), text);
});

test('bad groupMetrics options are refused, saying what to do', () => {
  const lanes = { jobs: { priority: 0 } };
  assert.throws(() => new Lane(lanes, { metrics: true, groupMetrics: 0 }), (e) => e.code === 'CONFIG' && /use 1 to 10000/.test(e.message));
  assert.throws(() => new Lane(lanes, { metrics: true, groupMetrics: 10_001 }), /use 1 to 10000/);
  assert.throws(() => new Lane(lanes, { groupMetrics: 5 }), /set metrics: true too/);
  assert.throws(() => new Lane(lanes, { metrics: true, groupMetricsAlways: ['vip'] }), /needs groupMetrics/);
  assert.throws(() => new Lane(lanes, { metrics: true, groupMetrics: 5, groupMetricsAlways: 'vip' }), TypeError);
  assert.throws(() => new Lane(lanes, { metrics: true, groupMetrics: 5, groupMetricsAlways: [''] }), /group/);
});
