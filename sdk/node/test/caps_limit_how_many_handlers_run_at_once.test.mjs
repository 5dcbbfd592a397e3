// maxConcurrency caps a lane; a global maxConcurrency caps all lanes together and
// reserves each lane's minConcurrency slots.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { sleep } from './support.mjs';

function tracker() {
  const running = new Map();
  const most = new Map();
  let total = 0;
  let mostTotal = 0;
  return {
    enter(lane) {
      running.set(lane, (running.get(lane) ?? 0) + 1);
      most.set(lane, Math.max(most.get(lane) ?? 0, running.get(lane)));
      total += 1;
      mostTotal = Math.max(mostTotal, total);
    },
    leave(lane) {
      running.set(lane, running.get(lane) - 1);
      total -= 1;
    },
    most: (lane) => most.get(lane) ?? 0,
    mostTotal: () => mostTotal,
  };
}

test('a lane never runs more than its maxConcurrency', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 3 } });
  const seen = tracker();
  lane.handle('job', async (_payload, ctx) => {
    seen.enter(ctx.lane);
    await sleep(5);
    seen.leave(ctx.lane);
  });
  await lane.start();
  await Promise.all(Array.from({ length: 30 }, () => lane.submit('work', 'job')));
  assert.equal(seen.most('work'), 3);
  await lane.shutdown();
});

test('a global budget caps all lanes together and keeps reserved slots', async () => {
  const lane = new Lane(
    {
      fast: { priority: 0, minConcurrency: 0, maxConcurrency: 10 },
      slow: { priority: 1, minConcurrency: 1, maxConcurrency: 10 },
    },
    { maxConcurrency: 4 },
  );
  const seen = tracker();
  lane.handle('job', async (_payload, ctx) => {
    seen.enter(ctx.lane);
    await sleep(5);
    seen.leave(ctx.lane);
  });
  await lane.start();
  const jobs = [];
  for (let i = 0; i < 20; i++) {
    jobs.push(lane.submit('fast', 'job'), lane.submit('slow', 'job'));
  }
  await Promise.all(jobs);
  assert.equal(seen.mostTotal(), 4);
  // The slow lane has one reserved slot, so the more urgent lane never takes all four.
  assert.ok(seen.most('fast') <= 3, `fast ran ${seen.most('fast')} at once`);
  assert.ok(seen.most('slow') >= 1);
  await lane.shutdown();
});

test('stats report pending and running commands per lane', async () => {
  const lane = new Lane({ work: { priority: 3, minConcurrency: 1, maxConcurrency: 2 } });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  lane.handle('job', () => gate);
  await lane.start();
  const jobs = Array.from({ length: 5 }, () => lane.submit('work', 'job'));
  await sleep(20);
  const stats = await lane.stats();
  assert.equal(stats.totalActive, 2);
  assert.equal(stats.totalPending, 3);
  assert.deepEqual(stats.lanes.work, {
    id: 'work',
    priority: 3,
    pending: 3,
    active: 2,
    minConcurrency: 1,
    maxConcurrency: 2,
    paused: false,
    effectivePriority: 3,
    throttled: false,
    delayed: 0,
    expired: 0,
    rejectedFull: 0,
    maxWaiting: null,
    abandoned: 0,
    abandonedRunning: 0,
  });
  release();
  await Promise.all(jobs);
  assert.equal((await lane.stats()).totalActive, 0);
  await lane.shutdown();
});

test('a paused lane starts nothing until it is resumed', async () => {
  const lane = new Lane({ work: { priority: 0, maxConcurrency: 2 } });
  let runs = 0;
  lane.handle('job', () => {
    runs += 1;
  });
  await lane.start();
  await lane.pauseLane('work');
  const job = lane.submit('work', 'job');
  await sleep(30);
  assert.equal(runs, 0);
  assert.equal((await lane.stats()).lanes.work.paused, true);
  await lane.resumeLane('work');
  await job;
  assert.equal(runs, 1);

  await lane.pauseLane('work', 30);
  const started = Date.now();
  await lane.submit('work', 'job');
  assert.ok(Date.now() - started >= 25, 'a lane paused for 30 ms resumes by itself');
  await lane.shutdown();
});
