// Lifecycle events reach `on(key, listener)` listeners and `events()` iterators, with
// camelCase payloads; iterators end after shutdown. EVENT_KEYS lists every key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EVENT_KEYS, Lane } from '@a3s-lab/lane';
import { deferred, runNode } from './support.mjs';

test('listeners get the events of their key, and "*" gets all of them', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  lane.handle('job', (_payload, ctx) => {
    ctx.reportProgress({ percent: 50 });
    return 'done';
  });
  const completed = [];
  const all = [];
  const onCompleted = (event) => completed.push(event);
  lane.on('queue.command.completed', onCompleted);
  lane.on('*', (event) => all.push(event.key));
  await lane.start();
  const handle = await lane.submitWithHandle('work', 'job');
  await handle.result;
  await lane.shutdown();

  assert.equal(completed.length, 1);
  const [event] = completed;
  assert.equal(event.key, 'queue.command.completed');
  assert.equal(typeof event.timestamp, 'number');
  assert.equal(event.payload.laneId, 'work');
  assert.equal(event.payload.commandId, handle.id);
  assert.equal(typeof event.payload.durationMs, 'number');
  assert.deepEqual(all, [
    'queue.command.submitted',
    'queue.command.started',
    'queue.command.progress',
    'queue.command.completed',
    'queue.shutdown.started',
    'queue.shutdown.complete',
  ]);
});

test('progress events carry what the handler reported', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  const progress = deferred();
  lane.on('queue.command.progress', (event) => progress.resolve(event.payload));
  lane.handle('job', (_payload, ctx) => {
    ctx.reportProgress({ step: 'download', percent: 30 });
  });
  await lane.start();
  const handle = await lane.submitWithHandle('work', 'job');
  assert.deepEqual(await progress.promise, { laneId: 'work', commandId: handle.id, progress: { step: 'download', percent: 30 } });
  await lane.shutdown();
});

test('off removes a listener', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  lane.handle('job', () => null);
  let calls = 0;
  const first = deferred();
  const listener = () => {
    calls += 1;
    first.resolve();
  };
  lane.on('queue.command.completed', listener);
  lane.on('queue.shutdown.complete', () => {}); // keeps events flowing after off
  await lane.start();
  await lane.submit('work', 'job');
  await first.promise;
  lane.off('queue.command.completed', listener);
  await lane.submit('work', 'job');
  await lane.shutdown(); // every event up to queue.shutdown.complete is delivered by now
  assert.equal(calls, 1);
});

test('failures, retries and timeouts are announced', async () => {
  const lane = new Lane({
    work: { priority: 0, maxConcurrency: 1, timeoutMs: 20, retry: { maxRetries: 1, initialDelayMs: 1 } },
  });
  const keys = [];
  lane.on('*', (event) => keys.push(event.key));
  lane.handle('fail', () => {
    throw new Error('nope');
  });
  // Stops when its signal aborts (at the timeout).
  lane.handle('hang', (_payload, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)));
  await lane.start();
  await assert.rejects(lane.submit('work', 'fail'), /nope/);
  await assert.rejects(lane.submit('work', 'hang'), (error) => error.code === 'TIMEOUT');
  await lane.shutdown();
  assert.ok(keys.includes('queue.command.retry'));
  assert.ok(keys.includes('queue.command.failed'));
  assert.ok(keys.includes('queue.command.timeout'));
});

test('an async iterator yields events and ends after shutdown', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 2 } });
  lane.handle('job', ({ n }) => n);
  await lane.start();
  const seen = [];
  const reading = (async () => {
    for await (const event of lane.events(['queue.command.completed', 'queue.shutdown.complete'])) {
      seen.push(event.key);
    }
    return 'ended';
  })();
  await Promise.all([1, 2, 3].map((n) => lane.submit('work', 'job', { n })));
  await lane.shutdown();
  assert.equal(await reading, 'ended');
  assert.deepEqual(seen, [
    'queue.command.completed',
    'queue.command.completed',
    'queue.command.completed',
    'queue.shutdown.complete',
  ]);
});

test('an iterator without keys yields every event', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  lane.handle('job', () => 'done');
  await lane.start();
  const seen = [];
  const reading = (async () => {
    for await (const event of lane.events()) seen.push(event.key);
  })();
  await lane.submit('work', 'job');
  await lane.shutdown();
  await reading;
  assert.deepEqual(seen, [
    'queue.command.submitted',
    'queue.command.started',
    'queue.command.completed',
    'queue.shutdown.started',
    'queue.shutdown.complete',
  ]);
});

test('leaving a for-await loop early stops the iterator', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  lane.handle('job', () => null);
  await lane.start();
  const submits = [];
  for (let i = 0; i < 5; i++) submits.push(lane.submit('work', 'job'));
  let count = 0;
  for await (const event of lane.events('queue.command.completed')) {
    assert.equal(event.key, 'queue.command.completed');
    if (++count === 2) break;
  }
  await Promise.all(submits);
  await lane.shutdown();
  assert.equal(count, 2);
});

test('a listener that throws is reported as an uncaught exception and the others still run', async () => {
  const { code, stdout, stderr } = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
    lane.handle('job', () => null);
    let second = 0;
    process.on('uncaughtException', (error) => console.log('uncaught: ' + error.message));
    lane.on('queue.command.completed', () => { throw new Error('listener bug'); });
    lane.on('queue.command.completed', () => { second += 1; });
    await lane.start();
    await lane.submit('work', 'job');
    await lane.shutdown();
    await new Promise((resolve) => setImmediate(resolve));
    console.log('second listener calls: ' + second);
  `);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /uncaught: listener bug/);
  assert.match(stdout, /second listener calls: 1/);
});

test("a command's events reach the listeners before its promise settles", async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 4 } });
  lane.handle('job', async ({ n }) => n);
  lane.handle('fail', async () => {
    throw new Error('no');
  });
  const seen = [];
  lane.on('queue.command.completed', (event) => seen.push(`completed ${event.payload.commandId}`));
  lane.on('queue.command.failed', (event) => seen.push(`failed ${event.payload.commandId}`));
  await lane.start();
  for (let n = 1; n <= 20; n++) {
    const handle = await lane.submitWithHandle('work', n % 5 === 0 ? 'fail' : 'job', { n });
    const outcome = await handle.result.then(
      () => 'completed',
      () => 'failed',
    );
    assert.equal(seen.at(-1), `${outcome} ${handle.id}`);
  }
  await lane.shutdown();
});

test('EVENT_KEYS lists the 21 keys of the core, each one a listener may name', async () => {
  // The core's `event_keys::ALL`, in its order.
  assert.deepEqual(EVENT_KEYS, [
    'queue.command.submitted',
    'queue.command.started',
    'queue.command.completed',
    'queue.command.retry',
    'queue.command.dead_lettered',
    'queue.command.failed',
    'queue.command.timeout',
    'queue.command.cancelled',
    'queue.command.progress',
    'queue.command.abandoned',
    'queue.command.expired',
    'queue.command.deduplicated',
    'queue.schedule.fired',
    'queue.schedule.skipped',
    'queue.shutdown.started',
    'queue.shutdown.complete',
    'queue.lane.pressure',
    'queue.lane.idle',
    'queue.lane.throttled',
    'queue.storage.failed',
    'queue.events.lagged',
  ]);
  assert.equal(EVENT_KEYS.length, 21);
  assert.ok(EVENT_KEYS.includes('queue.command.abandoned'));
  assert.ok(EVENT_KEYS.includes('queue.command.expired'));
  assert.ok(EVENT_KEYS.includes('queue.command.deduplicated'));
  assert.ok(EVENT_KEYS.includes('queue.schedule.fired'));
  assert.ok(EVENT_KEYS.includes('queue.schedule.skipped'));
  assert.ok(Object.isFrozen(EVENT_KEYS));
  assert.deepEqual(EVENT_KEYS.slice(0, 3), ['queue.command.submitted', 'queue.command.started', 'queue.command.completed']);
  assert.ok(EVENT_KEYS.includes('queue.events.lagged'));
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
  const listener = () => {};
  for (const key of EVENT_KEYS) lane.on(key, listener);
  const events = lane.events([...EVENT_KEYS]);
  for (const key of EVENT_KEYS) lane.off(key, listener);
  await events.return();
  assert.throws(() => lane.on('queue.command.done', listener), (error) => error.code === 'INVALID_ARGUMENT' && error.message.includes(EVENT_KEYS.join(', ')));
  await lane.shutdown();
});
