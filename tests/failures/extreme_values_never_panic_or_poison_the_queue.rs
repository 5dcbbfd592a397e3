//! Extreme durations and counts (0, 1, MAX, MAX-1, sums near overflow, random) given to
//! every public constructor and method that takes one are either honoured or refused
//! with a clear error: never a panic, and the queue still runs a normal command
//! afterwards. Payloads past the limits every engine shares, and blank command types, are
//! refused at submit, so nothing acknowledged can make the store unreadable.

use std::time::Duration;

use a3s_lane::{
    CommandContext, DeadLetterQueue, EventEmitter, LaneConfig, LaneError, MAX_DURATION,
    MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, MAX_TIMED_PAUSE, PriorityBoostConfig, QueueClient,
    QueueManagerBuilder, RateLimitConfig, RetryPolicy, handler_fn,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const NS: Duration = Duration::from_nanos(1);

fn duration() -> BoxedStrategy<Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(NS),
        1 => Just(Duration::MAX),
        1 => Just(Duration::MAX - NS),
        1 => Just(MAX_DURATION),
        1 => Just(MAX_DURATION + NS),
        1 => Just(MAX_TIMED_PAUSE),
        1 => Just(MAX_TIMED_PAUSE + NS),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        // Ordinary values half the time, so that most queues get built and exercised.
        10 => (1u64..5_000).prop_map(Duration::from_millis),
    ]
    .boxed()
}

fn count() -> BoxedStrategy<usize> {
    prop_oneof![
        1 => Just(0),
        1 => Just(1),
        1 => Just(usize::MAX),
        1 => Just(usize::MAX - 1),
        1 => Just(usize::MAX / 2 + 1),
        1 => any::<usize>(),
        8 => 1usize..16,
    ]
    .boxed()
}

fn count32() -> BoxedStrategy<u32> {
    prop_oneof![
        1 => Just(0),
        1 => Just(1),
        1 => Just(u32::MAX),
        1 => Just(u32::MAX - 1),
        1 => any::<u32>(),
        8 => 1u32..16
    ]
    .boxed()
}

fn rate_limit() -> BoxedStrategy<Option<RateLimitConfig>> {
    prop_oneof![
        Just(None),
        (count32(), duration(), count32()).prop_map(|(rate, period, burst)| Some(
            RateLimitConfig::token_bucket(rate, period, burst)
        )),
        (count32(), duration())
            .prop_map(|(limit, window)| Some(RateLimitConfig::sliding_window(limit, window))),
        count32().prop_map(|n| Some(RateLimitConfig::per_hour(n))),
    ]
    .boxed()
}

fn boost() -> BoxedStrategy<Option<PriorityBoostConfig>> {
    prop_oneof![
        Just(None),
        duration().prop_map(|d| Some(PriorityBoostConfig::standard(d))),
        duration().prop_map(|d| Some(PriorityBoostConfig::aggressive(d))),
        (duration(), duration(), any::<u8>())
            .prop_map(|(d, step, by)| Some(PriorityBoostConfig::new(d).with_boost(step, by))),
    ]
    .boxed()
}

fn retry() -> BoxedStrategy<Option<Result<RetryPolicy, LaneError>>> {
    let multiplier = prop_oneof![
        Just(0.0),
        Just(1.0),
        Just(2.0),
        Just(f64::MAX),
        Just(f64::INFINITY),
        Just(f64::NAN),
    ];
    prop_oneof![
        Just(None),
        (count32(), duration()).prop_map(|(n, d)| Some(Ok(RetryPolicy::fixed(n, d)))),
        count32().prop_map(|n| Some(Ok(RetryPolicy::exponential(n)))),
        (count32(), duration(), duration(), multiplier).prop_map(|(n, first, max, m)| {
            Some(
                RetryPolicy::builder()
                    .max_retries(n)
                    .initial_delay(first)
                    .max_delay(max)
                    .multiplier(m)
                    .build(),
            )
        }),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Case {
    min: usize,
    max: usize,
    timeout: Option<Duration>,
    grace: Duration,
    pressure: Option<usize>,
    rate_limit: Option<RateLimitConfig>,
    boost: Option<PriorityBoostConfig>,
    retry: Option<Result<RetryPolicy, LaneError>>,
    budget: Option<usize>,
    plain_min: usize,
    dlq: Option<usize>,
    event_capacity: usize,
    pause_for: Duration,
    drain_timeout: Duration,
}

fn case() -> BoxedStrategy<Case> {
    (
        (
            count(),
            count(),
            proptest::option::of(duration()),
            duration(),
        ),
        (
            proptest::option::of(count()),
            rate_limit(),
            boost(),
            retry(),
        ),
        (
            proptest::option::of(count()),
            prop_oneof![Just(0usize), Just(1), count()],
            proptest::option::of(count()),
            count(),
        ),
        (duration(), duration()),
    )
        .prop_map(
            |(
                (min, max, timeout, grace),
                (pressure, rate_limit, boost, retry),
                (budget, plain_min, dlq, event_capacity),
                (pause_for, drain_timeout),
            )| Case {
                min,
                max,
                timeout,
                grace,
                pressure,
                rate_limit,
                boost,
                retry,
                budget,
                plain_min,
                dlq,
                event_capacity,
                pause_for,
                drain_timeout,
            },
        )
        .boxed()
}

// Strategies are boxed: unboxed, their value trees nest by value and a debug build
// overflows the test thread's stack generating a case.

/// Feeds one case to the public API; a refusal must be a `ConfigError`, and a queue that
/// was built must run a normal command on each lane, take a timed pause and drain.
async fn exercise(case: Case) -> Result<(), TestCaseError> {
    // The emitter on its own (a subscriber of a huge capacity allocates its whole ring,
    // which `an_event_emitter_of_any_capacity_can_be_subscribed` checks once).
    let emitter = EventEmitter::new(case.event_capacity);
    if case.event_capacity <= 4096 {
        drop(emitter.subscribe());
    }
    let checked = EventEmitter::try_new(case.event_capacity);
    prop_assert_eq!(
        checked.is_ok(),
        (1..=a3s_lane::MAX_EVENT_CAPACITY).contains(&case.event_capacity)
    );
    drop(DeadLetterQueue::new(case.event_capacity));

    let mut config = LaneConfig::new(case.min, case.max).with_cancel_grace(case.grace);
    if let Some(timeout) = case.timeout {
        config = config.with_timeout(timeout);
    }
    if let Some(threshold) = case.pressure {
        config = config.with_pressure_threshold(threshold);
    }
    if let Some(limit) = case.rate_limit {
        config = config.with_rate_limit(limit);
    }
    if let Some(boost) = case.boost.clone() {
        config = config.with_priority_boost(boost);
    }
    match case.retry.clone() {
        Some(Ok(policy)) => config = config.with_retry_policy(policy),
        Some(Err(error)) => prop_assert!(matches!(error, LaneError::ConfigError(_))),
        None => {}
    }
    let mut builder = QueueManagerBuilder::new(emitter)
        .with_lane("extreme", config, 0)
        .with_lane("plain", LaneConfig::new(case.plain_min.min(1), 1), 1);
    if let Some(budget) = case.budget {
        builder = builder.with_max_concurrency(budget);
    }
    if let Some(size) = case.dlq {
        builder = builder.with_dlq(size);
    }
    let manager = match builder.build().await {
        Ok(manager) => manager,
        Err(error) => {
            prop_assert!(matches!(error, LaneError::ConfigError(_)), "{error:?}");
            return Ok(());
        }
    };
    manager.start().await.unwrap();
    let normal = |lane: &'static str| {
        let manager = manager.clone();
        async move {
            let handle = manager
                .submit_fn(lane, "normal", |_| async { Ok(json!("ran")) })
                .await?;
            handle.await
        }
    };
    // The first command of any valid lane starts at once (a full bucket, an empty window).
    prop_assert_eq!(normal("extreme").await, Ok(json!("ran")));
    prop_assert_eq!(normal("plain").await, Ok(json!("ran")));

    match manager.pause_lane_for("extreme", case.pause_for) {
        Ok(()) => prop_assert!(!case.pause_for.is_zero() && case.pause_for <= MAX_TIMED_PAUSE),
        Err(error) => prop_assert!(matches!(error, LaneError::ConfigError(_)), "{error:?}"),
    }
    prop_assert_eq!(normal("plain").await, Ok(json!("ran")));
    manager.resume_lane("extreme").unwrap();
    // Idle: drain returns at once, whatever its timeout.
    prop_assert_eq!(manager.drain(case.drain_timeout).await, Ok(()));
    manager.shutdown().await;
    prop_assert_eq!(manager.drain(case.drain_timeout).await, Ok(()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn extreme_durations_and_counts_are_honoured_or_refused(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(exercise(case))?;
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_of_duration_max_is_refused_when_its_lane_is_added() {
    for limit in [
        RateLimitConfig::token_bucket(1, Duration::MAX, 1),
        RateLimitConfig::sliding_window(1, Duration::MAX),
    ] {
        let error = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("limited", LaneConfig::new(1, 1).with_rate_limit(limit), 0)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::ConfigError(_)));
        assert!(error.to_string().contains("100 years"), "{error}");
    }
    // At the limit it is honoured: the first command starts, the second waits a century.
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "limited",
            LaneConfig::new(1, 1).with_rate_limit(RateLimitConfig::token_bucket(
                1,
                MAX_DURATION,
                1,
            )),
            0,
        )
        .with_lane("plain", LaneConfig::new(1, 1), 1)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let first = manager
        .submit_fn("limited", "now", |_| async { Ok(Value::Null) })
        .await
        .unwrap();
    assert_eq!(first.await, Ok(Value::Null));
    let _later = manager
        .submit_fn("limited", "later", |_| async { Ok(Value::Null) })
        .await
        .unwrap();
    let other = manager
        .submit_fn("plain", "other", |_| async { Ok(json!(1)) })
        .await
        .unwrap();
    assert_eq!(other.await, Ok(json!(1)));
    assert_eq!(manager.stats().await.lanes["limited"].pending, 1);
    assert!(manager.stats().await.lanes["limited"].throttled);
}

#[tokio::test]
async fn min_concurrency_that_would_wrap_the_sum_is_refused() {
    let error = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("a", LaneConfig::new(1, 1), 0)
        .with_lane("b", LaneConfig::new(usize::MAX, usize::MAX), 1)
        .with_max_concurrency(10)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::ConfigError(_)));
    let message = error.to_string();
    assert!(
        message.contains("more than usize::MAX") && message.contains("max_concurrency of 10"),
        "{message}"
    );
}

#[tokio::test]
async fn an_event_emitter_of_any_capacity_can_be_subscribed() {
    for capacity in [0, 1, usize::MAX / 2 + 1, usize::MAX - 1, usize::MAX] {
        let emitter = EventEmitter::new(capacity);
        let mut events = emitter.subscribe();
        emitter.emit(a3s_lane::LaneEvent::new("custom", json!(capacity)));
        assert_eq!(events.recv().await.unwrap().payload, json!(capacity));
    }
}

#[tokio::test]
async fn a_blank_command_type_is_refused_like_an_empty_lane_id() {
    let lane_error = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("", LaneConfig::new(1, 1), 0)
        .build()
        .await
        .unwrap_err();
    assert!(lane_error.to_string().contains("must not be empty"));

    let handler = || handler_fn(|_: Value, _: CommandContext| async { Ok(Value::Null) });
    for blank in ["", "  ", "\t"] {
        let error = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", LaneConfig::new(1, 1), 0)
            .with_handler(blank, handler())
            .build()
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::ConfigError(_)), "{error:?}");
        assert!(error.to_string().contains("must not be empty"), "{error}");
    }

    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 1), 0)
        .with_handler("job", handler())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    for blank in ["", "  ", "\n"] {
        let error = manager
            .submit_fn("work", blank, |_| async { Ok(Value::Null) })
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
        assert!(error.to_string().contains("must not be empty"), "{error}");
        let error = manager
            .submit_replayable("work", blank, json!({}))
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
    }
    assert_eq!(manager.stats().await.total_pending, 0);
    let fine = manager.submit_replayable("work", "job", json!({})).await;
    assert_eq!(fine.unwrap().await, Ok(Value::Null));
}

/// `[[[ … "leaf" … ]]]`, `depth` levels, built without recursion.
fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

#[tokio::test]
async fn a_payload_past_the_limits_is_refused_at_submit_naming_the_limit() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 1), 0)
        .with_handler(
            "echo",
            handler_fn(|payload: Value, _: CommandContext| async move { Ok(payload) }),
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();

    // At the limit: accepted, run, and handed back intact.
    let deepest = nested(MAX_PAYLOAD_DEPTH);
    let handle = manager
        .submit_replayable("work", "echo", deepest.clone())
        .await
        .unwrap();
    assert_eq!(handle.await.unwrap(), deepest);

    // One level more, and far more (10,000 levels: refused and taken apart without
    // overflowing this test's stack), through both submit entry points.
    for depth in [MAX_PAYLOAD_DEPTH + 1, 10_000] {
        let error = manager
            .submit_replayable("work", "echo", nested(depth))
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
        assert!(error.to_string().contains("MAX_PAYLOAD_DEPTH"), "{error}");
        let error = QueueClient::submit(&manager, "work", "echo", nested(depth))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("MAX_PAYLOAD_DEPTH"), "{error}");
    }

    // Size: the serialized JSON of a string is its bytes plus two quotes.
    let largest = Value::String("x".repeat(MAX_PAYLOAD_BYTES - 2));
    a3s_lane::check_payload(&largest).unwrap();
    let error = manager
        .submit_replayable(
            "work",
            "echo",
            Value::String("x".repeat(MAX_PAYLOAD_BYTES - 1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
    assert!(error.to_string().contains("MAX_PAYLOAD_BYTES"), "{error}");

    assert_eq!(manager.stats().await.total_pending, 0);
    let after = manager.submit_replayable("work", "echo", json!(7)).await;
    assert_eq!(after.unwrap().await, Ok(json!(7)));
}

#[tokio::test(start_paused = true)]
async fn supervise_takes_duration_max_as_no_limit() {
    use a3s_lane::{RunEnd, RunLimits, supervise};
    let limits = RunLimits {
        timeout: Some(Duration::MAX),
        cancel_grace: Duration::MAX,
    };
    let ctx = CommandContext::detached();
    let end = supervise(&ctx, limits, async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(json!("an hour later"))
    })
    .await;
    assert_eq!(end, RunEnd::Ok(json!("an hour later")));
}

/// Admits once, then names the last instant the clock can hold.
#[derive(Debug, Default)]
struct EndOfTime {
    admitted: bool,
}

impl a3s_lane::AdmissionPolicy for EndOfTime {
    fn admission(&self) -> Option<Box<dyn a3s_lane::Admission>> {
        Some(Box::new(EndOfTime::default()))
    }
}

impl a3s_lane::Admission for EndOfTime {
    fn try_acquire(&mut self, now: tokio::time::Instant) -> Result<(), tokio::time::Instant> {
        if !std::mem::replace(&mut self.admitted, true) {
            return Ok(());
        }
        let (mut at, mut step) = (now, Duration::MAX);
        while !step.is_zero() {
            match at.checked_add(step) {
                Some(later) => at = later,
                None => step /= 2,
            }
        }
        Err(at)
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_rate_limit_naming_the_end_of_time_leaves_the_timers_working() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "stuck",
            LaneConfig::new(1, 1).with_rate_limit(EndOfTime::default()),
            0,
        )
        .with_lane("plain", LaneConfig::new(1, 1), 1)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    for expected in [true, false] {
        let handle = manager
            .submit_fn("stuck", "maybe", |_| async { Ok(Value::Null) })
            .await
            .unwrap();
        let ran = tokio::time::timeout(Duration::from_secs(1), handle).await;
        assert_eq!(ran.is_ok(), expected);
    }
    // The timer task sleeps towards the end of time; a timed pause must still end.
    manager
        .pause_lane_for("plain", Duration::from_secs(5))
        .unwrap();
    let handle = manager
        .submit_fn("plain", "after the pause", |_| async { Ok(json!(1)) })
        .await
        .unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(60), handle).await;
    assert_eq!(ran.expect("the pause ended"), Ok(json!(1)));
}
