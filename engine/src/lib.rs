//! The load engine behind `engine blast`.
//!
//! # Layout
//! - [`plan`]: the validated description of a run; every user error is caught there.
//! - [`http`]: the HTTP/1.1 client codec (requests rendered once, responses framed
//!   incrementally, bodies counted and never stored).
//! - `shard`: one glommio executor per CPU owning its connections, buffer and statistics.
//! - `conn`: one connection's loop: connect, write, read and frame, record, repeat.
//! - [`scenario`]: scenario files (TOML): weighted named requests, load, thresholds.
//! - [`schedule`]: stages (linear ramps) and the open model's arrival schedule.
//! - [`profiles`]: named load profiles (ramp, spike, stress, soak, recovery) and their analysis.
//! - [`stats`]: per-shard histograms and counters and their exact merge.
//! - [`blast`]: pre-flight, shard start-up and the collector that merges snapshots.
//! - [`summary`]: the figures of the summary JSON.
//! - [`limits`], [`affinity`]: open-file and port budgets, CPU placement.
//! - [`metrics`]: the blast's Prometheus metrics and the `/metrics` endpoint that serves them.
//! - [`files`]: reading the files a user names, with a size bound.
//! - [`thresholds`]: `p95<200ms`-style expressions, for thresholds and safety stops.
//! - [`target`]: a small, fast HTTP/1.1 server to aim at; [`listen`]: servers on their own executor.
//!
//! The library neither prints nor exits; the `engine` binary does both.

pub mod affinity;
pub mod blast;
mod conn;
pub mod files;
pub mod http;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod plan;
pub mod profiles;
pub mod runtime;
pub mod scenario;
pub mod schedule;
mod shard;
pub mod stats;
pub mod summary;
pub mod target;
pub mod thresholds;
pub mod units;

pub use blast::{preflight, run, Control, IntervalReport, RunError};
pub use plan::{Plan, PlanError, PlanInput};
pub use summary::Summary;
