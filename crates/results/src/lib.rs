//! What a run measured, how it is judged, and what is left of it: the results of `engine`.
//!
//! # Layout
//! - [`stats`]: per-shard measurements (counters, HdrHistograms) and their exact merge.
//! - [`summary`]: the typed, versioned summary contract (`summary.json`).
//! - [`observe`]: the run pipeline's contract: intervals flow to observers; the summary is
//!   built once and each observer adds to it.
//! - [`thresholds`]: `p95<200ms`-style expressions, judged on a run (thresholds) or on each
//!   interval (safety stops); [`profile`]: what a named profile was run for.
//! - [`hlog`]: the HdrHistogram interval log (`latency.hlog`), written and read.
//! - [`scenario`]: each scenario's figures in a run of several.
//! - [`units`]: milliseconds, bytes, durations as a person reads them.
//! - [`render`]: the summary in words, once (terminal text, summary.md, run.log's verdicts).
//! - [`folder`]: the results folder; [`html`]: its report page.
//! - [`compare`], [`merge`], [`windows`]: `engine report`'s work on finished runs.
//!
//! The library neither prints nor exits.

pub mod combine;
pub mod compare;
pub mod folder;
pub mod grpc;
pub mod hlog;
pub mod html;
pub mod http2;
pub mod merge;
pub mod observe;
pub mod profile;
pub mod render;
pub mod scenario;
pub mod stats;
pub mod summary;
pub mod table;
pub mod thresholds;
pub mod units;
pub mod windows;

pub use summary::Summary;
