// Groups inside a lane (`options.group` of a submit): a lane's groups take turns (round
// robin), so one group's backlog delays another group's first command by at most one
// turn; each group may have a cap and a token-bucket rate limit (`groupMaxConcurrency`,
// `groupRateLimit`, per-group `groupOverrides`); a group is paused, resumed and
// cancelled as a whole, and `groupStatus` / `groups` read it. In process here; the
// Redis engine's test of the same behaviours is groups_take_turns_on_a_redis_queue.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lane } from '@a3s-lab/lane';
import { deferred, runNode, tempDir, waitFor } from './support.mjs';

/**
 * A lane whose `job` handler records each start (`payload.label`) and how many of each
 * group run at once, then waits for `gate` (opened with `open()`).
 */
async function gated(t, lanes, options) {
  const lane = new Lane(lanes, options);
  const gate = deferred();
  const starts = [];
  const running = new Map();
  const most = new Map();
  lane.handle('job', async ({ label, group }) => {
    starts.push(label);
    const now = (running.get(group) ?? 0) + 1;
    running.set(group, now);
    most.set(group, Math.max(most.get(group) ?? 0, now));
    try {
      await gate.promise;
    } finally {
      running.set(group, running.get(group) - 1);
    }
    return label;
  });
  const watching = deferred();
  // Runs until cancelled (resolving `watching` first).
  lane.handle('block', (_payload, ctx) => {
    watching.resolve();
    return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
  });
  await lane.start();
  // A handler that is still held would keep shutdownNow() waiting: the gate opens first.
  t.after(() => {
    gate.resolve();
    return lane.shutdownNow();
  });
  const submit = (laneId, group, label) => lane.submit(laneId, 'job', { label, group }, { group });
  return { lane, starts, most, submit, watching, open: () => gate.resolve() };
}

test("a group's backlog delays another group's first command by one turn", async (t) => {
  const { lane, starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 1 } });
  // A has a backlog of 1,000, its first running (held by the gate); then B submits one.
  await lane.pauseLane('work');
  const results = [];
  for (let n = 0; n < 1000; n++) results.push(submit('work', 'A', `A${n}`));
  await lane.resumeLane('work');
  await waitFor(() => starts.length === 1, 'the first command of A to start');
  results.push(submit('work', 'B', 'B0'));
  assert.deepEqual(starts, ['A0']);
  open();
  await Promise.all(results);
  // B's only command runs right after A's first, not after A's thousand.
  assert.deepEqual(starts.slice(0, 3), ['A0', 'B0', 'A1']);
  assert.equal(starts.length, 1001);
  // Each group in its own FIFO order.
  assert.deepEqual(
    starts.filter((label) => label.startsWith('A')),
    Array.from({ length: 1000 }, (_, n) => `A${n}`),
  );
});

test('a group arriving while another group submits one by one still gets the next turn', async (t) => {
  const { starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 1 } });
  // A's first starts as it is submitted, before A's next ones are queued (A's group runs
  // dry, then fills again); B's one command still goes right after A's first.
  const results = [submit('work', 'A', 'A0')];
  await waitFor(() => starts.length === 1, 'the first command of A to start');
  for (let n = 1; n < 1000; n++) results.push(submit('work', 'A', `A${n}`));
  results.push(submit('work', 'B', 'B0'));
  open();
  await Promise.all(results);
  assert.deepEqual(starts.slice(0, 3), ['A0', 'B0', 'A1']);
});

test('groups alternate, and commands of no group take turns as one group of their own', async (t) => {
  const { lane, starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 1 } });
  await lane.pauseLane('work');
  const results = [];
  for (let n = 0; n < 3; n++) results.push(submit('work', 'A', `A${n}`));
  for (let n = 0; n < 3; n++) results.push(submit('work', 'B', `B${n}`));
  for (let n = 0; n < 3; n++) results.push(lane.submit('work', 'job', { label: `none${n}`, group: '' }));
  open();
  await lane.resumeLane('work');
  await Promise.all(results);
  assert.deepEqual(starts, ['A0', 'B0', 'none0', 'A1', 'B1', 'none1', 'A2', 'B2', 'none2']);
});

test('each group runs at most its cap (groupMaxConcurrency), an override its own', async (t) => {
  const { lane, most, submit, open } = await gated(t, {
    work: { priority: 0, maxConcurrency: 20, groupMaxConcurrency: 2, groupOverrides: { vip: { maxConcurrency: 4 } } },
  });
  const results = [];
  for (let n = 0; n < 10; n++) {
    results.push(submit('work', 'plain', `plain${n}`), submit('work', 'vip', `vip${n}`), submit('work', 'other', `other${n}`));
  }
  await waitFor(async () => (await lane.stats()).lanes.work.active === 8, '2 + 4 + 2 commands running');
  assert.deepEqual(await lane.groupStatus('work', 'plain'), {
    lane: 'work',
    group: 'plain',
    pending: 8,
    active: 2,
    paused: false,
    throttled: false,
    maxConcurrency: 2,
  });
  const vip = await lane.groupStatus('work', 'vip');
  assert.deepEqual([vip.active, vip.pending, vip.maxConcurrency], [4, 6, 4]);
  const other = await lane.groupStatus('work', 'other');
  assert.deepEqual([other.active, other.pending, other.maxConcurrency], [2, 8, 2]);
  // The lane has room for 12 more: the caps hold them back, not the lane.
  assert.equal((await lane.stats()).lanes.work.pending, 22);
  open();
  await Promise.all(results);
  assert.deepEqual(Object.fromEntries(most), { plain: 2, vip: 4, other: 2 });
});

test("a group's rate limit holds it back while other groups go on", async (t) => {
  const { lane, starts, submit, open } = await gated(t, {
    work: { priority: 0, maxConcurrency: 10, groupRateLimit: { tokenBucket: { rate: 1, periodMs: 60_000, burst: 1 } } },
  });
  open();
  const throttled = new Promise((resolve) => lane.on('queue.lane.throttled', resolve));
  const first = [submit('work', 'slow', 'slow0'), submit('work', 'slow', 'slow1'), submit('work', 'fast', 'fast0')];
  await Promise.all([first[0], first[2]]);
  const event = await throttled;
  assert.deepEqual([event.payload.laneId, event.payload.group, event.payload.limit], ['work', 'slow', 'group']);
  assert.ok(event.payload.untilMs > event.timestamp + 50_000, 'the next permit is a minute away');
  const slow = await lane.groupStatus('work', 'slow');
  assert.deepEqual([slow.pending, slow.throttled, slow.maxConcurrency], [1, true, null]);
  assert.deepEqual(starts.sort(), ['fast0', 'slow0']);
  await lane.cancelGroup('work', 'slow');
  await assert.rejects(first[1], (error) => error.code === 'CANCELLED');
});

test('a paused group starts nothing until resumed; the other groups go on', async (t) => {
  const { lane, starts, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 4 } });
  open();
  // A group may be paused before it has commands.
  await lane.pauseGroup('work', 'held');
  const held = [submit('work', 'held', 'held0'), submit('work', 'held', 'held1')];
  assert.equal(await submit('work', 'free', 'free0'), 'free0');
  assert.deepEqual(starts, ['free0']);
  assert.deepEqual(await lane.groupStatus('work', 'held'), {
    lane: 'work',
    group: 'held',
    pending: 2,
    active: 0,
    paused: true,
    throttled: false,
    maxConcurrency: null,
  });
  assert.deepEqual(
    (await lane.groups('work')).map(({ group, paused, pending }) => ({ group, paused, pending })),
    [{ group: 'held', paused: true, pending: 2 }],
  );
  await lane.resumeGroup('work', 'held');
  assert.deepEqual(await Promise.all(held), ['held0', 'held1']);
  assert.equal((await lane.groupStatus('work', 'held')).paused, false);
  // Paused with nothing in it: still listed (it is paused); resumed and empty: gone.
  await lane.pauseGroup('work', 'idle');
  assert.deepEqual((await lane.groups('work')).map((g) => g.group), ['idle']);
  await lane.resumeGroup('work', 'idle');
  assert.deepEqual(await lane.groups('work'), []);
});

test('cancelGroup ends the pending commands of a group and signals its running ones', async (t) => {
  const { lane, watching } = await gated(t, { work: { priority: 0, maxConcurrency: 4, groupMaxConcurrency: 1 } });
  const doomed = [lane.submit('work', 'block', null, { group: 'doomed' })];
  await watching.promise;
  for (let n = 0; n < 3; n++) doomed.push(lane.submit('work', 'job', { label: `${n}`, group: 'doomed' }, { group: 'doomed' }));
  doomed.push(lane.submit('work', 'job', { label: 'later', group: 'doomed' }, { group: 'doomed', delayMs: 60_000 }));
  const spared = await lane.submitWithHandle('work', 'job', { label: 'spared', group: 'spared' }, { group: 'spared' });
  await waitFor(async () => (await lane.command(spared.id)).state === 'running', 'the spared command to run');
  const status = await lane.groupStatus('work', 'doomed');
  assert.deepEqual([status.active, status.pending], [1, 3]);
  // One running, three pending, one delayed: all five reached.
  assert.equal(await lane.cancelGroup('work', 'doomed'), 5);
  const outcomes = await Promise.allSettled(doomed);
  for (const outcome of outcomes) {
    assert.equal(outcome.status, 'rejected');
    assert.equal(outcome.reason.code, 'CANCELLED');
  }
  // The other group is untouched.
  assert.equal((await lane.command(spared.id)).state, 'running');
  assert.equal(await lane.cancelGroup('work', 'nobody'), 0);
  await spared.cancel();
});

test('groups lists the groups of a lane sorted by key, one page at a time', async (t) => {
  const { lane, submit, open } = await gated(t, { work: { priority: 0, maxConcurrency: 1 } });
  await lane.pauseLane('work');
  const results = [];
  for (const group of ['e', 'c', 'a', 'd', 'b']) {
    for (let n = 0; n < 2; n++) results.push(submit('work', group, `${group}${n}`));
  }
  // Commands of no group are not listed.
  results.push(lane.submit('work', 'job', { label: 'none', group: '' }));
  const all = await lane.groups('work');
  assert.deepEqual(
    all.map((g) => g.group),
    ['a', 'b', 'c', 'd', 'e'],
  );
  for (const g of all) assert.deepEqual([g.lane, g.pending, g.active, g.paused], ['work', 2, 0, false]);
  assert.deepEqual(
    (await lane.groups('work', { offset: 1, limit: 2 })).map((g) => g.group),
    ['b', 'c'],
  );
  assert.deepEqual(await lane.groups('work', { offset: 10 }), []);
  // A group with nothing: all zero, not listed.
  assert.deepEqual(await lane.groupStatus('work', 'z'), {
    lane: 'work',
    group: 'z',
    pending: 0,
    active: 0,
    paused: false,
    throttled: false,
    maxConcurrency: null,
  });
  open();
  await lane.resumeLane('work');
  await Promise.all(results);
  assert.deepEqual(await lane.groups('work'), []);
});

test('a durable lane keeps the group of a command across a restart', async (t) => {
  const dir = tempDir(t, 'a3s-lane-groups-');
  const lanes = { work: { priority: 0, maxConcurrency: 1 } };
  const first = await runNode(
    `
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane(${JSON.stringify(lanes)}, { storage: { path: process.argv[1] } });
    lane.handle('job', () => null);
    await lane.start();
    await lane.pauseLane('work');
    const handle = await lane.submitWithHandle('work', 'job', null, { group: 'kept' });
    console.log('accepted', handle.id);
    process.exit(0); // no shutdown: a crash, as far as the store can tell
  `,
    { args: [dir] },
  );
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /accepted \d+/);

  const second = new Lane(lanes, { storage: { path: dir } });
  const running = deferred();
  const gate = deferred();
  second.handle('job', async () => {
    running.resolve();
    await gate.promise;
    return null;
  });
  t.after(() => second.shutdownNow());
  await second.start();
  await running.promise;
  // The recovered command runs in its group.
  const kept = await second.groupStatus('work', 'kept');
  assert.deepEqual([kept.active, kept.pending], [1, 0]);
  gate.resolve();
});
