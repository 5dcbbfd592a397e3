// @a3s-lab/lane against p-queue, measured in the same run on the same work: an async
// no-op handler, at most 64 running at once, six priorities. Three patterns:
//
// - shallow: 64 clients, each submitting one command at a time (random priority) and
//   awaiting it before the next: the queue is never deeper than 64. Per-command cost.
// - burst: `count` commands submitted at once in one tick (random priorities), then
//   all awaited.
// - deep: a backlog of `count` commands over six priorities (round-robin), submitted
//   up front: the priority order decides what runs next.
//
//   node benches/submit.mjs [count=100000] [rounds=3] [patterns=shallow,burst,deep]
//
// The lane has six lanes (priorities 0-5, maxConcurrency 64 each) under a global
// budget of 64; p-queue has concurrency 64 and priorities 5-0. Rounds alternate
// between the two; the clock covers submitting and completing, not creating the queue.
// Build the addon in release mode first (`npm run build`, or `scripts/test.sh bench`):
// a debug build measures the debug build.
import PQueue from 'p-queue';
import { Lane } from '../index.mjs';

const count = Number(process.argv[2] ?? 100_000);
const rounds = Number(process.argv[3] ?? 3);
const patterns = (process.argv[4] ?? 'shallow,burst,deep').split(',');
for (const pattern of patterns) {
  if (!['shallow', 'burst', 'deep'].includes(pattern)) {
    throw new RangeError(`patterns are shallow, burst and deep, got ${pattern}`);
  }
}
const PRIORITIES = 6;
const CLIENTS = 64;
const noop = async () => {};

// The same pseudo-random priorities for both queues (a fixed LCG).
function priorities() {
  let state = 12345;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % PRIORITIES;
  };
}

/** `submit(priority)` returns a promise of the command's end; runs `pattern` with it. */
async function drive(pattern, submit) {
  const next = priorities();
  if (pattern === 'shallow') {
    let left = count;
    const client = async () => {
      while (left > 0) {
        left -= 1;
        await submit(next());
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, client));
    return;
  }
  const results = new Array(count);
  if (pattern === 'burst') {
    for (let i = 0; i < count; i++) results[i] = submit(next());
  } else {
    for (let i = 0; i < count; i++) results[i] = submit(i % PRIORITIES);
  }
  await Promise.all(results);
}

async function runLane(pattern) {
  const lanes = {};
  for (let p = 0; p < PRIORITIES; p++) lanes[`p${p}`] = { priority: p, minConcurrency: 0, maxConcurrency: 64 };
  const lane = new Lane(lanes, { maxConcurrency: 64 });
  lane.handle('noop', noop);
  await lane.start();
  const names = Object.keys(lanes);
  const start = performance.now();
  await drive(pattern, (p) => lane.submit(names[p], 'noop'));
  const elapsed = performance.now() - start;
  await lane.shutdown();
  return elapsed;
}

async function runPQueue(pattern) {
  const queue = new PQueue({ concurrency: 64 });
  const start = performance.now();
  // p-queue runs higher numbers first: lane priority p is p-queue priority 5 - p.
  await drive(pattern, (p) => queue.add(noop, { priority: PRIORITIES - 1 - p }));
  return performance.now() - start;
}

const rate = (ms) => Math.round((count / ms) * 1000).toLocaleString('en-US');
const fmt = (ms) => `${ms.toFixed(0)} ms (${rate(ms)}/s)`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
console.log(
  `${count.toLocaleString('en-US')} commands of an async no-op, concurrency 64, ${PRIORITIES} priorities, node ${process.version}`,
);
const summary = [];
for (const pattern of patterns) {
  const laneTimes = [];
  const pqueueTimes = [];
  for (let round = 1; round <= rounds; round++) {
    const laneMs = await runLane(pattern);
    const pqueueMs = await runPQueue(pattern);
    laneTimes.push(laneMs);
    pqueueTimes.push(pqueueMs);
    console.log(`${pattern} round ${round}: @a3s-lab/lane ${fmt(laneMs)} | p-queue ${fmt(pqueueMs)}`);
  }
  const laneMedian = median(laneTimes);
  const pqueueMedian = median(pqueueTimes);
  summary.push(
    `${pattern.padEnd(8)} @a3s-lab/lane ${fmt(laneMedian).padEnd(26)} p-queue ${fmt(pqueueMedian).padEnd(26)} lane/p-queue ${(pqueueMedian / laneMedian).toFixed(2)}x`,
  );
}
console.log('medians:');
for (const line of summary) console.log(`  ${line}`);
