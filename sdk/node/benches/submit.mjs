// 200,000 submits of an async no-op handler spread over six priorities, through
// @a3s-lab/lane and through p-queue (priorities, concurrency 64), in the same run.
//
//   node benches/submit.mjs [count=200000] [rounds=3] [order=round-robin|blocks]
//
// Both queues get the same work: every command is submitted up front (in `order`:
// priorities 0,1,2,3,4,5,0,1,… — the workload — or six blocks, most urgent
// first, which is p-queue's best case: it only appends), then all results are
// awaited; the clock covers submitting and completing, not creating the queue. The lane
// has six lanes (priorities 0-5, maxConcurrency 64 each) under a global budget of 64, so
// both run at most 64 handlers at once. Rounds alternate between the two queues.
//
// Build the addon in release mode first (`npm run build`): a debug build measures the
// debug build.
import PQueue from 'p-queue';
import { Lane } from '../index.mjs';

const count = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 3);
const order = process.argv[4] ?? 'round-robin';
if (!['round-robin', 'blocks'].includes(order)) throw new RangeError(`order must be round-robin or blocks, got ${order}`);
const PRIORITIES = 6;
const noop = async () => {};

// The lane priority (0 most urgent) of the i-th command.
const priorityOf =
  order === 'round-robin'
    ? (i) => i % PRIORITIES
    : (i) => Math.floor((i * PRIORITIES) / count); // most urgent block first

async function runLane() {
  const lanes = {};
  for (let p = 0; p < PRIORITIES; p++) lanes[`p${p}`] = { priority: p, minConcurrency: 0, maxConcurrency: 64 };
  const lane = new Lane(lanes, { maxConcurrency: 64 });
  lane.handle('noop', noop);
  await lane.start();
  const names = Object.keys(lanes);
  const start = performance.now();
  const results = new Array(count);
  for (let i = 0; i < count; i++) results[i] = lane.submit(names[priorityOf(i)], 'noop');
  await Promise.all(results);
  const elapsed = performance.now() - start;
  await lane.shutdown();
  return elapsed;
}

async function runPQueue() {
  const queue = new PQueue({ concurrency: 64 });
  const start = performance.now();
  const results = new Array(count);
  // p-queue runs higher numbers first: lane priority p is p-queue priority 5 - p.
  for (let i = 0; i < count; i++) results[i] = queue.add(noop, { priority: PRIORITIES - 1 - priorityOf(i) });
  await Promise.all(results);
  return performance.now() - start;
}

const rate = (ms) => Math.round((count / ms) * 1000).toLocaleString('en-US');
const fmt = (ms) => `${ms.toFixed(0)} ms (${rate(ms)} commands/s)`;
console.log(
  `${count.toLocaleString('en-US')} submits of an async no-op over ${PRIORITIES} priorities (${order}), concurrency 64, node ${process.version}`,
);
const laneTimes = [];
const pqueueTimes = [];
for (let round = 1; round <= rounds; round++) {
  const laneMs = await runLane();
  const pqueueMs = await runPQueue();
  laneTimes.push(laneMs);
  pqueueTimes.push(pqueueMs);
  console.log(`round ${round}: @a3s-lab/lane ${fmt(laneMs)} | p-queue ${fmt(pqueueMs)} | ratio ${(pqueueMs / laneMs).toFixed(2)}x`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const laneMedian = median(laneTimes);
const pqueueMedian = median(pqueueTimes);
console.log(
  `median: @a3s-lab/lane ${fmt(laneMedian)} | p-queue ${fmt(pqueueMedian)} | @a3s-lab/lane is ${(pqueueMedian / laneMedian).toFixed(2)}x p-queue`,
);
