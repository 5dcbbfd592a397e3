// Type-checked by types_check_strictly.test.mjs with `tsc --noEmit --strict`, with no
// @types/node and no DOM lib: index.d.ts must stand on its own. The `@ts-expect-error`
// lines are misuse that must not compile (tsc fails if they do).
import {
  Lane,
  LaneCancelledError,
  LaneError,
  LaneNotJsonError,
  LaneTimeoutError,
  type CommandContext,
  type CommandHandle,
  type GroupStatus,
  type LaneErrorCode,
  type LaneEvent,
  type LaneEvents,
} from '../../index.js';

interface Sum {
  total: number;
}

async function main(): Promise<void> {
  const lane = new Lane({ q: { priority: 0, maxConcurrency: 4, timeoutMs: 1_000 } });
  lane.handle('add', async (payload: { a: number; b: number }, ctx: CommandContext): Promise<Sum> => {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    ctx.signal.throwIfAborted();
    return { total: payload.a + payload.b };
  });
  await lane.start();

  const sum: Sum = await lane.submit<Sum>('q', 'add', { a: 1, b: 2 });
  const handle: CommandHandle<Sum> = await lane.submitWithHandle<Sum>('q', 'add', { a: 1, b: 2 });
  const total: number = (await handle.result).total;
  const untyped: unknown = await lane.submit('q', 'add', { a: 1, b: 2 });
  // @ts-expect-error a result is unknown unless typed
  void (await lane.submit('q', 'add', {})).total;
  // @ts-expect-error the handle's result has the submit's type
  const wrong: string = await handle.result;

  lane.on('queue.command.completed', (event) => {
    const ms: number = event.payload.durationMs;
    const key: 'queue.command.completed' = event.key;
    // @ts-expect-error a completed event has no `missed`
    void event.payload.missed;
    void [ms, key];
  });
  lane.on('queue.command.abandoned', (event) => {
    const reason: string = event.payload.reason;
    void reason;
  });
  lane.on('*', (event: LaneEvent) => {
    if (event.key === 'queue.lane.pressure') {
      const pending: number = event.payload.pending;
      void pending;
    }
  });
  // @ts-expect-error not an event key
  lane.on('queue.command.finished', () => {});
  for await (const event of lane.events(['queue.command.failed'])) {
    if (event.key === 'queue.events.lagged') {
      const missed: number = event.payload.missed;
      void missed;
    } else {
      const error: string = event.payload.error;
      void error;
    }
    break;
  }
  const completed: LaneEvents['queue.command.completed'] = { laneId: 'q', commandId: 1, durationMs: 2 };

  try {
    await lane.submit('q', 'add', { a: Number.NaN, b: 1 });
  } catch (error) {
    if (error instanceof LaneNotJsonError) {
      const path: string = error.path;
      const code: 'NOT_JSON' = error.code;
      void [path, code];
    } else if (error instanceof LaneTimeoutError || error instanceof LaneCancelledError) {
      const message: string = error.message;
      void message;
    } else if (error instanceof LaneError) {
      const code: LaneErrorCode = error.code;
      void code;
    }
  }
  const mine = new LaneTimeoutError('took too long');
  const asError: Error = mine;

  const size: number = lane.size;
  const running: number = lane.running;
  lane.pause();
  lane.resume();
  await lane.onEmpty();
  await lane.onIdle();
  const abandoned: number = (await lane.stats()).lanes['q']?.abandoned ?? 0;
  // Groups inside a lane.
  const grouped = new Lane({ g: { priority: 0, groupMaxConcurrency: 1, groupOverrides: { vip: { maxConcurrency: 4 } } } });
  await grouped.submit('g', 'add', { a: 1, b: 2 }, { group: 'tenant-1' });
  const group: GroupStatus = await grouped.groupStatus('g', 'tenant-1');
  const cap: number | null = group.maxConcurrency;
  const cancelledInGroup: number = await grouped.cancelGroup('g', 'tenant-1');
  const groups: GroupStatus[] = await grouped.groups('g', { limit: 5 });
  // @ts-expect-error a group key is a string
  void grouped.pauseGroup('g', 1);
  void [cap, cancelledInGroup, groups];
  await lane.shutdown();
  void [sum, total, untyped, wrong, completed, asError, size, running, abandoned];
}

void main;
