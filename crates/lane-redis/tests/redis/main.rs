//! The Redis engine's own behaviour: `RedisQueue` and `RedisWorker` on a Redis server
//! and on a Redis Cluster, one module per behaviour (the behaviours every engine shares
//! are in the facade's conformance suite, `tests/conformance/`).
//!
//! The tests need `A3S_LANE_REDIS_URL`, and those in `queues_work_on_a_redis_cluster`
//! `A3S_LANE_REDIS_CLUSTER_URLS` (`bash scripts/test.sh` starts throwaway servers); without
//! them they fail saying so, they never skip. `cargo test -p lane-redis --test redis --
//! cancel_reaches` runs one module.

mod support;

mod cancel_reaches_the_running_command;
mod connect_checks_addresses_and_fails_fast;
mod delayed_commands_are_promoted_once_in_due_order;
mod events_can_be_turned_off_for_a_queue;
mod finished_commands_follow_their_lanes_retention;
mod group_caps_hold_across_three_worker_processes;
mod groups_take_turns_across_workers;
mod handles_are_send_and_sync;
mod keys_deduplicate_across_producers;
mod lanes_hold_across_workers;
mod priority_boost_lets_a_waiting_lane_overtake;
mod progress_reaches_the_submitter;
mod queues_work_on_a_redis_cluster;
mod results_reach_the_submitter;
mod schedules_fire_each_instant_once_across_processes;
mod timing_reaches_busy_workers_and_waiting_producers;
mod tls_and_acl_users_connect_securely;
mod workers_survive_a_killed_and_a_frozen_process;
