//! A `Lane` with durable storage: `start()` opens the store and builds the queue around
//! it ([`open`]), and submits go through one acceptor task ([`acceptor`]) so they enter
//! their lanes in call order, each acknowledged once the store holds it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use a3s_lane::{LaneError, LocalStorage, LocalStorageConfig, QueueManager, Storage};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::sync::mpsc;

use super::state::LaneCore;
use crate::config::queue::StorageSetup;
use crate::runtime::{Bridge, Mail, Settle, spawn};

/// A durable submit on its way into the store.
pub(crate) struct AcceptJob {
    pub(crate) lane: String,
    pub(crate) command_type: String,
    pub(crate) payload: Value,
    /// Its delay or start time and start-by deadline (the default: none).
    pub(crate) timing: a3s_lane::SubmitOptions,
    /// The promise returned by the submit.
    pub(crate) token: u64,
    /// For `submitWithHandle`: the handle's result promise.
    pub(crate) result_token: Option<u64>,
}

/// Accepts durable submits in the order they were made: each job's first poll (which
/// queues its journal write) happens before the next job is taken, and the journal
/// acknowledges its writes in order, so commands enter their lanes in call order. Jobs
/// that arrive before `start()` has opened the store wait for it.
pub(crate) async fn acceptor(core: Arc<LaneCore>, mut jobs: mpsc::UnboundedReceiver<AcceptJob>) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            job = jobs.recv() => match job {
                None => break,
                Some(job) => match core.ready().await {
                    Ok(manager) => running.push(accept(manager, core.bridge.clone(), job)),
                    Err(error) => reject_job(&core.bridge, &job, &error),
                },
            },
        }
    }
    while running.next().await.is_some() {}
}

fn reject_job(bridge: &Bridge, job: &AcceptJob, error: &LaneError) {
    for token in std::iter::once(job.token).chain(job.result_token) {
        bridge.settle(token, Settle::Failed(error.clone()));
    }
}

async fn accept(manager: QueueManager, bridge: Arc<Bridge>, job: AcceptJob) {
    match manager
        .submit_replayable_with(
            &job.lane,
            &job.command_type,
            job.payload.clone(),
            &job.timing,
        )
        .await
    {
        Ok(handle) => {
            let id = handle.id();
            let result_token = job.result_token;
            let duplicate = handle.is_duplicate();
            let accepted = Settle::Accepted {
                id,
                result_token,
                duplicate,
            };
            bridge.settle(job.token, accepted);
            let token = result_token.unwrap_or(job.token);
            bridge.settle_result(token, id, handle).await;
        }
        Err(error) => reject_job(&bridge, &job, &error),
    }
}

/// Opens the store, builds the queue around it and starts it (recovering what the store
/// holds).
pub(crate) async fn open(core: &Arc<LaneCore>, storage: StorageSetup) -> Result<(), LaneError> {
    let opened = async {
        let mut config = LocalStorageConfig::new();
        if let Some(sync) = storage.sync {
            config = config.with_sync(sync);
        }
        let store = LocalStorage::open(&storage.path, config).await?;
        let recovered_up_to = store.max_command_id().await?;
        core.bridge
            .recovered_up_to
            .store(recovered_up_to, Ordering::Relaxed);
        let handler_types = core.state.lock().handler_types.clone();
        let manager = core
            .builder(&handler_types)?
            .with_storage(Arc::new(store))
            .build()
            .await?;
        Ok::<_, LaneError>(manager)
    };
    let manager = match opened.await {
        Ok(manager) => manager,
        Err(error) => {
            core.fail(error.clone());
            return Err(error);
        }
    };
    core.publish(manager.clone());
    manager.start().await?;
    // Recovered commands have no submitter whose promise keeps the process alive: the
    // lane does, until the queue has run them. (Sent before start() settles, so the
    // process never sees a moment with nothing holding it.)
    let queue = manager.queue();
    let stats = queue.stats_now();
    if stats.total_pending + stats.total_active + stats.total_delayed > 0 {
        core.bridge.mailbox.send(Mail::Hold);
        let bridge = core.bridge.clone();
        spawn(async move {
            queue.wait_idle().await;
            bridge.mailbox.send(Mail::Release);
        });
    }
    Ok(())
}
