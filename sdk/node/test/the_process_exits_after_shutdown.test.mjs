// Nothing of a lane keeps the process alive once its work is done and it is shut down;
// pending work does keep it alive, like a pending timer or socket would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runNode } from './support.mjs';

test('a script that shuts its lane down exits by itself', async () => {
  const result = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ query: { priority: 2, minConcurrency: 1, maxConcurrency: 10 } }, { maxConcurrency: null });
    lane.handle('fetch_data', async (payload) => ({ ok: true, url: payload.url }));
    lane.on('*', () => {});
    const iterator = lane.events();
    lane.start();
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => lane.submit('query', 'fetch_data', { url: 'https://example.com/' + i })),
    );
    await lane.shutdown();
    console.log('results: ' + results.length);
  `);
  assert.equal(result.timedOut, false, 'the process did not exit by itself');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /results: 100/);
});

test('the process exits after shutdownNow with work still queued', async () => {
  const result = await runNode(`
    const { Lane } = require('@a3s-lab/lane');
    const lane = new Lane({ work: { priority: 0, maxConcurrency: 1, cancelGraceMs: 10 } });
    // Runs until its signal aborts (shutdownNow waits for a running handler to return).
    lane.handle('forever', (_payload, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)));
    lane.start();
    const pending = [1, 2, 3].map(() => lane.submit('work', 'forever').catch((error) => error.code));
    setTimeout(async () => {
      const cancelled = await lane.shutdownNow();
      console.log('cancelled ' + cancelled + ': ' + (await Promise.all(pending)).join(','));
    }, 20);
  `, { type: 'cjs' });
  assert.equal(result.timedOut, false, 'the process did not exit by itself');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /cancelled 3: CANCELLED,CANCELLED,CANCELLED/);
});

test('a pending command keeps the process alive until it settles', async () => {
  const result = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane({ work: { priority: 0, maxConcurrency: 1 } });
    // The handler's own timer is unref'd: only the pending submit keeps the process up.
    lane.handle('slow', () => new Promise((resolve) => setTimeout(() => resolve('late result'), 300).unref()));
    lane.start();
    lane.submit('work', 'slow').then((value) => console.log(value));
  `);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /late result/);
  assert.ok(result.elapsedMs >= 250, `exited after ${result.elapsedMs} ms, before the command settled`);
});

test('an idle lane that was never shut down does not keep the process alive', async () => {
  const result = await runNode(`
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane();
    lane.handle('noop', () => null);
    await lane.start();
    await lane.submit('query', 'noop');
    console.log('idle');
  `);
  assert.equal(result.timedOut, false, 'an idle lane kept the process alive');
  assert.equal(result.code, 0, result.stderr);
});
