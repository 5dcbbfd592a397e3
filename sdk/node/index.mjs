// ESM entry: the same native binding as the CommonJS entry (index.js), re-exported, so
// `import` and `require` give the very same classes.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const binding = require('./index.js');

export const {
  DEFAULTS,
  Dashboard,
  EVENT_KEYS,
  Lane,
  LaneCancelledError,
  LaneCommandError,
  LaneConfigError,
  LaneError,
  LaneExpiredError,
  LaneFullError,
  LaneHandlerNotFoundError,
  LaneInvalidArgumentError,
  LaneNotFoundError,
  LaneNotJsonError,
  LaneQueueError,
  LaneShutdownError,
  LaneStorageError,
  LaneTimeoutError,
  RedisQueue,
  RedisWorker,
  SharedBudget,
  __napiBindingTarget,
} = binding;
export default binding;
