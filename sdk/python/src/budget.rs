//! `SharedBudget` and `BudgetStatus`: a concurrency budget (and optionally a rate limit)
//! drawn from by lanes of any number of `Lane` queues in one process, given to
//! `LaneConfig(budget=...)`.
//!
//! A `SharedBudget` wraps the core's `Arc<SharedBudget>`: every `LaneConfig` given the
//! same Python object shares the one core budget, so it is compared and hashed by
//! identity.

use std::sync::Arc;

use a3s_lane::{BudgetStatus as CoreBudgetStatus, RateLimitConfig, SharedBudget as CoreBudget};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::args::{instance, optional, type_name, usize_arg};
use crate::error::IntoPyErr;
use crate::limits::{RateLimit, python_names};

/// A budget of `slots` commands running at once (and optionally a token-bucket rate
/// limit) over every lane that is given it, in any number of `Lane` queues of this
/// process. A lane takes one slot per running command on top of its own caps; lanes
/// waiting for a slot are served first come, first served. A lane without a budget is
/// never held by one. `RedisQueue` lanes cannot use a budget (their caps already hold
/// across workers).
#[pyclass(frozen, module = "a3s_lane", name = "SharedBudget")]
pub(crate) struct SharedBudget {
    pub(crate) budget: Arc<CoreBudget>,
    rate_limit: Option<RateLimitConfig>,
}

#[pymethods]
impl SharedBudget {
    /// A budget named `name` (for errors and `status()`) of `slots` (at least 1)
    /// commands at once; `rate_limit`, a token bucket `RateLimit`, also bounds how fast
    /// commands start under it.
    #[new]
    #[pyo3(signature = (name, slots, *, rate_limit = None))]
    fn new(
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        slots: &Bound<'_, PyAny>,
        rate_limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let Ok(name) = name.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "name must be a str, got {}",
                type_name(name)
            )));
        };
        let name = name.to_str()?.to_owned();
        let slots = usize_arg(slots, "slots")?;
        let rate_limit = optional(rate_limit, |l| {
            instance::<RateLimit>(l, "rate_limit", " (for example RateLimit.per_minute(500))")
        })?;
        let error = |e: a3s_lane::LaneError| match e {
            a3s_lane::LaneError::ConfigError(message) => {
                crate::error::config_error(py, python_names(&message))
            }
            other => other.into_py_err(py),
        };
        let mut budget = CoreBudget::new(name, slots).map_err(error)?;
        // Unlimited is what no rate limit does: nothing to attach.
        let rate_limit = rate_limit.map(|l| l.config).filter(|c| !c.is_unlimited());
        if let Some(limit) = rate_limit {
            budget = budget.with_rate_limit(limit).map_err(error)?;
        }
        Ok(Self {
            budget: budget.shared(),
            rate_limit,
        })
    }

    /// The budget's name.
    #[getter]
    fn name(&self) -> &str {
        self.budget.name()
    }

    /// Commands that may run at once under it.
    #[getter]
    fn slots(&self) -> usize {
        self.budget.slots()
    }

    /// How fast commands may start under it, or None for no limit.
    #[getter]
    fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit.map(|config| RateLimit { config })
    }

    /// Its counts right now.
    fn status(&self) -> BudgetStatus {
        self.budget.status().into()
    }

    pub(crate) fn __repr__(&self, py: Python<'_>) -> String {
        let name = PyString::new(py, self.budget.name())
            .repr()
            .map_or_else(|_| format!("{:?}", self.budget.name()), |r| r.to_string());
        let mut text = format!("SharedBudget({name}, {}", self.budget.slots());
        if let Some(limit) = self.rate_limit() {
            text.push_str(&format!(", rate_limit={}", limit.__repr__()));
        }
        text.push(')');
        text
    }
}

/// A shared budget's counts at the time of `SharedBudget.status()`.
#[pyclass(frozen, eq, module = "a3s_lane", name = "BudgetStatus", get_all)]
#[derive(PartialEq, Eq)]
pub(crate) struct BudgetStatus {
    /// The budget's name.
    name: String,
    /// Its slots.
    slots: usize,
    /// Slots taken by running commands (and handed to a lane about to start one).
    in_use: usize,
    /// Lanes waiting for a slot.
    waiting: usize,
    /// Commands started under it since it was made.
    started: u64,
}

impl From<CoreBudgetStatus> for BudgetStatus {
    fn from(status: CoreBudgetStatus) -> Self {
        Self {
            name: status.name,
            slots: status.slots,
            in_use: status.in_use,
            waiting: status.waiting,
            started: status.started,
        }
    }
}

#[pymethods]
impl BudgetStatus {
    fn __repr__(&self, py: Python<'_>) -> String {
        let name = PyString::new(py, &self.name)
            .repr()
            .map_or_else(|_| format!("{:?}", self.name), |r| r.to_string());
        format!(
            "BudgetStatus(name={name}, slots={}, in_use={}, waiting={}, started={})",
            self.slots, self.in_use, self.waiting, self.started
        )
    }
}
