// Type-checked by index_d_ts_is_generated_and_current.test.mjs with `tsc --strict`:
// the documented API must compile, and misuse must not.
import {
  DEFAULTS,
  Dashboard,
  EVENT_KEYS,
  Lane,
  LaneError,
  LaneExpiredError,
  LaneFullError,
  RedisQueue,
  RedisWorker,
  SharedBudget,
  type BudgetStatus,
  type CancelOutcome,
  type CommandContext,
  type CommandFailure,
  type CommandFailureKind,
  type CommandHandle,
  type CommandState,
  type CommandStatus,
  type DeadLetter,
  type GroupLimitsOptions,
  type GroupRateLimitOptions,
  type GroupStatus,
  type LaneEvent,
  type LaneStatus,
  type ListCommandsOptions,
  type MetricsSnapshot,
  type QueueStats,
  type RedisCommandHandle,
  type RedisLaneStatus,
  type RedisQueueStats,
  type ScheduleInfo,
  type ScheduleMissed,
  type ScheduleOptions,
} from '../../index.js';

/** Code written against the client surface runs on either engine. */
async function drainDeadLetters(queue: Lane | RedisQueue): Promise<number> {
  const letters: DeadLetter[] = await queue.deadLetters();
  for (const letter of letters) {
    const status: CommandStatus | null = await queue.command(letter.commandId);
    const state: CommandState | undefined = status?.state;
    if (state === 'dead_lettered') await (await queue.redrive(letter.commandId)).result.catch(() => undefined);
  }
  const outcome: CancelOutcome = await queue.cancel(0);
  const stats: QueueStats = await queue.stats();
  await queue.pauseLane('api', 1_000);
  await queue.resumeLane('api');
  await queue.onSizeLessThan(100);
  await queue.onSizeLessThan(10, 'api');
  // A command afterwards: its times, result or error, on either engine.
  const kept: CommandStatus | null = await queue.command(1);
  if (kept !== null) {
    const times: Array<number | null> = [kept.submittedAt, kept.startedAt, kept.finishedAt];
    const value: unknown = kept.result;
    const failure: CommandFailure | null = kept.error;
    const kind: CommandFailureKind | undefined = failure?.kind;
    const why: string | undefined = failure?.message;
    const limitMs: number | null | undefined = failure?.timeoutMs;
    void [times, value, kind, why, limitMs];
  }
  const page: ListCommandsOptions = { offset: 100, limit: 100 };
  const failed = await queue.listCommands('api', 'failed', page);
  const failedState: 'failed' = failed[0]!.state;
  const anyState: CommandState = 'completed' as CommandState;
  const listed: CommandStatus[] = await queue.listCommands('api', anyState);
  await queue.listCommands('api', 'pending', { limit: 10 });
  // @ts-expect-error not a command state
  void queue.listCommands('api', 'finished');
  // @ts-expect-error the page is { offset, limit }
  void queue.listCommands('api', 'pending', { page: 2 });
  // @ts-expect-error times are numbers (ms since the Unix epoch) or null, not Dates
  const asDate: Date | null = kept!.finishedAt;
  void [outcome, stats.totalPending, failedState, listed, asDate];
  // Recurring schedules, on either engine: an interval or a cron expression in a zone.
  const every: ScheduleInfo = await queue.putSchedule({ name: 'tick', lane: 'api', commandType: 'poll', payload: { n: 1 }, everyMs: 300 });
  const options: ScheduleOptions = {
    name: 'report',
    lane: 'api',
    commandType: 'report',
    cron: '0 9 * * 1-5',
    timeZone: 'Europe/Berlin',
    missed: 'runOnce',
    jitterMs: 60_000,
  };
  const cron: ScheduleInfo = await queue.putSchedule(options);
  const interval: number | null = every.everyMs;
  const expression: string | null = cron.cron;
  const zone: string | null = cron.timeZone;
  const missed: ScheduleMissed = cron.missed;
  const nextFireAt: number | null = cron.nextFireAt;
  const lastFiredAt: number | null = cron.lastFiredAt;
  const lastCommandId: number | null = cron.lastCommandId;
  const counts: number = every.fired + every.skipped + every.jitterMs;
  const paused: boolean = every.paused;
  const all: ScheduleInfo[] = await queue.schedules();
  await queue.pauseSchedule('tick');
  await queue.resumeSchedule('tick');
  const removed: boolean = await queue.removeSchedule('tick');
  queue.on('queue.schedule.fired', (event) => {
    const instant: number = event.payload.instantMs;
    const command: number = event.payload.commandId;
    const name: string = event.payload.schedule;
    void [instant, command, name];
  });
  queue.on('queue.schedule.skipped', (event) => {
    const range: [number, number] = [event.payload.fromMs, event.payload.untilMs];
    const reason: string = event.payload.reason;
    void [range, reason];
  });
  // @ts-expect-error exactly one of everyMs and cron
  void queue.putSchedule({ name: 'x', lane: 'api', commandType: 'x', everyMs: 300, cron: '* * * * *' });
  // @ts-expect-error one of everyMs and cron is required
  void queue.putSchedule({ name: 'x', lane: 'api', commandType: 'x' });
  // @ts-expect-error a time zone is for a cron schedule
  void queue.putSchedule({ name: 'x', lane: 'api', commandType: 'x', everyMs: 300, timeZone: 'UTC' });
  // @ts-expect-error missed is 'skip' or 'runOnce'
  void queue.putSchedule({ name: 'x', lane: 'api', commandType: 'x', everyMs: 300, missed: 'run_once' });
  // @ts-expect-error the interval is everyMs, in milliseconds
  void queue.putSchedule({ name: 'x', lane: 'api', commandType: 'x', every: 300 });
  // @ts-expect-error times are numbers (ms since the Unix epoch) or null, not Dates
  const nextAsDate: Date | null = every.nextFireAt;
  void [interval, expression, zone, missed, nextFireAt, lastFiredAt, lastCommandId, counts, paused, all, removed, nextAsDate];
  return queue.purgeDeadLetters();
}

async function main(): Promise<void> {
  const lane = new Lane({ query: { priority: 2, minConcurrency: 1, maxConcurrency: 10, timeoutMs: 5_000 } }, { maxConcurrency: null });
  lane.handle('fetch_data', async (payload: { url: string }, ctx: CommandContext) => {
    ctx.signal.throwIfAborted();
    ctx.reportProgress({ url: payload.url, attempt: ctx.attempt });
    return { ok: true, id: ctx.id, lane: ctx.lane };
  });
  await lane.start();
  const result: unknown = await lane.submit('query', 'fetch_data', { url: 'https://example.com' });
  const controller = new AbortController();
  const handle: CommandHandle = await lane.submitWithHandle('query', 'fetch_data', '{"url":"x"}', { signal: controller.signal });
  const id: number = handle.id;
  const cancelled: CancelOutcome = await handle.cancel();
  if ((await lane.cancel(id)) === 'already_finished') void id;
  await handle.result.catch(() => undefined);
  const stats: QueueStats = await lane.stats();
  const pending: number = stats.totalPending + stats.totalActive + (stats.lanes['query']?.pending ?? 0);
  lane.on('queue.command.completed', (event) => {
    const laneId: string = event.payload.laneId;
    void laneId;
  });
  lane.on('*', (event: LaneEvent) => void event.key);
  for await (const event of lane.events(['queue.command.failed'])) {
    const key: string = event.key;
    void key;
    break;
  }
  await lane.pauseLane('query', 1_000);
  await lane.resumeLane('query');
  const where: CommandStatus | null = await lane.command(id);
  const purged: number = await lane.purgeDeadLetters();
  void [where, purged];
  const count: number = lane.cancelLane('query');
  await lane.drain(1_000);
  await lane.shutdown();
  const stopped: number = await new Lane().shutdownNow();
  const durable = new Lane(undefined, { storage: { path: './data', sync: 'normal' }, deadLetterCapacity: 100 });
  const letters = await durable.deadLetters(10);
  if (letters.length > 0) await durable.redrive(letters[0]!.commandId);
  await drainDeadLetters(durable);
  void [result, cancelled, pending, count, stopped];

  // Rate limits, priority boosts and metrics.
  const limited = new Lane(
    {
      api: { priority: 1, maxConcurrency: 4, rateLimit: { perSecond: 10 } },
      hourly: { priority: 2, maxConcurrency: 1, rateLimit: { perHour: 100 } },
      bucket: { priority: 3, maxConcurrency: 1, rateLimit: { tokenBucket: { rate: 5, periodMs: 1_000, burst: 10 } } },
      window: { priority: 4, maxConcurrency: 1, rateLimit: { slidingWindow: { limit: 5, windowMs: 1_000 } } },
      late: { priority: 9, maxConcurrency: 1, priorityBoost: { standard: 60_000 } },
      later: { priority: 9, maxConcurrency: 1, priorityBoost: { aggressive: 60_000 } },
      custom: { priority: 9, maxConcurrency: 1, priorityBoost: { deadlineMs: 60_000, steps: [{ beforeDeadlineMs: 30_000, boost: 3 }] } },
    },
    { metrics: true },
  );
  const effective: number = (await limited.stats()).lanes['late']!.effectivePriority;
  const throttled: boolean = (await limited.stats()).lanes['api']!.throttled;
  const snapshot: MetricsSnapshot = limited.metrics();
  const submitted: number | undefined = snapshot.counters['lane.commands.submitted'];
  const p99: number | undefined = snapshot.lanes['api']?.histograms['lane.command.latency_ms']?.p99;
  const text: string = limited.metricsPrometheus();
  void [effective, throttled, submitted, p99, text];

  // The web dashboard, on either engine.
  const dashboard: Dashboard = await limited.serveDashboard({ host: '127.0.0.1', port: 0, readOnly: false, title: 't' });
  const url: string = dashboard.url;
  const token: string | null = dashboard.token;
  await dashboard.close();
  const remoteDashboard: Promise<Dashboard> = (null as unknown as RedisQueue).serveDashboard({ token: 'secret' });
  // @ts-expect-error the port is a number
  void limited.serveDashboard({ port: '9090' });
  void [url, token, remoteDashboard];

  // Redis.
  const queue: RedisQueue = await RedisQueue.connect('redis://127.0.0.1:6379', {
    keyPrefix: 'orders',
    lanes: {
      api: { priority: 0, maxConcurrency: 10, timeoutMs: 5_000, retry: { maxRetries: 3 }, rateLimit: { perMinute: 600 } },
      prompt: {},
    },
  });
  await queue.declareLane('batch', { priority: 9, cancelGraceMs: 2_000, retry: {} });
  const onCluster: RedisQueue = await RedisQueue.connectCluster(['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000'], {
    keyPrefix: 'orders',
    connectTimeoutMs: 2_000,
  });
  void onCluster;
  const worker: RedisWorker = await RedisWorker.start(queue, {
    slots: 8,
    leaseTtlMs: 10_000,
    handlers: { fetch: async (payload: { url: string }, ctx: CommandContext) => ({ url: payload.url, aborted: ctx.signal.aborted }) },
  });
  worker.handle('ping', () => 'pong');
  const remote: CommandHandle = await queue.submit('api', 'fetch', { url: 'https://example.com' }, { signal: controller.signal });
  const outcome: 'cancelled' | 'signalled' | 'already_finished' | 'unknown' = await remote.cancel();
  const value: unknown = await remote.result;
  const redisStats: RedisQueueStats = await queue.stats();
  const asQueueStats: QueueStats = redisStats;
  const workers: number = redisStats.workers + redisStats.lanes['api']!.pending;
  // The deprecated names are the shared types.
  const oldHandle: RedisCommandHandle = remote;
  const oldStatus: RedisLaneStatus | undefined = redisStats.lanes['api'];
  const laneStatus: LaneStatus | undefined = oldStatus;
  await drainDeadLetters(queue);
  queue.on('queue.command.completed', (event) => void event.payload.commandId);
  void [asQueueStats, oldHandle, laneStatus];
  const letters2 = await queue.deadLetters(10);
  await queue.pauseLane('api', 1_000);
  await queue.resumeLane('api');
  for await (const event of queue.events(['queue.command.completed'])) {
    if (event.key === 'queue.command.completed') void event.payload.laneId;
    break;
  }
  const removed: number = await queue.clear();
  await worker.shutdown(10_000);
  const handedBack: number = await worker.shutdownNow();
  void [outcome, value, workers, letters2, removed, handedBack, worker.id, worker.running];

  // Delays, deadlines and bounded lanes.
  const bounded = new Lane({
    jobs: { priority: 0, maxWaiting: 100 },
    waits: { priority: 1, maxWaiting: 10, whenFull: 'wait', fullWaitTimeoutMs: 5_000 },
    rejects: { priority: 2, maxWaiting: 10, whenFull: 'reject' },
    kept: { priority: 3, keepLast: 100, keepForMs: 3_600_000 },
    forgotten: { priority: 4, keepLast: 0 },
  });
  const keepLast: number = DEFAULTS.lane.keep_last;
  const keepForMs: number = DEFAULTS.lane.keep_for_ms;
  void [keepLast, keepForMs];
  // @ts-expect-error keepLast is a number
  new Lane({ jobs: { priority: 0, keepLast: 'all' } });
  // @ts-expect-error the duration is keepForMs, in milliseconds
  new Lane({ jobs: { priority: 0, keepFor: 60_000 } });
  try {
    await bounded.submit('jobs', 'x', {}, { delayMs: 30_000, startWithinMs: 90_000, signal: controller.signal });
    await bounded.submitWithHandle('jobs', 'x', {}, { runAt: new Date(Date.now() + 5_000), startBy: new Date(Date.now() + 60_000) });
    await queue.submit('api', 'fetch', {}, { delayMs: 1_000, startBy: new Date(Date.now() + 60_000) });
  } catch (error) {
    if (error instanceof LaneFullError) {
      const fullLane: string = error.lane;
      const limit: number = error.limit;
      const code: 'LANE_FULL' = error.code;
      void [fullLane, limit, code];
    } else if (error instanceof LaneExpiredError) {
      const code: 'EXPIRED' = error.code;
      void code;
    } else if (error instanceof LaneError && (error.code === 'EXPIRED' || error.code === 'LANE_FULL')) {
      void error.message;
    }
  }
  const jobs: LaneStatus | undefined = (await bounded.stats()).lanes['jobs'];
  const bound: number | null | undefined = jobs?.maxWaiting;
  const counts: number[] = [jobs?.delayed ?? 0, jobs?.expired ?? 0, jobs?.rejectedFull ?? 0];
  const expiredState: CommandState = 'expired';
  bounded.on('queue.command.expired', (event) => {
    const startByMs: number = event.payload.startByMs;
    const commandType: string = event.payload.commandType;
    void [startByMs, commandType];
  });
  const whenFull: 'reject' | 'wait' = DEFAULTS.lane.when_full;
  const maxWaiting: number | null = DEFAULTS.lane.max_waiting;
  void [bound, counts, expiredState, whenFull, maxWaiting];
  // Idempotency keys and backpressure.
  const keyed: CommandHandle<string> = await bounded.submitWithHandle<string>('jobs', 'x', {}, { key: 'order-42' });
  const duplicate: boolean = keyed.isDuplicate;
  const remoteKeyed: CommandHandle = await queue.submit('api', 'fetch', {}, { key: 'order-42', delayMs: 10 });
  const plain: Promise<unknown> = bounded.submit('jobs', 'x', {}, { key: 'order-43' });
  bounded.on('queue.command.deduplicated', (event) => {
    const key: string = event.payload.key;
    const holder: number = event.payload.commandId;
    const commandType: string = event.payload.commandType;
    void [key, holder, commandType];
  });
  const below: Promise<void> = bounded.onSizeLessThan(100);
  const belowInLane: Promise<void> = bounded.onSizeLessThan(10, 'jobs');
  const remoteBelow: Promise<void> = queue.onSizeLessThan(100, 'api');
  void [duplicate, remoteKeyed.isDuplicate, plain, below, belowInLane, remoteBelow];
  // @ts-expect-error a limit is a number, on either engine
  void queue.onSizeLessThan('3');
  // @ts-expect-error a key is a string
  void bounded.submit('jobs', 'x', {}, { key: 42 });
  // @ts-expect-error isDuplicate is read-only
  keyed.isDuplicate = false;
  // @ts-expect-error whenFull is 'reject' or 'wait'
  new Lane({ jobs: { priority: 0, maxWaiting: 1, whenFull: 'block' } });
  // @ts-expect-error runAt is a Date
  void lane.submit('query', 'x', {}, { runAt: '2030-01-01' });
  // @ts-expect-error the delay is delayMs, in milliseconds
  void lane.submit('query', 'x', {}, { delay: 5 });

  // Groups inside a lane, on either engine: caps, rate limits, overrides, turns.
  const vip: GroupLimitsOptions = { maxConcurrency: 8, rateLimit: { perSecond: 50 } };
  const perGroup: GroupRateLimitOptions = { tokenBucket: { rate: 10, periodMs: 1_000, burst: 2 } };
  const grouped = new Lane({
    chat: { priority: 0, maxConcurrency: 16, groupMaxConcurrency: 2, groupRateLimit: perGroup, groupOverrides: { vip, small: {} } },
  });
  const tenantResult: Promise<unknown> = grouped.submit('chat', 'reply', {}, { group: 'tenant-1' });
  const tenantHandle: CommandHandle = await queue.submit('api', 'fetch', {}, { group: 'tenant-1', key: 'k', delayMs: 5 });
  await grouped.pauseGroup('chat', 'tenant-1');
  await queue.resumeGroup('api', 'tenant-1');
  const reached: number = await grouped.cancelGroup('chat', 'tenant-1');
  for (const client of [grouped, queue]) {
    const group: GroupStatus = await client.groupStatus('chat', 'tenant-1');
    const counts: number = group.pending + group.active;
    const flags: boolean[] = [group.paused, group.throttled];
    const cap: number | null = group.maxConcurrency;
    const names: string[] = [group.lane, group.group];
    const listedGroups: GroupStatus[] = await client.groups('chat', { offset: 0, limit: 10 });
    await client.groups('chat');
    void [counts, flags, cap, names, listedGroups];
  }
  void [tenantResult, tenantHandle, reached];
  // @ts-expect-error a group key is a string
  void grouped.submit('chat', 'x', {}, { group: 7 });
  // @ts-expect-error a group rate limit is a token bucket, never a sliding window
  new Lane({ chat: { priority: 0, groupRateLimit: { slidingWindow: { limit: 5, windowMs: 1_000 } } } });
  // Budgets shared across queues: one SharedBudget given to lanes of several Lanes.
  const provider = new SharedBudget('llm', 16, { rateLimit: { perMinute: 500 } });
  const unlimited = new SharedBudget('tools', 4);
  const budgeted = new Lane({ prompt: { budget: provider }, control: {} });
  new Lane({ prompt: { maxConcurrency: 2, budget: provider }, tools: { priority: 3, budget: unlimited } });
  const budgetStatus: BudgetStatus = provider.status();
  const budgetCounts: number[] = [budgetStatus.slots, budgetStatus.inUse, budgetStatus.waiting, budgetStatus.started];
  const budgetNames: string[] = [provider.name, budgetStatus.name];
  const budgetSlots: number = provider.slots;
  void [budgeted, budgetCounts, budgetNames, budgetSlots];
  // @ts-expect-error a budget's rate limit is a token bucket, never a sliding window
  new SharedBudget('llm', 1, { rateLimit: { slidingWindow: { limit: 5, windowMs: 1_000 } } });
  // @ts-expect-error a budget has a name and slots
  new SharedBudget(2);
  // @ts-expect-error a lane's budget is a SharedBudget, not its options
  new Lane({ prompt: { budget: { name: 'llm', slots: 2 } } });
  // @ts-expect-error an override has maxConcurrency and rateLimit
  new Lane({ chat: { priority: 0, groupOverrides: { vip: { max: 2 } } } });
  // @ts-expect-error groupStatus needs the group
  void grouped.groupStatus('chat');
  // @ts-expect-error the group's cap is read as a number or null
  const capAsString: string = (await grouped.groupStatus('chat', 'g')).maxConcurrency;
  void capAsString;

  // @ts-expect-error priority must be a number
  new Lane({ query: { priority: 'high', maxConcurrency: 1 } });
  // @ts-expect-error jitter is one of 'none' | 'full' | 'equal'
  new Lane({ query: { priority: 1, maxConcurrency: 1, retry: { maxRetries: 1, jitter: 'some' } } });
  // @ts-expect-error the handler must be a function
  lane.handle('x', 42);
  // @ts-expect-error signal must be an AbortSignal
  void lane.submit('query', 'x', {}, { signal: 'stop' });
  // @ts-expect-error a rate limit is one of the documented shapes
  new Lane({ query: { priority: 1, maxConcurrency: 1, rateLimit: { perDay: 5 } } });
  // @ts-expect-error a boost step needs a boost
  new Lane({ query: { priority: 1, maxConcurrency: 1, priorityBoost: { deadlineMs: 10, steps: [{ beforeDeadlineMs: 5 }] } } });
  // @ts-expect-error a worker needs a RedisQueue
  void RedisWorker.start({}, {});
  // @ts-expect-error how a lane runs is the lane's option, not the worker's
  void RedisWorker.start(queue, { timeoutMs: 1_000 });

  // The core's defaults.
  const grace: number = DEFAULTS.lane.cancel_grace_ms;
  const timeout: number | null = DEFAULTS.lane.timeout_ms;
  const slots: number = DEFAULTS.redis_worker.slots;
  const prefix: string = DEFAULTS.redis_queue.key_prefix;
  const promptMax: number | undefined = DEFAULTS.queue.default_lanes.find((lane) => lane.id === 'prompt')?.max_concurrency;
  void [grace, timeout, slots, prefix, promptMax];
  // @ts-expect-error DEFAULTS is read-only
  DEFAULTS.lane.cancel_grace_ms = 5;

  // The event keys, read-only.
  const keys: readonly string[] = EVENT_KEYS;
  for (const key of EVENT_KEYS) lane.on(key, () => undefined);
  // @ts-expect-error EVENT_KEYS is read-only
  EVENT_KEYS.push('x');
  // @ts-expect-error a cancel outcome is one of four names
  const wrong: CancelOutcome = 'finished';
  // @ts-expect-error stats() is a promise on both engines
  void lane.stats().totalPending;
  void [keys, wrong];
}

void main;
