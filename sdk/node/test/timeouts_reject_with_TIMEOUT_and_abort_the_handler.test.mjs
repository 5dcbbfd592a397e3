// A lane's timeoutMs fails a run that takes too long: the submitter gets code TIMEOUT
// and the handler's ctx.signal aborts with a TIMEOUT reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, sleep } from './support.mjs';

test('a slow handler times out and its signal is aborted', async () => {
  const lane = new Lane({ api: { priority: 0, maxConcurrency: 2, timeoutMs: 50 } });
  const aborted = deferred();
  lane.handle('slow', (_payload, ctx) => {
    // Never settles by itself; stops when its signal aborts.
    return new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => {
        aborted.resolve(ctx.signal.reason);
        resolve('too late');
      });
    });
  });
  lane.handle('fast', () => 'done');
  await lane.start();
  const started = Date.now();
  await assert.rejects(lane.submit('api', 'slow'), (error) => {
    assert.equal(error.code, 'TIMEOUT');
    assert.match(error.message, /timed out after 50ms/);
    return true;
  });
  assert.ok(Date.now() - started >= 45);
  const reason = await aborted.promise;
  assert.equal(reason.code, 'TIMEOUT');
  // The timed-out run stopped, and so released its slot.
  assert.equal(await lane.submit('api', 'fast'), 'done');
  await lane.shutdown();
});

test('a handler that finishes in time is not affected by the timeout', async () => {
  const lane = new Lane({ api: { priority: 0, maxConcurrency: 1, timeoutMs: 1000 } });
  lane.handle('quick', async () => {
    await sleep(5);
    return { ok: true };
  });
  await lane.start();
  assert.deepEqual(await lane.submit('api', 'quick'), { ok: true });
  await lane.shutdown();
});

test('a timed-out command is retried when the lane has a retry policy', async () => {
  const lane = new Lane({
    api: { priority: 0, maxConcurrency: 1, timeoutMs: 30, retry: { maxRetries: 1, initialDelayMs: 1 } },
  });
  const attempts = [];
  lane.handle('flaky', async (_payload, ctx) => {
    attempts.push(ctx.attempt);
    if (ctx.attempt === 1) await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    return ctx.attempt;
  });
  await lane.start();
  assert.equal(await lane.submit('api', 'flaky'), 2);
  assert.deepEqual(attempts, [1, 2]);
  await lane.shutdown();
});
