//! What the crates of `engine` share that needs no executor: the results, the codec and the
//! command line use it without linking glommio.
//!
//! # Layout
//! - [`files`]: reading the files a user names, with a size bound.
//! - [`units`]: durations and times as users type them.
//! - [`rng`]: a fast shard-local random generator (test data and fault sampling, not secrets).
//!
//! The library neither prints nor exits.

pub mod files;
pub mod rng;
pub mod units;

pub use rng::Rng;
