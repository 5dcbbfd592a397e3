//! A worker's progress reports on their way to the submitters' result lists.
//!
//! A handler's [`report_progress`](lane_core::CommandContext::report_progress) only
//! stores the value here; one sender task per worker pushes what is waiting, every
//! submitter's messages in one pipeline per round trip. Progress is a "latest value"
//! signal: a run keeps at most one unsent report, so a handler that reports faster than
//! Redis takes them replaces its waiting report instead of queueing more. A finished run
//! waits until its last report was pushed before its result is sent, so the submitter
//! never sees progress after the result.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;

use crate::connection::Conn;

/// Reports per pipeline when many are waiting.
const MAX_BATCH: usize = 512;

/// Where a run's reports go: the command and its submitter.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) id: u64,
    pub(crate) lane: String,
    pub(crate) client: String,
    pub(crate) cref: String,
}

#[derive(Debug)]
struct Pending {
    /// When the run's report first waited here: batches go oldest first.
    seq: u64,
    route: Arc<Route>,
    progress: Value,
}

#[derive(Debug, Default)]
struct State {
    /// Runs whose reports are accepted, by fencing token (unique per claim).
    open: HashMap<String, Arc<Route>>,
    /// The latest unsent report of each run.
    pending: HashMap<String, Pending>,
    /// Runs with a report in the pipeline on its way.
    in_flight: HashSet<String>,
    next_seq: u64,
    closed: bool,
}

/// The reports of one worker's runs; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct ProgressOutbox {
    state: Mutex<State>,
    /// Wakes the sender: a report is waiting, or the worker stopped.
    ready: Notify,
    /// Wakes runs waiting in [`ProgressOutbox::close`] after each round trip.
    sent: Notify,
}

impl ProgressOutbox {
    /// Accepts reports for the run holding `token` from now on.
    pub(crate) fn open(&self, token: &str, route: Route) {
        self.state
            .lock()
            .open
            .insert(token.to_owned(), Arc::new(route));
    }

    /// Stores a run's latest report, replacing one still waiting. A run not open (its
    /// submitter does not wait, or it already finished) sends nothing.
    pub(crate) fn report(&self, token: &str, progress: Value) {
        let mut state = self.state.lock();
        let Some(route) = state.open.get(token).cloned() else {
            return;
        };
        if let Some(waiting) = state.pending.get_mut(token) {
            waiting.progress = progress;
            return; // the sender was woken when it started waiting
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.pending.insert(
            token.to_owned(),
            Pending {
                seq,
                route,
                progress,
            },
        );
        drop(state);
        self.ready.notify_one();
    }

    /// Stops accepting the run's reports and waits until the last one was pushed (or
    /// its push failed), so that it reaches the submitter before the result.
    pub(crate) async fn close(&self, token: &str) {
        loop {
            let sent = self.sent.notified();
            {
                let mut state = self.state.lock();
                state.open.remove(token);
                if !state.pending.contains_key(token) && !state.in_flight.contains(token) {
                    return;
                }
            }
            // notify_waiters reaches a Notified created before it, polled or not.
            sent.await;
        }
    }

    /// Lets the sender stop once nothing waits.
    pub(crate) fn shutdown(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }

    /// How many reports wait to be sent (at most one per run).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Takes the oldest waiting reports, at most `max`, and marks their runs in flight.
    fn take_batch(&self, max: usize) -> Vec<(String, Pending)> {
        let mut state = self.state.lock();
        let mut batch: Vec<(String, Pending)> = if state.pending.len() <= max {
            state.pending.drain().collect()
        } else {
            let mut oldest: Vec<(u64, String)> = state
                .pending
                .iter()
                .map(|(token, pending)| (pending.seq, token.clone()))
                .collect();
            oldest.sort_unstable();
            oldest
                .into_iter()
                .take(max)
                .filter_map(|(_, token)| state.pending.remove_entry(&token))
                .collect()
        };
        batch.sort_unstable_by_key(|(_, pending)| pending.seq);
        for (token, _) in &batch {
            state.in_flight.insert(token.clone());
        }
        batch
    }

    fn batch_done(&self, batch: &[(String, Pending)]) {
        let mut state = self.state.lock();
        for (token, _) in batch {
            state.in_flight.remove(token);
        }
        drop(state);
        self.sent.notify_waiters();
    }
}

/// A progress message in a submitter's result list:
/// `cref \n id \n progress \n lane \n JSON`.
fn message(route: &Route, progress: &Value) -> String {
    format!(
        "{}\n{}\nprogress\n{}\n{progress}",
        route.cref, route.id, route.lane
    )
}

/// Pushes waiting reports until the worker stops: one entry of the queue's event stream
/// for the batch, and per waiting submitter one RPUSH of its messages (oldest first) and
/// a PEXPIRE with the result TTL, all in one pipeline.
pub(crate) async fn run_sender(
    outbox: Arc<ProgressOutbox>,
    mut conn: Conn,
    prefix: String,
    result_ttl_ms: u64,
    events: bool,
) {
    loop {
        let batch = outbox.take_batch(MAX_BATCH);
        if batch.is_empty() {
            if outbox.state.lock().closed {
                return;
            }
            outbox.ready.notified().await;
            continue;
        }
        let mut lists: Vec<(&str, Vec<String>)> = Vec::new();
        let mut event_lines = Vec::with_capacity(if events { batch.len() } else { 0 });
        for (_, pending) in &batch {
            let route = &pending.route;
            // A progress event, as events.rs reads it: no field holds a newline.
            if events {
                event_lines.push(format!(
                    "P\n{}\n{}\n{}",
                    route.id, route.lane, pending.progress
                ));
            }
            let client = route.client.as_str();
            if client.is_empty() {
                continue;
            }
            let text = message(route, &pending.progress);
            match lists.iter_mut().find(|(c, _)| *c == client) {
                Some((_, messages)) => messages.push(text),
                None => lists.push((client, vec![text])),
            }
        }
        let mut pipe = redis::pipe();
        if events {
            // One stream entry for the batch, as the scripts write theirs (events.rs).
            pipe.cmd("XADD")
                .arg(format!("{prefix}:events"))
                .arg("MAXLEN")
                .arg("~")
                .arg(crate::events::EVENTS_KEPT)
                .arg("*")
                .arg("e")
                .arg(event_lines.join("\n"))
                .ignore();
        }
        for (client, messages) in &lists {
            let key = format!("{prefix}:results:{client}");
            pipe.cmd("RPUSH").arg(&key).arg(messages).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(result_ttl_ms).ignore();
        }
        if let Err(error) = pipe.query_async::<()>(&mut conn).await {
            // Progress is a latest-value signal: the next report, or the result, follows.
            tracing::warn!(%error, reports = batch.len(), "could not send progress reports; dropping them");
        }
        outbox.batch_done(&batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(id: u64) -> Route {
        Route {
            id,
            lane: "jobs".into(),
            client: "c1".into(),
            cref: id.to_string(),
        }
    }

    #[test]
    fn a_fast_reporter_keeps_one_waiting_report_the_latest() {
        let outbox = ProgressOutbox::default();
        outbox.open("t1", route(1));
        outbox.open("t2", route(2));
        for n in 0..10_000 {
            outbox.report("t1", json!(n));
        }
        outbox.report("t2", json!("b"));
        assert_eq!(outbox.waiting(), 2, "one waiting report per run");
        let batch = outbox.take_batch(MAX_BATCH);
        let values: Vec<_> = batch.iter().map(|(_, p)| p.progress.clone()).collect();
        assert_eq!(
            values,
            vec![json!(9_999), json!("b")],
            "oldest run first, latest value"
        );
        assert_eq!(
            message(&batch[0].1.route, &batch[0].1.progress),
            "1\n1\nprogress\njobs\n9999"
        );
    }

    #[test]
    fn batches_are_bounded_and_take_the_oldest_first() {
        let outbox = ProgressOutbox::default();
        for id in 0..(MAX_BATCH as u64 + 10) {
            let token = format!("t{id}");
            outbox.open(&token, route(id));
            outbox.report(&token, json!(id));
        }
        let first = outbox.take_batch(MAX_BATCH);
        assert_eq!(first.len(), MAX_BATCH);
        assert!(
            first
                .iter()
                .enumerate()
                .all(|(i, (_, p))| p.route.id == i as u64)
        );
        let rest = outbox.take_batch(MAX_BATCH);
        assert_eq!(rest.len(), 10);
        assert_eq!(rest[0].1.route.id, MAX_BATCH as u64);
    }

    #[tokio::test]
    async fn reports_of_runs_not_open_or_closed_are_dropped() {
        let outbox = ProgressOutbox::default();
        outbox.report("nobody-waits", json!(1));
        assert_eq!(outbox.waiting(), 0);
        outbox.open("t1", route(1));
        outbox.close("t1").await;
        outbox.report("t1", json!(2));
        assert_eq!(outbox.waiting(), 0, "a finished run reports nothing more");
    }

    #[tokio::test]
    async fn close_waits_until_the_runs_last_report_was_sent() {
        let outbox = Arc::new(ProgressOutbox::default());
        outbox.open("t1", route(1));
        outbox.report("t1", json!(1));
        let closing = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.close("t1").await }
        });
        tokio::task::yield_now().await;
        let batch = outbox.take_batch(MAX_BATCH);
        assert_eq!(batch.len(), 1);
        assert!(!closing.is_finished());
        outbox.batch_done(&batch);
        closing.await.unwrap();
    }
}
