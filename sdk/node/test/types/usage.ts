// Type-checked by index_d_ts_is_generated_and_current.test.mjs with `tsc --strict`:
// the documented API must compile, and misuse must not.
import { Lane, type CommandContext, type CommandHandle, type LaneEvent, type QueueStats } from '../../index.js';

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
  const cancelled: boolean = handle.cancel() || lane.cancel(id);
  await handle.result.catch(() => undefined);
  const stats: QueueStats = lane.stats();
  const pending: number = stats.totalPending + stats.totalActive + (stats.lanes['query']?.pending ?? 0);
  lane.on('queue.command.completed', (event: LaneEvent) => {
    const laneId = event.payload['laneId'];
    void laneId;
  });
  for await (const event of lane.events(['queue.command.failed'])) {
    const key: string = event.key;
    void key;
    break;
  }
  lane.pauseLane('query', 1_000);
  lane.resumeLane('query');
  const count: number = lane.cancelLane('query');
  await lane.drain(1_000);
  await lane.shutdown();
  const stopped: number = await new Lane().shutdownNow();
  const durable = new Lane(undefined, { storage: { path: './data', sync: 'normal' }, deadLetterCapacity: 100 });
  const letters = durable.deadLetters();
  if (letters.length > 0) await durable.redrive(letters[0]!.commandId);
  void [result, cancelled, pending, count, stopped];

  // @ts-expect-error priority must be a number
  new Lane({ query: { priority: 'high', maxConcurrency: 1 } });
  // @ts-expect-error jitter is one of 'none' | 'full' | 'equal'
  new Lane({ query: { priority: 1, maxConcurrency: 1, retry: { maxRetries: 1, jitter: 'some' } } });
  // @ts-expect-error the handler must be a function
  lane.handle('x', 42);
  // @ts-expect-error signal must be an AbortSignal
  void lane.submit('query', 'x', {}, { signal: 'stop' });
}

void main;
