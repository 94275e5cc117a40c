//! The load engine behind `engine blast`.
//!
//! # Layout
//! - [`plan`]: the validated description of a run; every user error is caught there.
//! - `fleet`: the shards of a run, started on their CPUs, started together, joined.
//! - `shard`: one shard's control loop (connect phase, ramps, snapshots, drain);
//!   `state`: what the shard owns and its connections share.
//! - `conn`: one connection's loop: wait for its turn, connect, write, read and frame,
//!   record, repeat; `transport`: the byte stream under it (plain TCP; TLS plugs in there).
//! - `collect`: merges the shards' snapshots per interval, hands each interval to the
//!   observers (`engine_results::observe`), watches the generator's own load, builds the
//!   summary once.
//! - [`render`]: a request rendered once, its templated parts patched per request;
//!   [`template`]: `{{seq}}`, `{{rand_int}}`, `{{csv.COLUMN}}`, captured values, the data file.
//! - [`describe`]: a plan in words (the banner, `--print-plan`).
//! - [`flags`]: a blast's options and the one rule merging them over a scenario file.
//! - [`scenario`]: scenario files (TOML): weighted named requests, load, thresholds.
//! - [`schedule`]: stages (linear ramps) and the open model's arrival schedule.
//! - [`profiles`]: named load profiles (ramp, spike, stress, soak, recovery) as stages.
//! - [`blast`]: the run: pre-flight, shards, collector, observers; `run`: [`Run`], a run
//!   with its judges (safety stops, profile, thresholds) in the one right order.
//! - [`promql`]: safety stops on the target's own resources, read from Prometheus;
//!   [`push`]: the final metrics to a Pushgateway; [`client`]: the blocking HTTP exchange
//!   both use.
//! - [`metrics`]: the blast's Prometheus metrics and the `/metrics` endpoint that serves them.
//!
//! The library neither prints nor exits; the `engine` binary does both.

pub mod blast;
pub mod check;
pub mod client;
mod collect;
mod conn;
mod control;
pub mod describe;
pub mod flags;
mod fleet;
pub mod follow;
mod h2req;
mod link;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod profiles;
pub mod promql;
pub mod push;
pub mod render;
mod run;
pub mod scenario;
pub mod schedule;
mod shard;
mod state;
pub mod steer;
pub mod template;
pub mod think;
mod transport;

pub use blast::{preflight, run, Control, Preflight, RunError};
pub use engine_results::Summary;
pub use flags::{FlagError, Flags};
pub use plan::{Plan, PlanError, PlanInput};
pub use run::{Checked, JudgeError, Judges, Profile, Run};
