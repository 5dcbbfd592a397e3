//! Scheduling through the facade: which command starts when. Strict priority, FIFO
//! inside a lane, caps and the global budget, rate limits, priority boosts, the
//! scheduler's invariants on random workloads (proptest), and partitioning.
//!
//! One module per behaviour, named as the sentence it checks: `cargo test --test
//! scheduling -- rate_limit` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod a_producer_waits_until_the_backlog_is_below_a_limit;
mod control_lane_starts_while_prompt_lane_is_full;
mod delayed_commands_start_at_their_time_and_expire_at_their_deadline;
mod group_invariants_hold_for_random_workloads;
mod partitions_are_stable_and_spread_work;
mod priority_boost_lets_a_waiting_lane_overtake;
mod priority_order_and_fifo_under_a_global_budget;
mod rate_limit_starts_commands_at_refill_instants;
mod scheduler_invariants_hold_for_random_workloads;
mod schedules_fire_on_time_under_paused_time;
mod shared_budgets_bound_many_queues;
mod timing_invariants_hold_for_random_workloads;
