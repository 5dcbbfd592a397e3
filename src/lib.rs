//! # a3s-lane
//!
//! A lane-based priority command queue for async Rust. Commands go into named lanes;
//! each lane has a priority and concurrency limits; the scheduler always starts work from
//! the most urgent lane that has pending work and free capacity.
//!
//! ```
//! use a3s_lane::{Command, EventEmitter, QueueManagerBuilder, Result};
//! use async_trait::async_trait;
//!
//! struct Hello;
//!
//! #[async_trait]
//! impl Command for Hello {
//!     async fn execute(&self) -> Result<serde_json::Value> {
//!         Ok(serde_json::json!("hello"))
//!     }
//!     fn command_type(&self) -> &str {
//!         "hello"
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! let manager = QueueManagerBuilder::new(EventEmitter::new(100)).with_default_lanes().build().await?;
//! manager.start().await?;
//! let rx = manager.submit("query", Box::new(Hello)).await?;
//! assert_eq!(rx.await??, serde_json::json!("hello"));
//! # Ok(()) }
//! ```
//!
//! The facade re-exports `lane-core` (queue, lanes, scheduler, events),
//! `lane-reliability` (retry policies, durable storage) and, behind features that are on
//! by default, `lane-metrics` (`metrics`, `monitoring`), `lane-telemetry` (`telemetry`)
//! and `lane-distributed` (`distributed`).

#![forbid(unsafe_code)]

pub use lane_core::*;
pub use lane_reliability::*;

#[cfg(feature = "distributed")]
pub use lane_distributed::*;
#[cfg(feature = "metrics")]
pub use lane_metrics::*;
#[cfg(feature = "telemetry")]
pub use lane_telemetry::*;
