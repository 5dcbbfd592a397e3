//! The Redis engine of a3s-lane: the same lanes, priorities, caps, rate limits and
//! priority boosts, held in Redis and shared by workers in any number of processes and
//! machines. Reached through the `a3s-lane` facade (feature `redis`, on by default).
//!
//! - [`RedisQueue`]: connect, declare lanes (the one lane model, [`LaneConfig`](lane_core::LaneConfig)), submit replayable commands
//!   and await their results, cancel, pause lanes, inspect, re-drive dead letters.
//! - [`RedisWorker`]: run the queue's commands with a [`HandlerRegistry`](lane_core::HandlerRegistry),
//!   in as many processes and machines as needed.
//!
//! ## How it works
//!
//! Every atomic step is a Lua script loaded once (EVALSHA), and every key starts with the
//! hash tag `{prefix}`, so a queue lives in one Redis Cluster slot and different prefixes
//! are isolated queues. Times come from the Redis server's clock.
//!
//! - **One server or a cluster**: [`RedisQueueConfig::new`] connects to one server,
//!   [`RedisQueueConfig::cluster`] to a Redis Cluster through some of its nodes. On a
//!   cluster, each script call goes to the node that holds the queue's slot and follows
//!   the slot when the cluster moves it (MOVED/ASK); a node that forgot the scripts
//!   (NOSCRIPT, after a restart or failover) gets them again. Different prefixes may live
//!   on different nodes. Workers use the queue's connection.
//! - **Connections**: one shared connection runs the scripts; each blocking listener (the
//!   producer's result list, each worker's wake list) has its own, to the same node,
//!   reopened with backoff after an error. Opening one is bounded by
//!   [`RedisQueueConfig::with_connect_timeout`]: an address nothing listens on fails
//!   [`RedisQueue::connect`] at once with an error naming it.
//!
//! - **Lanes**: each lane is a list (FIFO); a sorted set holds the lanes that can start a
//!   command now (pending work, below their cap, not paused or throttled), scored by
//!   priority and then by turn, so claiming the most urgent command is one lookup.
//! - **Priority boosts** (`LaneConfig::with_priority_boost`): for boosted lanes only,
//!   Redis keeps when each command became pending; when a worker claims, boosted ready
//!   lanes are scored again by the effective priority their head command has earned (a
//!   tie with a lane configured as more urgent leaves that lane its turns, as in process).
//! - **Caps and rate limits** are counters and a token bucket (or sliding window) per
//!   lane in Redis, checked when a command is claimed: they hold over all workers.
//! - **Groups inside a lane** (`SubmitOptions::with_group`, `LaneConfig::with_group_limits`):
//!   each group's commands wait in a list of their own, and per lane a ring holds the
//!   groups that may start, so each claim takes the next group's turn in O(1) however
//!   many groups there are (commands of no group take turns as one group). A group's
//!   running commands are a counter over all workers, given back once when a run ends
//!   (also when a dead worker's runs are taken back); its rate limit is one arrival time
//!   (GCRA), and a group it holds back leaves the ring until its permit is due, which
//!   wakes a worker like a lane's throttle. [`RedisQueue::pause_group`],
//!   [`RedisQueue::cancel_group`], [`RedisQueue::group_status`] and [`RedisQueue::groups`]
//!   act on them.
//! - **Leases**: a worker's claims belong to it while its lease lives; every round trip
//!   renews it, and an idle worker renews it on a timer. A claim carries a fencing token;
//!   a result is accepted only from the run holding the current token. When a lease
//!   expires, the next worker to talk to Redis puts the dead worker's commands back at
//!   the front of their lanes.
//! - **Retries** wait in a sorted set by due time and go back to the front of their lane;
//!   **dead letters** stay in Redis until re-driven.
//! - **Delayed starts and start-by deadlines** ([`RedisQueue::submit_with`],
//!   [`SubmitOptions`](lane_core::SubmitOptions)): a delayed command waits in the same
//!   sorted set and, when due, takes its place at the back of its lane; a deadline waits
//!   in a sorted set of its own, and a command not claimed by then leaves its lane and
//!   ends as expired (`LaneError::Expired`, event `queue.command.expired`). Both are done
//!   by the workers' housekeeping, each woken for the next due time.
//! - **Bounded lanes** (`LaneConfig::with_max_waiting`): the submit script refuses a
//!   command whose lane holds `max_waiting` pending and delayed commands; with
//!   `WhenFull::Wait` the producer waits for the lane's events that free room (a start, a
//!   cancel, an expiry) and sends it again, until its timeout.
//! - **Cancel** sets a durable flag on the command and adds it to its worker's cancel
//!   set, then wakes that worker; the worker fires the run's cancellation signal.
//! - **Results** go to a per-producer list that the producer drains in batches, so a
//!   producer that reconnects loses nothing.
//! - **Finished commands** are kept as each lane's [`Retention`](lane_core::Retention)
//!   says (the last N of each final state, each for at most a duration), in per-lane
//!   sorted sets trimmed as commands finish and expire; any client reads them with
//!   `command(id)` and `list_commands` (one script each).
//! - **Progress** a handler reports goes to the same list: the worker keeps the latest
//!   unsent report per run and pushes waiting reports in batches from a task of its own,
//!   the last one before the result. The producer publishes them as
//!   `queue.command.progress` events ([`RedisQueue::subscribe`]) and through
//!   [`RedisCommandHandle::progress`].
//! - **Recurring schedules** ([`RedisQueue::put_schedule`], the core's
//!   [`Schedule`](lane_core::Schedule): an interval or a cron expression in a time zone)
//!   are stored in Redis by any client; every worker's schedule task sleeps until the
//!   earliest next instant and fires what is due with a compare-and-set on the instant,
//!   in the script that also enqueues the command, so each instant fires once however
//!   many workers look, with no leader. Missed instants follow the schedule's
//!   [`Missed`](lane_core::Missed) policy; a full or unknown lane skips the instant.
//!   Events `queue.schedule.fired` and `queue.schedule.skipped` reach every subscriber.
//! - **No polling**: an idle worker blocks on its own wake list; submits, freed capacity
//!   and housekeeping push to the lists of idle workers. Timeouts only bound the wait for
//!   the next housekeeping deadline (a retry or delayed start, a start-by deadline, a
//!   rate-limit refill, another worker's lease) and for connection checks. A submit that
//!   sets an earlier due time than any Redis holds wakes a worker to look again.
//!
//! - **Redis failing**: a worker whose round trip failed reconciles on the next one
//!   (claims whose reply was lost go back to their lanes); a producer reads again how its
//!   awaited commands ended after its result listener reconnects; a submit sent again
//!   after a lost reply is accepted once (Redis remembers its reference), and one given up
//!   on after [`RedisQueueConfig::with_reconnect_wait`] is withdrawn if Redis had it.
//!   Reconnects back off up to [`RedisQueueConfig::with_reconnect_backoff`]'s maximum.
//! - **Sentinel and TLS**: [`RedisQueueConfig::sentinel`] follows a Sentinel-managed
//!   master through failovers; `rediss://` with [`RedisTls`] for a private CA or client
//!   certificates, on every kind of endpoint. Passwords are never shown.
//!
//! Delivery is at least once: a command whose worker dies runs again elsewhere, so
//! handlers with side effects should be idempotent (the command id is stable).

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod client;
mod config;
mod connection;
mod events;
mod progress;
mod queue;
mod scripts;
mod sentinel;
mod wire;
mod worker;

pub use config::{RedisQueueConfig, RedisTls, RedisWorkerConfig};
pub use lane_core::CancelOutcome;
pub use queue::{RedisCommandHandle, RedisQueue, RedisQueueStats, RemoteCommand, RemoteState};
pub use worker::RedisWorker;
