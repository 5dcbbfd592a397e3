// Every ```js example of README.md runs, unchanged, as its own Node.js process (an ES
// module when it uses `import`, CommonJS otherwise) and exits by itself with code 0.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageDir, runNode } from './support.mjs';

const readme = readFileSync(join(packageDir, 'README.md'), 'utf8');
const examples = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]);

test('README.md has examples', () => {
  assert.ok(examples.length >= 5, `found ${examples.length} examples`);
});

for (const [index, source] of examples.entries()) {
  const title = source.split('\n').find((line) => line.trim() && !line.startsWith('import') && !line.startsWith('const {'));
  test(`README example ${index + 1} runs: ${title?.trim().slice(0, 60)}`, async () => {
    const type = /^import /m.test(source) ? 'mjs' : 'cjs';
    const result = await runNode(source, { type });
    assert.equal(result.timedOut, false, `example ${index + 1} did not exit by itself:\n${result.stdout}`);
    assert.equal(result.code, 0, `example ${index + 1} failed:\n${result.stderr}`);
    assert.notEqual(result.stdout, '', `example ${index + 1} printed nothing`);
  });
}

test('the quick start prints what its comments say', async () => {
  const result = await runNode(examples[0], { type: 'mjs' });
  assert.match(result.stdout, /\{ ok: true, url: 'https:\/\/example\.com', attempt: 1 \}/);
  assert.match(result.stdout, /pending 0, active 0/);
});

test('the priority example shows control going first', async () => {
  const source = examples.find((example) => example.includes("'control', 'pause'"));
  const result = await runNode(source, { type: 'mjs' });
  // The two running prompts may reach JavaScript in either order; control always runs
  // before the waiting third prompt.
  assert.match(result.stdout, /\[ 'control', 'prompt 3' \]/);
});

/** Runs the example containing `marker` and checks its output against `patterns`. */
async function printsWhatItSays(marker, patterns) {
  const source = examples.find((example) => example.includes(marker));
  assert.ok(source, `no README example contains ${marker}`);
  const result = await runNode(source, { type: 'mjs' });
  assert.equal(result.code, 0, result.stderr);
  for (const pattern of patterns) assert.match(result.stdout, pattern);
}

test('the rate limit example shows two commands held back', async () => {
  await printsWhatItSays('rateLimit: { perSecond: 2 }', [/^2 true$/m, /\[ 'call 1', 'call 2', 'call 3', 'call 4' \]/]);
});

test('the priority boost example shows the boosted priority', async () => {
  await printsWhatItSays("priorityBoost: { standard: 30_000 }", [/^9 4$/m, /^built$/m]);
});

test('the metrics example prints its counters and Prometheus line', async () => {
  await printsWhatItSays('{ metrics: true }', [/^2 1$/m, /^3 true$/m, /^3$/m, /^lane_commands_failed_total\{lane="work"\} 1$/m]);
});

test('the Redis example runs a command on a worker and cancels a running one', async () => {
  await printsWhatItSays('RedisWorker.start', [
    /\{ image: 'cat\.png', size: 'small', attempt: 1 \}/,
    /^signalled$/m,
    /^CANCELLED$/m,
    /^0 1 1$/m,
  ]);
});

test('the delays, deadlines and bounded lanes example prints what its comments say', async () => {
  await printsWhatItSays("'flash sale'", [
    /^delayed\nsent welcome\nsent reminder$/m,
    /^EXPIRED$/m,
    /^mail 2$/m,
    /^\[ 'sent a', 'sent b' \]$/m,
    /^1$/m,
  ]);
});

test('the idempotency key example runs the command once, then again once it ended', async () => {
  // The event reaches its listener after the submit returned: its line may come later.
  await printsWhatItSays("key: 'order-42'", [/^true true$/m, /^charged 42 1\ncharged 42 2$/m, /^deduplicated order-42$/m]);
});

test('the looking-up example prints what its comments say', async () => {
  await printsWhatItSays("keepForMs: 3_600_000", [
    /^completed \{ month: '2024-05', rows: 42 \}$/m,
    /^true$/m,
    /^failed failed Error: out of paper$/m,
    /^\[ 4, 5 \]$/m,
    /^4$/m,
    /^null$/m,
  ]);
});

test('the schedules example fires, pauses and removes its schedule', async () => {
  await printsWhatItSays("name: 'poll-feeds'", [/^200 0 null$/m, /^Europe\/Berlin 0$/m, /^true true true$/m, /^true$/m, /^true false$/m]);
});

test('the groups example shows a small tenant not waiting for a big one', async () => {
  await printsWhatItSays('groupOverrides: { enterprise', [
    /pending: 3,\s+active: 0,\s+paused: false,\s+throttled: false,\s+maxConcurrency: 1/,
    /^\[ 'big', 'small' \]$/m,
    /^\[ 'big 1', 'small 1', 'big 2', 'big 3' \]$/m,
    /^1\nCANCELLED$/m,
  ]);
});
