//! The load engine behind `engine blast`.
//!
//! # Layout
//! - [`plan`]: the validated description of a run; every user error is caught there.
//! - `shard`: one glommio executor per CPU owning its connections, buffer and statistics.
//! - `conn`: one connection's loop: connect, write, read and frame, record, repeat.
//! - [`scenario`]: scenario files (TOML): weighted named requests, load, thresholds.
//! - [`schedule`]: stages (linear ramps) and the open model's arrival schedule.
//! - [`profiles`]: named load profiles (ramp, spike, stress, soak, recovery) and their analysis.
//! - [`blast`]: pre-flight, shard start-up and the collector that merges snapshots.
//! - [`metrics`]: the blast's Prometheus metrics and the `/metrics` endpoint that serves them.
//!
//! The library neither prints nor exits; the `engine` binary does both.

pub mod blast;
mod conn;
pub mod metrics;
pub mod plan;
pub mod profiles;
pub mod scenario;
pub mod schedule;
mod shard;

pub use blast::{preflight, run, Control, IntervalReport, RunError};
pub use engine_results::Summary;
pub use plan::{Plan, PlanError, PlanInput};
