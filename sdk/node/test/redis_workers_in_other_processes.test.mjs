// Workers in other processes run what this process submits, through Redis; and a
// process with a queue and a worker exits by itself once the worker is shut down (a
// running worker keeps it alive, like a listening server). Needs Redis
// (A3S_LANE_REDIS_URL).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RedisQueue } from '@a3s-lab/lane';
import { redisUrl, runNode, startNode, uniquePrefix } from './support.mjs';

test('a worker in a child process runs commands submitted here, and its process exits after shutdown', async (t) => {
  const keyPrefix = uniquePrefix('child');
  const queue = await RedisQueue.connect(redisUrl(), {
    keyPrefix,
    lanes: { work: { priority: 0, maxConcurrency: 4 }, control: { priority: 1, maxConcurrency: 1 } },
  });
  t.after(() => queue.clear());
  // The child connects without declaring lanes: it uses those declared here.
  const worker = startNode(
    `
    import { RedisQueue, RedisWorker } from '@a3s-lab/lane';
    const queue = await RedisQueue.connect(process.env.A3S_LANE_REDIS_URL, { keyPrefix: process.env.PREFIX });
    const worker = await RedisWorker.start(queue, {
      slots: 4,
      handlers: {
        where: async ({ n }, ctx) => ({ n, pid: process.pid, lane: ctx.lane }),
        fail: () => { throw new TypeError('bad input in the child'); },
        wait: (_payload, ctx) => new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            console.log('aborted ' + ctx.signal.reason.code);
            reject(ctx.signal.reason);
          });
          console.log('waiting ' + ctx.id);
        }),
        stop: () => {
          // After this command is reported; the process then has nothing left to do.
          setImmediate(async () => {
            await worker.shutdown(10_000);
            console.log('worker stopped');
          });
          return 'stopping';
        },
      },
    });
    console.log('ready ' + worker.id);
    `,
    { env: { PREFIX: keyPrefix } },
  );
  t.after(() => worker.child.kill('SIGKILL'));
  await worker.line(/ready \S+/);

  const results = await Promise.all(
    [1, 2, 3].map(async (n) => (await queue.submit('work', 'where', { n })).result),
  );
  assert.deepEqual(results.map((result) => result.n), [1, 2, 3]);
  for (const result of results) {
    assert.equal(result.lane, 'work');
    assert.notEqual(result.pid, process.pid, 'ran in the child process');
    assert.equal(result.pid, worker.child.pid);
  }

  const failed = await queue.submit('work', 'fail');
  await assert.rejects(failed.result, (error) => {
    assert.equal(error.code, 'COMMAND_FAILED');
    assert.match(error.message, /TypeError: bad input in the child/);
    return true;
  });

  const waiting = await queue.submit('work', 'wait');
  await worker.line(new RegExp(`waiting ${waiting.id}`));
  assert.equal(await waiting.cancel(), 'signalled');
  await assert.rejects(waiting.result, (error) => error.code === 'CANCELLED');
  await worker.line(/aborted CANCELLED/);

  assert.equal(await (await queue.submit('control', 'stop')).result, 'stopping');
  const exit = await worker.exited;
  assert.equal(exit.timedOut, false, `the worker process did not exit by itself:\n${exit.stdout}`);
  assert.equal(exit.code, 0, exit.stderr);
  assert.match(exit.stdout, /worker stopped/);
  assert.equal((await queue.stats()).workers, 0);
});

const script = (body) => `
  import { RedisQueue, RedisWorker } from '@a3s-lab/lane';
  const queue = await RedisQueue.connect(process.env.A3S_LANE_REDIS_URL, {
    keyPrefix: process.env.PREFIX,
    lanes: { work: { priority: 0, maxConcurrency: 2, cancelGraceMs: 10 } },
  });
  ${body}
`;

test('a script with a queue and a worker exits by itself after worker.shutdown()', async () => {
  const result = await runNode(
    script(`
    const worker = await RedisWorker.start(queue, { handlers: { add: ({ a, b }) => a + b } });
    const handle = await queue.submit('work', 'add', { a: 2, b: 3 });
    console.log('sum=' + (await handle.result));
    await worker.shutdown(10_000);
    await queue.clear();
    `),
    { env: { PREFIX: uniquePrefix('exit') } },
  );
  assert.equal(result.timedOut, false, `the process did not exit by itself:\n${result.stdout}`);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /sum=5/);
});

test('the process exits after worker.shutdownNow() with a command still running', async () => {
  const result = await runNode(
    script(`
    let started;
    const running = new Promise((resolve) => (started = resolve));
    const worker = await RedisWorker.start(queue, {
      handlers: { forever: (_payload, ctx) => { started(); return new Promise(() => {}); } },
    });
    const handle = await queue.submit('work', 'forever');
    await running;
    console.log('handed back ' + (await worker.shutdownNow()));
    await handle.cancel();
    console.log('result ' + (await handle.result.catch((error) => error.code)));
    await queue.clear();
    `),
    { env: { PREFIX: uniquePrefix('exit-now') } },
  );
  assert.equal(result.timedOut, false, `the process did not exit by itself:\n${result.stdout}`);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /handed back 1/);
  assert.match(result.stdout, /result CANCELLED/);
});

test('a running worker keeps the process alive until it is shut down', async () => {
  const result = await runNode(
    script(`
    const worker = await RedisWorker.start(queue, { handlers: {} });
    // An unref'd timer does not keep the process alive: only the worker does.
    setTimeout(async () => {
      await worker.shutdown(10_000);
      await queue.clear();
      console.log('stopped by the timer');
    }, 200).unref();
    `),
    { env: { PREFIX: uniquePrefix('alive') } },
  );
  assert.equal(result.timedOut, false, `the process did not exit after the shutdown:\n${result.stdout}`);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /stopped by the timer/);
});

test('an idle queue without workers does not keep the process alive', async () => {
  const result = await runNode(
    script(`
    console.log('connected ' + queue.keyPrefix);
    await queue.clear();
    `),
    { env: { PREFIX: uniquePrefix('idle') } },
  );
  assert.equal(result.timedOut, false, 'an idle RedisQueue kept the process alive');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /connected \{node-idle-/);
});
