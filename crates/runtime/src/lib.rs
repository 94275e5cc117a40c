//! The runtime every mode of `engine` runs on: glommio executors pinned to CPUs, each with
//! a heartbeat; listeners; the operating system's budgets; bounded reads of the files a user
//! names; the units users type.
//!
//! # Layout
//! - [`executor`]: the one executor builder ([`Executor`]), [`Heartbeat`]s, periodic [`tick`]s
//!   and the test-only knobs (`ENGINE_TEST_TICK_DIVISOR`, `ENGINE_TEST_FAULT`).
//! - [`affinity`]: the CPUs this process may run on, CPU lists.
//! - [`fd`]: shutting a socket down from outside the task that owns it.
//! - [`listen`]: servers on their own executor, and the accept loop with a stop flag.
//! - [`probe`]: what the engine needs from the kernel (io_uring with COOP_TASKRUN), checked
//!   at start.
//! - [`limits`]: open files and ephemeral ports, checked before a run starts.
//! - [`files`]: reading the files a user names, with a size bound.
//! - [`units`]: durations and times as users type them.
//!
//! The library neither prints nor exits.

pub mod affinity;
pub mod executor;
pub mod fd;
pub mod files;
pub mod limits;
pub mod listen;
pub mod probe;
pub mod units;

pub use executor::{current_executor, tick, Executor, Heartbeat, Pulse, SpawnError, BEAT, LATE_AFTER};
