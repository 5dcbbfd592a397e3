// The JavaScript half of a Lane: compiled once per Lane with napi_run_script (see
// runtime.rs). It keeps everything that lives on the JavaScript thread — handlers,
// the contexts of running commands, the promises given to submitters, listeners and
// iterators — so the Rust side passes only strings and numbers across the boundary.
//
// `native` holds the Rust callbacks: settleRun(key, ok, json, summary, retryable),
// progress(key, json), cancel(id), cancelHandle(id), eventsWanted(wanted).
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
  /** event key or '*' -> Set of listeners */
  const listeners = new Map();
  /** live event iterators */
  const iterators = new Set();

  // Pending promises keep the process alive, like pending timers and sockets do, and so
  // do commands recovered from storage until the queue has run them (`hold`/`release`
  // from Rust); nothing else of a Lane does, so the process exits on its own once its
  // work is settled.
  let pending = 0;
  const keepAlive = setInterval(() => {}, 0x7fffffff);
  keepAlive.unref();

  function hold() {
    if (pending++ === 0) keepAlive.ref();
  }

  function release() {
    if (--pending === 0) keepAlive.unref();
  }

  function laneError(code, message, ErrorClass = Error) {
    const error = new ErrorClass(message);
    error.code = code;
    return error;
  }

  class CommandContext {
    #id;
    #lane;
    #attempt;
    #key;
    #controller = null;
    #aborted = false;
    #reason = undefined;

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
      if (runs.get(this.#key) === this) native.progress(this.#key, JSON.stringify(progress ?? null));
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
  }
  Object.defineProperty(CommandContext.prototype, Symbol.toStringTag, { value: 'CommandContext' });

  function asError(thrown) {
    if (thrown instanceof Error) return thrown;
    if (thrown !== null && typeof thrown === 'object') return thrown;
    let text;
    try {
      text = String(thrown);
    } catch {
      text = typeof thrown;
    }
    return new Error(text);
  }

  function summarize(error) {
    try {
      if (typeof error.stack === 'string' && error.stack.length > 0) return error.stack;
      return String(error);
    } catch {
      return 'handler failed with an error that cannot be printed';
    }
  }

  function finish(ctx, ok, value, id, recordFailure) {
    const key = CommandContext.key(ctx);
    if (runs.get(key) !== ctx) return; // abandoned (timed out, or dropped after a cancel)
    runs.delete(key);
    if (ok) {
      let json;
      try {
        json = value === undefined || value === null ? undefined : JSON.stringify(value);
      } catch (error) {
        ok = false;
        value = laneError(
          'RESULT_NOT_JSON',
          `the handler's result cannot be converted to JSON: ${error && error.message}`,
          TypeError,
        );
      }
      if (ok) {
        native.settleRun(key, true, json, undefined, true);
        return;
      }
    }
    const error = asError(value);
    if (recordFailure) failures.set(id, error);
    native.settleRun(key, false, undefined, summarize(error), error.retryable !== false);
  }

  function run(type, payloadJson, id, lane, attempt, key, recordFailure) {
    const handler = handlers.get(type);
    const ctx = new CommandContext(id, lane, attempt, key);
    runs.set(key, ctx);
    let result;
    try {
      result = handler(payloadJson === 'null' ? null : JSON.parse(payloadJson), ctx);
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
  }

  function promise(token) {
    return valuePromise(token, undefined);
  }

  /** A promise that resolves with `value` when it is settled without a JSON result. */
  function valuePromise(token, value) {
    hold();
    const entry = { resolve: undefined, reject: undefined, watch: undefined, promise: undefined, value };
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
    release();
    if (entry.watch !== undefined) entry.watch.stop();
    return entry;
  }

  function resolve(token, json, id) {
    if (id >= 0 && failures.size !== 0) failures.delete(id);
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
    if (id >= 0) {
      const failure = failures.get(id);
      failures.delete(id);
      if (useFailure && failure !== undefined) reason = failure;
    }
    const entry = promises.get(token);
    if (entry !== undefined && entry.watch !== undefined && entry.watch.aborted && reason === error) {
      reason.cause = entry.watch.signal.reason;
    }
    const taken = take(token);
    if (taken !== undefined) taken.reject(reason);
  }

  /** A handle's result promise: rejections are observed through it, never reported as unhandled. */
  function detachedPromise(token) {
    const result = promise(token);
    result.catch(() => {});
    return result;
  }

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
      if (key !== 'signal' && options[key] !== undefined) {
        return laneError(
          'INVALID_ARGUMENT',
          `unknown submit option '${key}'; the only option is 'signal' (an AbortSignal)`,
          TypeError,
        );
      }
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

  /** The payload as JSON text (a string payload is taken as JSON text), or a TypeError. */
  function payloadJson(payload) {
    if (typeof payload === 'string') return payload;
    if (payload === undefined) return 'null';
    let json;
    try {
      json = JSON.stringify(payload);
    } catch (error) {
      return laneError('INVALID_ARGUMENT', `payload cannot be converted to JSON: ${error && error.message}`, TypeError);
    }
    if (json === undefined) {
      return laneError(
        'INVALID_ARGUMENT',
        `payload must be a JSON value or a JSON string, got ${describe(payload)}`,
        TypeError,
      );
    }
    return json;
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
   * A submitted command: its id, its result and a way to cancel it (a boolean for a
   * Lane, a promise of the outcome for a RedisQueue).
   */
  function makeHandle(resultToken, id) {
    const entry = promises.get(resultToken);
    const result = entry === undefined ? Promise.resolve(undefined) : entry.promise;
    return Object.freeze({
      id,
      result,
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
    detachedPromise,
    emit,
    handle,
    handleAll,
    hold,
    iterate,
    makeHandle,
    off,
    on,
    payloadJson,
    promise,
    reject,
    release,
    resolve,
    resolveWith,
    run,
    submitOptions,
    valuePromise,
  };
});
