//! `SharedBudget` and `BudgetStatus`: a concurrency budget (and optionally a rate limit)
//! drawn from by lanes of any number of `Lane` queues in one process, given to a lane
//! as its `budget` option.
//!
//! A `SharedBudget` wraps the core's `Arc<SharedBudget>`: every lane given the same
//! JavaScript object shares the one core budget.

use std::sync::Arc;

use a3s_lane::{BudgetStatus as CoreBudgetStatus, SharedBudget as CoreBudget};
use napi::Env;
use napi::bindgen_prelude::FromNapiRef;
use napi_derive::napi;

use crate::config::policy::RateLimitOptions;
use crate::convert::{At, FromJs, Given, Js, Read, options_object};
use crate::error::ToJsError;

/// A budget of `slots` commands running at once (and optionally a token-bucket rate
/// limit) over every lane that is given it (`lanes.prompt.budget`), in any number of
/// `Lane` queues of this process. A lane takes one slot per running command on top of
/// its own caps; lanes waiting for a slot are served first come, first served. A lane
/// without a budget is never held by one. `RedisQueue` lanes cannot use a budget (their
/// caps already hold across workers).
#[napi]
#[derive(Debug)]
pub struct SharedBudget {
    pub(crate) inner: Arc<CoreBudget>,
}

/// Options of a `SharedBudget`.
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct SharedBudgetOptions {
    /// How fast commands may start under the budget (a token bucket, as
    /// `groupRateLimit`). No limit when absent.
    #[napi(ts_type = "GroupRateLimitOptions")]
    pub rate_limit: Option<Js<RateLimitOptions>>,
}

options_object!(
    SharedBudgetOptions,
    "an object like { rateLimit: { perMinute: 500 } }",
    ["rateLimit"]
);

#[napi]
impl SharedBudget {
    /// A budget named `name` (for errors and `status()`) of `slots` (at least 1)
    /// commands at once; `options.rateLimit`, a token bucket, also bounds how fast
    /// commands start under it.
    #[napi(
        constructor,
        ts_args_type = "name: string, slots: number, options?: SharedBudgetOptions"
    )]
    pub fn new(
        env: Env,
        name: Js<String>,
        slots: Js<f64>,
        options: Option<Js<SharedBudgetOptions>>,
    ) -> napi::Result<Self> {
        Self::build(name, slots, options).map_err(|failure| failure.throw(&env))
    }

    fn build(
        name: Js<String>,
        slots: Js<f64>,
        options: Option<Js<SharedBudgetOptions>>,
    ) -> Result<Self, crate::error::JsFailure> {
        let name = name.get(&At::option("name"))?;
        let slots_at = At::option("slots");
        let slots = slots_at.count(slots.get(&slots_at)?)?;
        let options_at = At::option("options");
        let limit = match options {
            Some(options) => options_at.field(
                "rateLimit",
                options.get(&options_at)?.rate_limit,
                |at, limit| limit.into_config(at),
            )?,
            None => None,
        };
        let mut budget = CoreBudget::new(name, slots).map_err(|e| e.to_js_failure())?;
        // Unlimited is what no rate limit does: nothing to attach.
        if let Some(limit) = limit.filter(|l| !l.is_unlimited()) {
            budget = budget
                .with_rate_limit(limit)
                .map_err(|e| e.to_js_failure())?;
        }
        Ok(Self {
            inner: budget.shared(),
        })
    }

    /// The budget's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Commands that may run at once under it.
    #[napi(getter)]
    pub fn slots(&self) -> u32 {
        self.inner.slots() as u32
    }

    /// Its counts right now.
    #[napi]
    pub fn status(&self) -> BudgetStatus {
        self.inner.status().into()
    }
}

/// A shared budget's counts at the time of `SharedBudget.status()`.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The budget's name.
    pub name: String,
    /// Its slots.
    pub slots: u32,
    /// Slots taken by running commands (and handed to a lane about to start one).
    pub in_use: u32,
    /// Lanes waiting for a slot.
    pub waiting: u32,
    /// Commands started under it since it was made.
    pub started: f64,
}

impl From<CoreBudgetStatus> for BudgetStatus {
    fn from(status: CoreBudgetStatus) -> Self {
        Self {
            name: status.name,
            slots: status.slots as u32,
            in_use: status.in_use as u32,
            waiting: status.waiting as u32,
            started: status.started as f64,
        }
    }
}

/// The core budget of a `SharedBudget` given as a lane's `budget` option.
#[derive(Debug, Clone)]
pub struct BudgetRef(pub Arc<CoreBudget>);

impl FromJs for BudgetRef {
    const EXPECTED: &'static str = "a SharedBudget (new SharedBudget(name, slots))";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_object()? {
            return value.unexpected();
        }
        let (env, raw) = value.raw();
        // SAFETY: `env` and `raw` are the handles of the value being converted, during
        // the call that received it; napi-rs checks the class's type tag.
        match unsafe { SharedBudget::from_napi_ref(env, raw) } {
            Ok(budget) => Ok(Ok(Self(budget.inner.clone()))),
            Err(_) => value.unexpected(),
        }
    }
}
