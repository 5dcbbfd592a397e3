// The error classes of @a3s-lab/lane, made once per JavaScript environment (see
// errors.rs) and exported: `LaneError` and one subclass per `code`.
//
// An argument error is also a TypeError or a RangeError (as before), which single
// inheritance cannot give a subclass of `LaneError`; so `instanceof` on these classes
// checks a brand and the code (Symbol.hasInstance) rather than the prototype chain.
(function createLaneErrors() {
  'use strict';

  const brand = Symbol('a3s-lane error');
  /** class -> code (`LaneError` itself: none) */
  const codeOf = new Map();
  /** code -> class */
  const classOf = new Map();

  function mark(error, code) {
    Object.defineProperty(error, brand, { value: true });
    if (code !== undefined) error.code = code;
  }

  class LaneError extends Error {
    constructor(message, options) {
      super(message, options);
      let made = new.target;
      while (made !== null && !codeOf.has(made)) made = Object.getPrototypeOf(made);
      mark(this, made === null ? undefined : codeOf.get(made));
    }

    static [Symbol.hasInstance](value) {
      // A user's own subclass: the ordinary prototype check.
      if (this !== LaneError && !codeOf.has(this)) return Function.prototype[Symbol.hasInstance].call(this, value);
      if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
      if (value[brand] !== true) return false;
      const code = codeOf.get(this);
      return code === undefined || value.code === code;
    }
  }
  Object.defineProperty(LaneError.prototype, 'name', { value: 'LaneError', writable: true, configurable: true });

  const classes = { LaneError };
  const table = [
    ['LaneNotFoundError', 'LANE_NOT_FOUND'],
    ['LaneHandlerNotFoundError', 'HANDLER_NOT_FOUND'],
    ['LaneConfigError', 'CONFIG'],
    ['LaneInvalidArgumentError', 'INVALID_ARGUMENT'],
    ['LaneNotJsonError', 'NOT_JSON'],
    ['LaneTimeoutError', 'TIMEOUT'],
    ['LaneCancelledError', 'CANCELLED'],
    ['LaneShutdownError', 'SHUTDOWN'],
    ['LaneStorageError', 'STORAGE'],
    ['LaneQueueError', 'QUEUE'],
    ['LaneCommandError', 'COMMAND_FAILED'],
    ['LaneExpiredError', 'EXPIRED'],
    ['LaneFullError', 'LANE_FULL'],
  ];
  for (const [name, code] of table) {
    // A named class per code, so stacks and `error.name` say which.
    const made = { [name]: class extends LaneError {} }[name];
    Object.defineProperty(made.prototype, 'name', { value: name, writable: true, configurable: true });
    codeOf.set(made, code);
    classOf.set(code, made);
    classes[name] = made;
  }

  // Argument errors keep their TypeError / RangeError class.
  class LaneTypeError extends TypeError {}
  class LaneRangeError extends RangeError {}
  Object.defineProperty(LaneTypeError.prototype, 'name', { value: 'TypeError', writable: true, configurable: true });
  Object.defineProperty(LaneRangeError.prototype, 'name', { value: 'RangeError', writable: true, configurable: true });

  /** The error with `code` and `message`; `kind` 'type', 'range' or 'error'. */
  function make(code, kind, message) {
    let error;
    if (kind === 'type') error = new LaneTypeError(message);
    else if (kind === 'range') error = new LaneRangeError(message);
    else {
      const Made = classOf.get(code);
      if (Made !== undefined) return new Made(message);
      error = new LaneError(message);
    }
    mark(error, code);
    return error;
  }

  /**
   * `Class` as exported: the same class, except that calling it without `new` throws
   * (a native constructor would otherwise wrap `globalThis`).
   */
  function guardConstructor(Class) {
    return new Proxy(Class, {
      apply() {
        throw make(
          'INVALID_ARGUMENT',
          'type',
          `${Class.name} is a class: create it with \`new ${Class.name}(...)\``,
        );
      },
    });
  }

  // One 'exit' listener per environment, whatever the number of lanes; each lane's
  // report is held weakly, so a collected lane is forgotten.
  const exitReports = new Set();
  let listening = false;
  function atExit(report) {
    exitReports.add(new WeakRef(report));
    if (listening || typeof process !== 'object' || process === null) return;
    listening = true;
    process.on('exit', () => {
      for (const ref of exitReports) {
        const live = ref.deref();
        if (live === undefined) continue;
        try {
          live.report();
        } catch {
          // Exiting anyway: a report that fails must not turn the exit into a crash.
        }
      }
    });
  }

  for (const value of Object.values(classes)) Object.freeze(value);
  return { classes, make, guardConstructor, atExit };
});
