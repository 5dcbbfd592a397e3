// The JavaScript half of a Lane: compiled once per Lane with napi_run_script (see
// runtime.rs). It keeps everything that lives on the JavaScript thread — handlers,
// the contexts of running commands, the promises given to submitters, listeners and
// iterators — so the Rust side passes only strings and numbers across the boundary.
//
// `native` holds the Rust callbacks: settleRun(key, ok, json, summary, retryable),
// progress(key, json), cancel(id), cancelHandle(id), eventsWanted(wanted); and
// `errors`, the error classes (errors.js).
(function createLaneRuntime(native) {
  'use strict';

  /** command type -> handler function */
  const handlers = new Map();
  /** run key -> CommandContext of a running attempt */
  const runs = new Map();
  /** submit token -> { resolve, reject, watch } */
  const promises = new Map();
  /** command id -> the error its last failed attempt threw (kept for its submitter) */
  const failures = new Map();
  /**
   * command id -> how many more submitters wait for it (duplicates of its idempotency
   * key): each of them gets the handler's own thrown value too.
   */
  const sharers = new Map();
  /** event key or '*' -> Set of listeners */
  const listeners = new Map();
  /** live event iterators */
  const iterators = new Set();

  // Pending promises keep the process alive, like pending timers and sockets do, and so
  // do commands recovered from storage until the queue has run them (`hold`/`release`
  // from Rust); nothing else of a Lane does, so the process exits on its own once its
  // work is settled. A Lane never started holds nothing (its commands could never
  // finish): what it accepted is reported as dropped at exit instead.
  let pending = 0;
  let started = true;
  /** Submit promises made before `start()`: they hold the process from `start()` on. */
  const beforeStart = new Set();
  const keepAlive = setInterval(() => {}, 0x7fffffff);
  keepAlive.unref();

  function hold() {
    if (pending++ === 0) keepAlive.ref();
  }

  function release() {
    if (--pending === 0) keepAlive.unref();
    exitReport.pending = pending;
  }

  /** Whether the lane runs commands (`false` for a Lane until `start()`). */
  function setStarted(value) {
    started = value;
    exitReport.started = started;
    if (!started) return;
    for (const entry of beforeStart) {
      entry.waitsForStart = false;
      hold();
    }
    beforeStart.clear();
  }

  // Accepted work is never lost silently: at exit, whatever is still unfinished (the
  // process called process.exit(), or the lane was never started) is reported on stderr.
  const exitReport = {
    started,
    pending,
    report() {
      const count = native.unfinished();
      if (count <= 0) return;
      const why = exitReport.started
        ? 'the process exited before they finished; await lane.onIdle() or lane.shutdown() first'
        : 'their lane was never started; call lane.start()';
      process.stderr.write(`a3s_lane: ${count} accepted command(s) were dropped at exit (${why})\n`);
    },
  };
  native.errors.atExit(exitReport);

  /** An error of the SDK's classes; `ErrorClass` TypeError makes it a TypeError too. */
  function laneError(code, message, ErrorClass = Error) {
    return native.errors.make(code, ErrorClass === TypeError ? 'type' : 'error', message);
  }

  // The JSON rule (docs/SDK_RULES.md): a payload or result is refused, never copied
  // lossily, when JSON cannot hold it; the error names where (`payload.items[3].x`).
  const MAX_DEPTH = 128;
  const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

  function notJson(path, what) {
    const error = native.errors.make('NOT_JSON', 'type', `${path} is not JSON: ${what}`);
    error.path = path;
    return error;
  }

  function keyPath(path, key) {
    return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
  }

  /** Throws NOT_JSON if `value` (at `path`) holds anything JSON cannot. */
  function checkJson(value, path, depth, parents) {
    switch (typeof value) {
      case 'string':
        if (!value.isWellFormed()) throw notJson(path, 'a string with a lone surrogate (not valid Unicode)');
        return;
      case 'boolean':
        return;
      case 'number':
        if (Number.isFinite(value)) return;
        throw notJson(path, `the number ${value} (JSON has no NaN or infinity)`);
      case 'bigint':
        throw notJson(path, `the bigint ${value}n (pass a number or a string)`);
      case 'undefined':
        throw notJson(path, 'undefined (leave the key out, or pass null)');
      case 'function':
        throw notJson(path, 'a function');
      case 'symbol':
        throw notJson(path, 'a symbol');
      default:
        break;
    }
    if (value === null) return;
    if (depth >= MAX_DEPTH) throw notJson(path, `nesting deeper than ${MAX_DEPTH} levels`);
    if (parents.has(value)) throw notJson(path, 'a cycle (the value contains itself)');
    parents.add(value);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) checkJson(value[i], `${path}[${i}]`, depth + 1, parents);
    } else {
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw notJson(path, `${describe(value)} (only plain objects, arrays, strings, finite numbers, booleans and null)`);
      }
      for (const key of Object.keys(value)) {
        if (!key.isWellFormed()) throw notJson(path, 'a key with a lone surrogate (not valid Unicode)');
        const item = value[key];
        // A key set to undefined is absent, as in JSON.stringify.
        if (item !== undefined) checkJson(item, keyPath(path, key), depth + 1, parents);
      }
    }
    parents.delete(value);
  }

  /** `value` as JSON text, or throws NOT_JSON naming where it is not JSON. */
  function toJson(value, path) {
    switch (typeof value) {
      case 'string':
        if (value.isWellFormed()) return JSON.stringify(value);
        break;
      case 'boolean':
        return value ? 'true' : 'false';
      case 'number':
        if (Number.isFinite(value)) return String(value);
        break;
      default:
        if (value === null || value === undefined) return 'null';
    }
    checkJson(value, path, 0, new Set());
    return JSON.stringify(value);
  }

  class CommandContext {
    #id;
    #lane;
    #attempt;
    #key;
    #controller = null;
    #aborted = false;
    #reason = undefined;
    #held = false;

    constructor(id, lane, attempt, key) {
      this.#id = id;
      this.#lane = lane;
      this.#attempt = attempt;
      this.#key = key;
    }

    /** The command's id. */
    get id() {
      return this.#id;
    }

    /** The lane it runs in. */
    get lane() {
      return this.#lane;
    }

    /** Which attempt this is, starting at 1. */
    get attempt() {
      return this.#attempt;
    }

    /** Aborted when the command is cancelled or times out. Created on first use. */
    get signal() {
      if (this.#controller === null) {
        this.#controller = new AbortController();
        if (this.#aborted) this.#controller.abort(this.#reason);
      }
      return this.#controller.signal;
    }

    /** Publishes a `queue.command.progress` event while the command runs. */
    reportProgress(progress) {
      if (runs.get(this.#key) === this) native.progress(this.#key, toJson(progress, 'progress'));
    }

    static abort(ctx, reason) {
      if (ctx.#aborted) return;
      ctx.#aborted = true;
      ctx.#reason = reason;
      if (ctx.#controller !== null) ctx.#controller.abort(reason);
    }

    static key(ctx) {
      return ctx.#key;
    }

    static aborted(ctx) {
      return ctx.#aborted;
    }

    static hold(ctx) {
      ctx.#held = true;
      hold();
    }

    static unhold(ctx) {
      if (!ctx.#held) return;
      ctx.#held = false;
      release();
    }
  }
  Object.defineProperty(CommandContext.prototype, Symbol.toStringTag, { value: 'CommandContext' });

  /** The text the queue keeps of a thrown value (its stack, or `String(value)`). */
  function summarize(thrown) {
    try {
      if (thrown !== null && typeof thrown === 'object' && typeof thrown.stack === 'string' && thrown.stack.length > 0) {
        return thrown.stack;
      }
      return String(thrown);
    } catch {
      return 'handler failed with a value that cannot be printed';
    }
  }

  function isRetryable(thrown) {
    try {
      return !(thrown !== null && typeof thrown === 'object' && thrown.retryable === false);
    } catch {
      return true;
    }
  }

  function finish(ctx, ok, value, id, recordFailure) {
    const key = CommandContext.key(ctx);
    if (runs.get(key) !== ctx) return; // abandoned (timed out, or dropped after a cancel)
    runs.delete(key);
    CommandContext.unhold(ctx);
    let retryable;
    if (ok) {
      let json;
      try {
        json = value === undefined || value === null ? undefined : toJson(value, 'result');
      } catch (error) {
        json = error;
      }
      if (typeof json !== 'object') {
        native.settleRun(key, true, json, undefined, true);
        return;
      }
      // Running it again would give the same value: not retried.
      value = json;
      retryable = false;
    } else {
      retryable = isRetryable(value);
    }
    // The submitter gets the very thrown value; a run already answered (timed out, or
    // cancelled) keeps nothing for anyone.
    if (recordFailure && !CommandContext.aborted(ctx)) failures.set(id, value);
    native.settleRun(key, false, undefined, summarize(value), retryable);
  }

  /**
   * Runs one attempt. `payload` is the payload itself (a JSON primitive or a string), or
   * its JSON text when `isJson` (an object or an array).
   */
  function run(type, payload, isJson, id, lane, attempt, key, recordFailure) {
    const handler = handlers.get(type);
    const ctx = new CommandContext(id, lane, attempt, key);
    // A running handler keeps the process alive until it returns or is told to stop
    // (then its own work decides), so the abort always reaches it.
    runs.set(key, ctx);
    CommandContext.hold(ctx);
    let result;
    try {
      result = handler(isJson ? JSON.parse(payload) : payload, ctx);
    } catch (error) {
      finish(ctx, false, error, id, recordFailure);
      return;
    }
    if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
      let then;
      try {
        then = result.then;
      } catch (error) {
        finish(ctx, false, error, id, recordFailure);
        return;
      }
      if (typeof then === 'function') {
        try {
          then.call(
            result,
            (value) => finish(ctx, true, value, id, recordFailure),
            (error) => finish(ctx, false, error, id, recordFailure),
          );
        } catch (error) {
          finish(ctx, false, error, id, recordFailure);
        }
        return;
      }
    }
    finish(ctx, true, result, id, recordFailure);
  }

  /** Aborts a running attempt's signal; `forget` also abandons it (its result is ignored). */
  function abort(key, code, message, forget) {
    const ctx = runs.get(key);
    if (ctx === undefined) return;
    if (forget) runs.delete(key);
    CommandContext.abort(ctx, laneError(code, message));
    CommandContext.unhold(ctx);
  }

  function promise(token) {
    return valuePromise(token, undefined);
  }

  /**
   * A submit's promise: like `promise`, but before `start()` it does not keep the process
   * alive (the command cannot finish until then).
   */
  function commandPromise(token, detached) {
    const made = valuePromise(token, undefined, !started);
    if (detached) made.catch(() => {});
    return made;
  }

  /** A promise that resolves with `value` when it is settled without a JSON result. */
  function valuePromise(token, value, waitsForStart = false) {
    const entry = { resolve: undefined, reject: undefined, watch: undefined, promise: undefined, value, waitsForStart };
    if (waitsForStart) beforeStart.add(entry);
    else hold();
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    promises.set(token, entry);
    return entry.promise;
  }

  function take(token) {
    const entry = promises.get(token);
    if (entry === undefined) return undefined;
    promises.delete(token);
    if (entry.waitsForStart) beforeStart.delete(entry);
    else release();
    if (entry.watch !== undefined) entry.watch.stop();
    return entry;
  }

  function resolve(token, json, id) {
    if (id >= 0 && failures.size !== 0) failures.delete(id);
    if (id >= 0 && sharers.size !== 0) sharers.delete(id);
    const entry = take(token);
    if (entry !== undefined) {
      // No JSON (Rust's `None` arrives as null): `undefined`, or the value given to valuePromise.
      entry.resolve(json === undefined || json === null ? entry.value : json === 'null' ? null : JSON.parse(json));
    }
  }

  function resolveWith(token, value) {
    const entry = take(token);
    if (entry !== undefined) entry.resolve(value);
  }

  /** Rejects a submitter; a handler's own failure wins over the queue's summary of it. */
  function reject(token, id, error, useFailure) {
    let reason = error;
    if (id >= 0 && failures.has(id)) {
      const failure = takeFailure(id);
      if (useFailure) reason = failure;
    }
    const entry = promises.get(token);
    if (entry !== undefined && entry.watch !== undefined && entry.watch.aborted && reason === error) {
      reason.cause = entry.watch.signal.reason;
    }
    const taken = take(token);
    if (taken !== undefined) taken.reject(reason);
  }

  /**
   * What a promise settled by Rust (not through a token) rejects with for command `id`:
   * the handler's own thrown value when `useFailure` and one was kept, else `error`.
   */
  function reason(id, error, useFailure) {
    if (id >= 0 && failures.has(id)) {
      const failure = takeFailure(id);
      if (useFailure) return failure;
    }
    return error;
  }

  /**
   * The failure kept for command `id`, forgotten unless another submitter of its
   * idempotency key still waits for it.
   */
  function takeFailure(id) {
    const failure = failures.get(id);
    const waiting = sharers.get(id);
    if (waiting === undefined) {
      failures.delete(id);
    } else if (waiting > 1) {
      sharers.set(id, waiting - 1);
    } else {
      sharers.delete(id);
    }
    return failure;
  }

  /** One more submitter waits for command `id` (a duplicate of its idempotency key). */
  function share(id) {
    sharers.set(id, (sharers.get(id) ?? 0) + 1);
  }

  /** Forgets the failure kept for command `id` (it succeeded after all); how many are left. */
  function forget(id) {
    failures.delete(id);
    sharers.delete(id);
    return failures.size;
  }

  /** A result's JSON text as a value. */
  function parse(json) {
    return JSON.parse(json);
  }

  /** A handle's result promise: rejections are observed through it, never reported as unhandled. */
  function detachedPromise(token) {
    const result = promise(token);
    result.catch(() => {});
    return result;
  }

  /** The keys of a submit's options (all but `signal` are read by Rust). */
  const SUBMIT_OPTIONS = new Set(['signal', 'delayMs', 'runAt', 'startBy', 'startWithinMs', 'key', 'group']);

  /**
   * Checks a submit's options and watches its `signal` for the command of `token`:
   * 0 when the command may be submitted, 1 when the signal is already aborted, or a
   * TypeError when the options are invalid.
   */
  function submitOptions(token, options) {
    if (options === undefined || options === null) return 0;
    if (typeof options !== 'object' || Array.isArray(options)) {
      return laneError('INVALID_ARGUMENT', `options must be an object like { signal }, got ${describe(options)}`, TypeError);
    }
    for (const key of Object.keys(options)) {
      if (!SUBMIT_OPTIONS.has(key) && options[key] !== undefined) {
        return laneError(
          'INVALID_ARGUMENT',
          `unknown submit option '${key}'; the options are 'signal' (an AbortSignal), ` +
            "'delayMs' or 'runAt' (a Date), 'startBy' (a Date) or 'startWithinMs', 'key' (a string) and " +
            "'group' (a string)",
          TypeError,
        );
      }
    }
    if (typeof options.key === 'string' && !options.key.isWellFormed()) {
      return laneError('INVALID_ARGUMENT', 'options.key is a string with a lone surrogate (not valid Unicode)', TypeError);
    }
    if (typeof options.group === 'string' && !options.group.isWellFormed()) {
      return laneError('INVALID_ARGUMENT', 'options.group is a string with a lone surrogate (not valid Unicode)', TypeError);
    }
    const signal = options.signal;
    if (signal === undefined) return 0;
    if (!(signal instanceof AbortSignal)) {
      return laneError('INVALID_ARGUMENT', `options.signal must be an AbortSignal, got ${describe(signal)}`, TypeError);
    }
    const entry = promises.get(token);
    const state = {
      signal,
      id: -1,
      aborted: signal.aborted,
      stop() {
        signal.removeEventListener('abort', onAbort);
      },
    };
    function onAbort() {
      state.aborted = true;
      if (state.id >= 0) native.cancel(state.id);
    }
    if (!signal.aborted) signal.addEventListener('abort', onAbort, { once: true });
    entry.watch = state;
    return state.aborted ? 1 : 0;
  }

  /** Tells the watcher of `token` its command id, cancelling it if its signal already fired. */
  function bind(token, id) {
    const entry = promises.get(token);
    if (entry === undefined || entry.watch === undefined) return false;
    entry.watch.id = id;
    if (entry.watch.aborted) native.cancel(id);
    return entry.watch.aborted;
  }

  /** The payload as JSON text (a string is a string, not JSON text), or the NOT_JSON error. */
  function payloadJson(payload) {
    try {
      return toJson(payload, 'payload');
    } catch (error) {
      return error;
    }
  }

  function describe(value) {
    if (value === null) return 'null';
    if (Array.isArray(value)) return 'an array';
    if (typeof value === 'object') {
      const name = value.constructor && value.constructor.name;
      return name ? `an instance of ${name}` : 'an object';
    }
    if (typeof value === 'function') return 'a function';
    if (typeof value === 'symbol') return 'a symbol';
    if (typeof value === 'bigint') return 'a bigint';
    return typeof value;
  }

  /**
   * A submitted command: its id, its result, a way to cancel it (a promise of the
   * outcome), and whether the submit was a duplicate of a live idempotency key (then
   * the command is the one holding the key, and nothing was queued).
   */
  function makeHandle(resultToken, id, isDuplicate) {
    const entry = promises.get(resultToken);
    const result = entry === undefined ? Promise.resolve(undefined) : entry.promise;
    return Object.freeze({
      id,
      result,
      isDuplicate: isDuplicate === true,
      cancel: () => native.cancelHandle(id),
      [Symbol.toStringTag]: 'CommandHandle',
    });
  }

  function handle(type, handler) {
    handlers.set(type, handler);
  }

  /** Registers every handler of a `{ type: handler }` object (checked by the caller). */
  function handleAll(object) {
    for (const type of Object.keys(object)) handlers.set(type, object[type]);
  }

  function eventCount() {
    let count = iterators.size;
    for (const set of listeners.values()) count += set.size;
    return count;
  }

  function on(key, listener) {
    let set = listeners.get(key);
    if (set === undefined) {
      set = new Set();
      listeners.set(key, set);
    }
    set.add(listener);
    native.eventsWanted(true);
  }

  function off(key, listener) {
    const set = listeners.get(key);
    if (set !== undefined && set.delete(listener) && set.size === 0) listeners.delete(key);
    if (eventCount() === 0) native.eventsWanted(false);
  }

  function report(error) {
    // A throwing listener must not stop the others nor the queue: it is reported the way
    // an error thrown from a timer callback is, as an uncaught exception.
    queueMicrotask(() => {
      throw error;
    });
  }

  function deliver(event) {
    for (const key of [event.key, '*']) {
      const set = listeners.get(key);
      if (set === undefined) continue;
      for (const listener of [...set]) {
        try {
          listener(event);
        } catch (error) {
          report(error);
        }
      }
    }
    for (const iterator of [...iterators]) iterator.push(event);
    // Nothing follows the end of a shutdown: iterators end once they have handed out
    // what they hold.
    if (event.key === 'queue.shutdown.complete') close();
  }

  function emit(json) {
    const events = JSON.parse(json);
    for (const event of events) deliver(event);
  }

  function iterate(keys, capacity, ended) {
    const wanted = keys == null ? undefined : new Set(keys); // no keys arrive as null
    const buffer = [];
    let missed = 0;
    let waiting = null;
    let done = false;
    const iterator = {
      push(event) {
        if (done) return;
        if (wanted !== undefined && !wanted.has(event.key) && event.key !== 'queue.events.lagged') return;
        if (waiting !== null) {
          const resolveNext = waiting;
          waiting = null;
          resolveNext({ value: event, done: false });
          return;
        }
        if (buffer.length >= capacity) {
          // Like the queue's own subscribers: a reader that falls behind loses the oldest
          // events and is told how many with one `queue.events.lagged` event.
          buffer.shift();
          missed += 1;
        }
        buffer.push(event);
      },
      end() {
        done = true;
        iterators.delete(iterator);
        if (waiting !== null) {
          const resolveNext = waiting;
          waiting = null;
          resolveNext({ value: undefined, done: true });
        }
      },
    };
    if (ended) {
      done = true;
    } else {
      iterators.add(iterator);
      native.eventsWanted(true);
    }
    const close = () => {
      buffer.length = 0;
      iterator.end();
      if (eventCount() === 0) native.eventsWanted(false);
    };
    return {
      next() {
        if (missed > 0) {
          const count = missed;
          missed = 0;
          return Promise.resolve({
            value: { key: 'queue.events.lagged', timestamp: Date.now(), payload: { missed: count } },
            done: false,
          });
        }
        if (buffer.length > 0) return Promise.resolve({ value: buffer.shift(), done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        if (waiting !== null) {
          return Promise.reject(laneError('CONFIG', 'next() called again before the previous next() settled', TypeError));
        }
        return new Promise((resolveNext) => {
          waiting = resolveNext;
        });
      },
      return(value) {
        close();
        return Promise.resolve({ value, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
      [Symbol.toStringTag]: 'LaneEventIterator',
    };
  }

  /** After shutdown: event iterators end once they have handed out what they hold. */
  function close() {
    for (const iterator of [...iterators]) iterator.end();
  }

  return {
    abort,
    bind,
    commandPromise,
    detachedPromise,
    emit,
    forget,
    handle,
    handleAll,
    hold,
    iterate,
    makeHandle,
    off,
    on,
    parse,
    payloadJson,
    promise,
    reason,
    reject,
    release,
    resolve,
    resolveWith,
    run,
    setStarted,
    share,
    submitOptions,
    valuePromise,
  };
});
