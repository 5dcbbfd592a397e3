// A lane's retry policy runs a failed command again (same id, next attempt); when the
// retries run out, the submitter gets the last error and the command becomes a dead letter.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';

test('a command that fails twice succeeds on its third attempt', async () => {
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1, retry: { maxRetries: 3, initialDelayMs: 1 } } });
  const seen = [];
  lane.handle('flaky', (_payload, ctx) => {
    seen.push({ id: ctx.id, attempt: ctx.attempt });
    if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
    return 'third time lucky';
  });
  await lane.start();
  assert.equal(await lane.submit('jobs', 'flaky'), 'third time lucky');
  assert.deepEqual(
    seen.map((s) => s.attempt),
    [1, 2, 3],
  );
  assert.equal(new Set(seen.map((s) => s.id)).size, 1, 'retries keep the command id');
  await lane.shutdown();
});

test('when retries run out the last error reaches the submitter and the dead letters', async () => {
  const lane = new Lane(
    { jobs: { priority: 0, maxConcurrency: 1, retry: { maxRetries: 2, initialDelayMs: 1, multiplier: 1 } } },
    { deadLetterCapacity: 10 },
  );
  let last;
  lane.handle('broken', (payload, ctx) => {
    last = new Error(`broken on attempt ${ctx.attempt}`);
    throw last;
  });
  await lane.start();
  await assert.rejects(lane.submit('jobs', 'broken', { item: 7 }), (error) => error === last);
  const [letter] = await lane.deadLetters();
  assert.equal(letter.commandType, 'broken');
  assert.equal(letter.laneId, 'jobs');
  assert.equal(letter.attempts, 3);
  assert.deepEqual(letter.payload, { item: 7 });
  assert.match(letter.error, /broken on attempt 3/);
  await lane.shutdown();
});

test('an error with retryable: false is not retried', async () => {
  const lane = new Lane({ jobs: { priority: 0, maxConcurrency: 1, retry: { maxRetries: 5, initialDelayMs: 1 } } });
  let runs = 0;
  lane.handle('invalid', () => {
    runs += 1;
    const error = new Error('bad input, retrying will not help');
    error.retryable = false;
    throw error;
  });
  await lane.start();
  await assert.rejects(lane.submit('jobs', 'invalid'), /retrying will not help/);
  assert.equal(runs, 1);
  await lane.shutdown();
});

test('retry delays grow as configured', async () => {
  const lane = new Lane({
    jobs: { priority: 0, maxConcurrency: 1, retry: { maxRetries: 2, initialDelayMs: 40, multiplier: 2, maxDelayMs: 1000 } },
  });
  const at = [];
  lane.handle('flaky', (_payload, ctx) => {
    at.push(Date.now());
    if (ctx.attempt < 3) throw new Error('again');
    return 'ok';
  });
  await lane.start();
  assert.equal(await lane.submit('jobs', 'flaky'), 'ok');
  assert.ok(at[1] - at[0] >= 35, `first retry after ${at[1] - at[0]} ms, expected about 40`);
  assert.ok(at[2] - at[1] >= 75, `second retry after ${at[2] - at[1]} ms, expected about 80`);
  await lane.shutdown();
});
